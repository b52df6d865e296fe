"""AwsStackProcess: `python -m devstack.aws` (moto plus the lifecycle-hook additions) in a
process of its own, and `AwsStack` helpers connected to it.

    with AwsStackProcess(queue="lifecycled", groups={"storm": 1000}, spot=True) as aws:
        env = aws.env                     # AWS_ENDPOINT_URL, credentials, LIFECYCLED_QUEUE_URL
        stack = aws.stack()               # AwsStack.connect(...): scenario helpers over HTTP
        for i in aws.instances["storm"]:
            stack.send_spot_interruption(i.id)

Hook timeouts and ECS ticks run in the child (its own ticker thread).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from ..emulator_process import EmulatorProcess
from .calls import SUMMARY_PATH
from .stack import AwsStack, Instance


class AwsStackProcess(EmulatorProcess):
    module = "devstack.aws"

    def __init__(
        self,
        *,
        port: int = 0,
        region: str = "us-east-1",
        queue: str | None = None,
        groups: dict[str, int] | None = None,
        spot: bool = False,
        heartbeat_timeout: int = 300,
        **kwargs: Any,
    ) -> None:
        args = [f"--port={port}", f"--region={region}", f"--heartbeat-timeout={heartbeat_timeout}"]
        if queue:
            args.append(f"--queue={queue}")
        for name, size in (groups or {}).items():
            args.append(f"--group={name}:{size}")
        if spot:
            args.append("--spot")
        super().__init__(args, **kwargs)
        self.region = region

    @property
    def endpoint_url(self) -> str:
        return self.env.get("AWS_ENDPOINT_URL", "")

    @property
    def queue_url(self) -> str | None:
        return self.env.get("LIFECYCLED_QUEUE_URL")

    @property
    def instances(self) -> dict[str, list[Instance]]:
        """The groups' instances as the child printed them (id, private DNS name, zone)."""
        out: dict[str, list[Instance]] = {}
        for note in self.notes:
            group, sep, rest = note.partition(": ")
            parts = rest.split()
            if sep and len(parts) == 3 and parts[0].startswith("i-"):
                ip = parts[1].split(".")[0].removeprefix("ip-").replace("-", ".")
                out.setdefault(group, []).append(Instance(parts[0], parts[1], ip, parts[2]))
        return out

    def call_summary(self) -> dict[str, int]:
        """Calls that reached moto so far, not counting the helpers' own: count per
        "service Action status" (e.g. "sqs ReceiveMessage 200")."""
        with urllib.request.urlopen(self.endpoint_url + SUMMARY_PATH, timeout=30) as reply:
            counts: dict[str, int] = json.loads(reply.read())
        return counts

    def stack(self) -> AwsStack:
        return AwsStack.connect(self.endpoint_url, region=self.region)
