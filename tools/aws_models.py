"""Write the trimmed AWS service models lifecycled ships (lifecycled/clients/aws/models/).

    python tools/aws_models.py           # exit 1 if a shipped model lacks an operation we call
    python tools/aws_models.py --write   # regenerate them from the installed botocore

botocore loads a service's whole model for its client: EC2's (800 operations) costs the
service ~15 MiB of memory for the one operation it calls, DescribeInstances. botocore looks
in its data path before its own models (the `data_path` setting, AWS_DATA_PATH), so we ship
EC2's model cut down to the operations lifecycled/clients/aws/ec2.py calls, with the shapes
they reach and no documentation. Only service-2 is trimmed: the endpoint rules, paginators
and waiters still come from botocore. The API version is botocore's, so a later botocore with
a newer EC2 API version simply loads its own model again.

tests/unit/test_aws_models.py runs the check.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "lifecycled" / "clients" / "aws"
MODELS = CLIENTS / "models"
TRIMMED = ("ec2",)  # the services whose model is large beside what we use of it
CALL = re.compile(r'_call\(\s*"([a-z0-9_]+)"')


def called(service: str) -> set[str]:
    """The operations (snake_case) the service's client module calls."""
    return set(CALL.findall((CLIENTS / f"{service}.py").read_text()))


def _snake(name: str) -> str:
    from botocore import xform_name

    return str(xform_name(name))


def _reached(shapes: dict[str, Any], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = shapes[name]
        refs = list(shape.get("members", {}).values())
        refs += [shape[k] for k in ("member", "key", "value") if k in shape]
        todo += [ref["shape"] for ref in refs]
    return seen


def _undocumented(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _undocumented(v) for k, v in value.items() if k != "documentation"}
    if isinstance(value, list):
        return [_undocumented(v) for v in value]
    return value


def trim(model: dict[str, Any], operations: set[str]) -> dict[str, Any]:
    """`model` with only `operations` (snake_case names) and the shapes they reach."""
    kept = {name: op for name, op in model["operations"].items() if _snake(name) in operations}
    missing = operations - {_snake(name) for name in kept}
    if missing:
        raise SystemExit(f"not in botocore's model: {sorted(missing)}")
    roots = [
        ref["shape"]
        for op in kept.values()
        for ref in [op.get("input"), op.get("output"), *op.get("errors", [])]
        if ref
    ]
    shapes = model["shapes"]
    trimmed = {
        "version": model.get("version", "2.0"),
        "metadata": model["metadata"],
        "operations": kept,
        "shapes": {name: shapes[name] for name in sorted(_reached(shapes, roots))},
    }
    return dict(_undocumented(trimmed))


def path_of(service: str, api_version: str) -> Path:
    return MODELS / service / api_version / "service-2.json"


def write() -> None:
    import botocore.loaders

    loader = botocore.loaders.Loader()  # botocore's own models only: no data path
    for service in TRIMMED:
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_service_model(service, "service-2", version)
        target = path_of(service, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(trim(model, called(service)), indent=1, sort_keys=True)
        target.write_text(text + "\n")
        print(f"wrote {target.relative_to(ROOT)}")


def problems() -> list[str]:
    found: list[str] = []
    for service in TRIMMED:
        shipped = sorted(MODELS.glob(f"{service}/*/service-2.json"))
        if len(shipped) != 1:
            found.append(f"{service}: expected one shipped model, found {len(shipped)}")
            continue
        model = json.loads(shipped[0].read_text())
        have = {_snake(name) for name in model["operations"]}
        for operation in sorted(called(service) - have):
            found.append(f"{service}: {operation} is called but not in {shipped[0].name}")
    return found


def main(argv: list[str]) -> int:
    if "--write" in argv:
        write()
        return 0
    found = problems()
    for line in found:
        print(line)
    if found:
        print("run: python tools/aws_models.py --write")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
