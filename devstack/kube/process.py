"""KubeApiProcess: `python -m devstack.kube` in a process of its own, and its admin API.

    with KubeApiProcess() as kube:                 # starts it, waits for `# ready`
        kube.seed(Shape(nodes=1000), wait=True)    # 20,000 pods, all Running and Ready
        os.environ["KUBECONFIG"] = str(kube.kubeconfig)
        ...                                         # the product, a load generator
        kube.stats()["pods"], kube.request_summary()

Admin calls are plain blocking HTTP (urllib); from an event loop, wrap them in
`asyncio.to_thread`. The Kubernetes API itself is at `kube.url`.
"""

from __future__ import annotations

import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..emulator_process import EmulatorProcess
from .errors import JSON
from .seeding import Machine, Shape


class AdminError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"admin call failed ({status}): {body}")
        self.status = status
        self.body = body


class KubeApiProcess(EmulatorProcess):
    module = "devstack.kube"

    def __init__(
        self,
        *,
        port: int = 0,
        tick: float = 0.05,
        controllers: bool = True,
        kubeconfig: str | Path | None = None,
        record_limit: int = 200_000,
        seed_nodes: int = 0,
        extra_args: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.kubeconfig = Path(
            kubeconfig or Path(tempfile.mkdtemp(prefix="devstack-kube-")) / "kubeconfig"
        )
        args = [
            f"--port={port}",
            f"--tick={tick}",
            f"--kubeconfig={self.kubeconfig}",
            f"--record-limit={record_limit}",
        ]
        if not controllers:
            args.append("--no-controllers")
        if seed_nodes:
            args.append(f"--seed-nodes={seed_nodes}")
        super().__init__([*args, *(extra_args or [])], **kwargs)

    @property
    def url(self) -> str:
        return self.env.get("KUBE_URL", "")

    # ---- admin API (devstack/kube/admin.py) --------------------------------------------------

    def admin(self, method: str, path: str, body: JSON | None = None, timeout: float = 600) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/devstack/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AdminError(exc.code, exc.read().decode(errors="replace")) from exc

    def stats(self) -> JSON:
        """Object and pod counts, scheduler queue, controller busy time, loop lag."""
        result: JSON = self.admin("GET", "stats")
        return result

    def seed(
        self,
        shape: Shape | None = None,
        machines: list[Machine] | None = None,
        *,
        wait: bool = True,
        timeout: float = 600,
    ) -> JSON:
        """Create a storm-shaped cluster (devstack/kube/seeding.py); with `wait`, return once
        every pod is Running and Ready. The answer has `seconds`."""
        body: JSON = {"shape": (shape or Shape()).to_json(), "wait": wait, "timeout": timeout}
        if machines is not None:
            body["machines"] = [vars(m) for m in machines]
        result: JSON = self.admin("POST", "seed", body, timeout=timeout + 30)
        return result

    def create_objects(self, items: list[JSON]) -> JSON:
        result: JSON = self.admin("POST", "objects", {"items": items})
        return result

    def wait(self, *, pods_ready: int = 0, quiet_seconds: float = 0, timeout: float = 300) -> JSON:
        body = {"pods_ready": pods_ready, "quiet_seconds": quiet_seconds, "timeout": timeout}
        result: JSON = self.admin("POST", "wait", body, timeout=timeout + 30)
        return result

    def requests(self, since: int = 0) -> JSON:
        """Recorded API requests after sequence number `since`: {"next": N, "items": [...]}."""
        result: JSON = self.admin("GET", f"requests?since={since}")
        return result

    def request_summary(self) -> dict[str, int]:
        result: dict[str, int] = self.admin("GET", "requests/summary")
        return result

    def run_controllers_once(self) -> None:
        self.admin("POST", "controllers/run-once")

    def set_node_ready(self, name: str, ready: bool) -> JSON:
        result: JSON = self.admin("POST", f"nodes/{name}/ready", {"ready": ready})
        return result

    def delete_node(self, name: str) -> None:
        """The machine is gone: the node object goes and pod GC deletes its pods at once."""
        self.admin("DELETE", f"nodes/{name}")
