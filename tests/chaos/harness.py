"""The chaos suite: the real service as a subprocess on the embedded stack, faults injected
by reverse proxies in front of the emulators (tests/faultproxy.py), then an invariant check.

Each scenario is one function of (stack, seed, size); `run` builds a fresh cluster and queue,
starts `lifecycled run` (restarting it when a scenario kills it), sends the notices, waits for
the drains, and returns a `Result`: faults injected and the invariants violated. The seed
drives every random choice, so `python -m tests.chaos --scenario S --seed N` replays a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from devstack.aws import AwsStack
from devstack.cluster import Machine, Workloads, expected_pods, seed, wait_running
from devstack.kube import KubeApiServer
from devstack.kube.server import write_kubeconfig
from devstack.service_process import Values, service_process, total
from lifecycled.record import RECORD_ANNOTATION
from tests.faultproxy import Chaos, FaultProxy

SPOT = "spot_interruption"
SETTLED = {"drained", "forced_termination", "failed", "deadline_missed"}
_names = itertools.count()


@dataclass
class Logs:
    """Every JSON log line of every service process in one run."""

    lines: list[dict[str, Any]] = field(default_factory=list)

    def add(self, entry: dict[str, Any]) -> None:
        self.lines.append(entry)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]


@dataclass
class Run:
    """One scenario run: the stack, what was warned, and what the service wrote."""

    aws: AwsStack
    kube: KubeApiServer
    api: client.ApiClient
    queue: Any
    group: str
    machines: list[Machine]
    seed: int
    workdir: Path
    env: dict[str, str]
    logs: Logs = field(default_factory=Logs)
    warned: set[str] = field(default_factory=set)  # instance ids with a notice sent
    hooked: set[str] = field(default_factory=set)  # instance ids scaled in (a hook holds them)
    injected: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    violations: list[str] = field(default_factory=list)  # a scenario's own checks
    random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def node(self, instance_id: str) -> str:
        return next(m.private_dns_name for m in self.machines if m.instance_id == instance_id)

    def spot(self, instance_id: str, times: int = 1) -> None:
        self.warned.add(instance_id)
        for _ in range(times):
            self.aws.send_spot_interruption(instance_id)

    def scale_in(self, instance_id: str) -> None:
        self.warned.add(instance_id)
        self.hooked.add(instance_id)
        self.aws.scale_in(self.group, instance_id)

    def settled(self) -> set[str]:
        return {
            str(line["instance"])
            for line in self.logs.events("drain finished")
            if line.get("outcome") in SETTLED
        }

    async def closed_records(self) -> set[str]:
        """Instances whose drain record on the node says done: a SIGKILL can land between
        closing the record and logging "drain finished", so the record is the truth."""
        core = client.CoreV1Api(self.api)
        out = set()
        for instance in self.warned:
            with contextlib.suppress(client.ApiException):
                node = await core.read_node(self.node(instance))
                raw = (node.metadata.annotations or {}).get(RECORD_ANNOTATION)
                if raw and json.loads(raw).get("phase") == "done":
                    out.add(instance)
        return out

    async def all_settled(self) -> bool:
        if self.hooked & self.held():
            return False
        return self.warned <= self.settled() | await self.closed_records()

    def held(self) -> set[str]:
        return {i for i in self.hooked if self.aws.lifecycle_state(i) == "Terminating:Wait"}

    @contextlib.asynccontextmanager
    async def service(
        self, env: dict[str, str] | None = None, name: str = ""
    ) -> AsyncIterator[Any]:
        workdir = self.workdir / name
        workdir.mkdir(exist_ok=True)
        try:
            async with service_process({**self.env, **(env or {})}, self.logs, workdir) as proc:
                yield proc
        finally:  # each process's raw stderr kept: the traceback check reads them all
            raw = workdir / "lifecycled.log"
            if raw.exists():
                raw.rename(workdir / f"lifecycled-{next(_names)}.log")


@dataclass
class Result:
    scenario: str
    seed: int
    seconds: float
    injected: Counter[str]
    violations: list[str]

    def row(self) -> str:
        faults = sum(self.injected.values())
        kinds = ",".join(f"{k}={v}" for k, v in sorted(self.injected.items()))
        verdict = "ok" if not self.violations else "; ".join(self.violations)
        return (
            f"{self.scenario:<14} seed {self.seed:<6} {self.seconds:6.1f} s  "
            f"faults {faults:4d} ({kinds})  violations {len(self.violations)}  {verdict}"
        )


async def wait_until(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    end = time.monotonic() + within
    while not await check():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.5)
    return True


# ---- scenarios ---------------------------------------------------------------------------


async def kube_faults(run: Run, size: int) -> None:
    """20% of Kubernetes API requests fail: 5xx, 429 + Retry-After, resets, slow answers."""
    chaos = Chaos(run.seed, rate=0.2, flavour="kube")
    async with FaultProxy(run.kube.url, chaos=chaos) as proxy:
        kubeconfig = write_kubeconfig(proxy.url, run.workdir / "proxied")
        async with run.service({"KUBECONFIG": str(kubeconfig)}):
            await warn_some(run, size)
            await settle(run, size)
    run.injected.update({f"kube {k}": v for k, v in chaos.injected.items()})


async def aws_faults(run: Run, size: int) -> None:
    """20% of AWS calls (SQS, EC2, Auto Scaling, ELB, ECS) are throttled or fail with 5xx."""
    chaos = Chaos(run.seed, rate=0.2, flavour="aws", kinds=("5xx", "throttle", "reset", "slow"))
    async with FaultProxy(run.aws.endpoint_url, chaos=chaos) as proxy:  # noqa: SIM117
        async with run.service({"AWS_ENDPOINT_URL": proxy.url}):
            await warn_some(run, size)
            await settle(run, size)
    run.injected.update({f"aws {k}": v for k, v in chaos.injected.items()})


async def duplicates(run: Run, size: int) -> None:
    """Every notice sent twice, a short visibility timeout (expiring mid-drain), and notices
    out of order: `terminated` before the Spot warning for one machine."""
    async with run.service({"LIFECYCLED_SQS_VISIBILITY_SECONDS": "5"}):
        targets = pick(run, size)
        gone = targets[0]
        run.aws.force_terminate(gone)
        run.aws.send_state_change(gone, "terminated")
        run.injected["out of order"] += 1
        for instance in targets:
            run.spot(instance, times=2)
            run.injected["duplicate"] += 1
        await settle(run, size)


async def sigkill(run: Run, size: int) -> None:
    """SIGKILL at random moments, restarted each time, while the drains run."""
    targets = pick(run, size)
    hooked = targets[-1]
    kills = 2 + size // 3
    for n in range(kills + 1):
        async with run.service({"LIFECYCLED_SQS_VISIBILITY_SECONDS": "5"}) as proc:
            if n == 0:
                for instance in targets[:-1]:
                    run.spot(instance)
                run.scale_in(hooked)
            if n == kills:
                await settle(run, size)
                break
            await asyncio.sleep(run.random.uniform(0.5, 4.0))
            proc.proc.send_signal(signal.SIGKILL)
            await proc.proc.wait()
            run.injected["sigkill"] += 1


HA = {
    "LIFECYCLED_LEADER_ELECTION": "true",
    "LIFECYCLED_LEASE_DURATION_SECONDS": "3",
    "LIFECYCLED_LEASE_RENEW_SECONDS": "2",
    "LIFECYCLED_LEASE_RETRY_SECONDS": "1",
    "LIFECYCLED_SQS_VISIBILITY_SECONDS": "5",
}


async def leader_change(run: Run, size: int) -> None:
    """Two replicas under leader election; the leader is SIGKILLed mid-storm and comes back
    as a standby while the other takes over."""
    a_env, b_env = (
        {**HA, "LIFECYCLED_IDENTITY": "replica-a"},
        {**HA, "LIFECYCLED_IDENTITY": "replica-b"},
    )
    async with run.service(a_env, "a") as a, run.service(b_env, "b") as b:
        replicas = {"a": a, "b": b}
        if await wait_leader(replicas) is None:
            return  # the check reports the drains that never happened
        await warn_some(run, size)
        await asyncio.sleep(run.random.uniform(0.5, 3.0))
        name = await wait_leader(replicas)
        if name is None:
            return
        replicas[name].proc.send_signal(signal.SIGKILL)
        await replicas[name].proc.wait()
        run.injected["leader sigkill"] += 1
        env = a_env if name == "a" else b_env
        async with run.service(env, name):
            await settle(run, size)


def leads(values: Values) -> bool:
    return total(values, "lifecycled_leader") == 1


async def wait_leader(replicas: dict[str, Any]) -> str | None:
    """The name of the replica that leads, once one does (20 s at most)."""
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for name, replica in replicas.items():
            if leads(await replica.scrape()):
                return name
        await asyncio.sleep(0.3)
    return None


async def poison(run: Run, size: int) -> None:
    """A flood of hostile bodies (non-JSON, deep nesting, 250 KB, foreign sources, bad ids)
    queued ahead of the real warnings: the warnings still drained, the poison in the DLQ."""
    from tests.scenarios.test_poison import hostile

    count = 100 * size
    sqs = run.aws.boto3_client("sqs")
    for start in range(0, count, 10):
        entries = [{"Id": str(n), "MessageBody": hostile(n)} for n in range(start, start + 10)]
        sqs.send_message_batch(QueueUrl=run.queue.url, Entries=entries)
    run.injected["poison"] += count
    await warn_some(run, size)
    async with run.service({"LIFECYCLED_MESSAGE_CONCURRENCY": "32"}):
        await settle(run, size)
    assert run.queue.dlq_url is not None
    reply = sqs.get_queue_attributes(
        QueueUrl=run.queue.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    dead = int(reply["Attributes"]["ApproximateNumberOfMessages"])
    if dead < count:
        run.violations.append(f"{dead} of {count} poison bodies in the DLQ")


SCENARIOS: dict[str, Callable[[Run, int], Awaitable[None]]] = {
    "kube-faults": kube_faults,
    "aws-faults": aws_faults,
    "duplicates": duplicates,
    "sigkill": sigkill,
    "leader-change": leader_change,
    "poison": poison,
}


async def settle(run: Run, size: int) -> None:
    """Drains closed and hooks released, then the queue empty (duplicates and redeliveries
    handled too), or the time is up: the invariant check says what is missing."""
    if await wait_until(run.all_settled, 90 + 10 * size):
        await wait_until(lambda: queue_empty(run), 30)


async def queue_empty(run: Run) -> bool:
    reply = run.aws.boto3_client("sqs").get_queue_attributes(
        QueueUrl=run.queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in reply["Attributes"].values()) == 0


def pick(run: Run, size: int) -> list[str]:
    """About half the machines, chosen by the seed; the rest must stay untouched."""
    ids = [m.instance_id for m in run.machines]
    return run.random.sample(ids, max(2, size // 2))


async def warn_some(run: Run, size: int) -> None:
    targets = pick(run, size)
    for instance in targets[:-1]:
        run.spot(instance)
    run.scale_in(targets[-1])


# ---- the stack and the run ---------------------------------------------------------------


def workloads(size: int) -> Workloads:
    return Workloads(
        web_replicas=size * 2,
        web_max_unavailable=max(1, size // 3),
        api_replicas=size * 3,
        job_parallelism=0,
        exit_seconds=0.3,
        grace_seconds=5,
    )


async def run(aws: AwsStack, scenario: str, seed_: int, size: int) -> Result:
    started = time.monotonic()
    n = next(_names)
    workdir = Path(tempfile.mkdtemp(prefix=f"lifecycled-chaos-{scenario}-{seed_}-"))
    queue = aws.create_queue(f"chaos-{n}", dlq=True, max_receive_count=5)
    aws.route_events_to(queue)
    group = f"chaos-{n}"
    instances = aws.create_group(group, size=size, heartbeat_timeout=300)
    machines = [Machine(i.id, i.private_dns_name, i.az) for i in instances]
    async with KubeApiServer() as kube:
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
        async with client.ApiClient(configuration) as api:
            w = workloads(size)
            await seed(api, machines, w)
            await wait_running(api, expected_pods(machines, w), within=60)
            env = {
                **aws.env(),
                "KUBECONFIG": str(kubeconfig),
                "LIFECYCLED_QUEUE_URL": queue.url,
                "LIFECYCLED_SQS_WAIT_SECONDS": "1",
                "LIFECYCLED_EVICTION_RETRY_SECONDS": "0.5",
            }
            the_run = Run(aws, kube, api, queue, group, machines, seed_, workdir, env)
            await SCENARIOS[scenario](the_run, size)
            from tests.chaos.invariants import check  # it imports Run from here

            violations = the_run.violations + await check(the_run)
    return Result(scenario, seed_, time.monotonic() - started, the_run.injected, violations)


def log_lines(workdir: Path) -> list[str]:
    return [
        line for path in workdir.glob("lifecycled-*.log") for line in path.read_text().splitlines()
    ]
