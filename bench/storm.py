"""A storm: K interruption notices at once on a large cluster, the real service as a subprocess.

The emulators run in processes of their own (`KubeApiProcess`, `AwsStackProcess`), the
service (`lifecycled run`, its default settings but one) in a third; this process only seeds,
publishes, watches the service's JSON log and samples /proc and the emulators' counters.

The one setting: the service's Kubernetes request budget (LIFECYCLED_KUBE_API_QPS, 1,000/s
by default) is off unless `--kube-api-qps` sets it. The benchmark measures the handler against
the emulator's ceiling; with the budget on, the achieved rate is the budget, not the handler.

Scenarios:

- `spot` (default): N nodes x P pods (Deployments of 50 under 10% PodDisruptionBudgets, a
  DaemonSet pod per node, Job pods that run until stopped), K Spot interruption warnings
  published at once through EventBridge (PutEvents, 10 per call, from 8 threads) into SQS.
  Defaults N=2000, P=20, K=1000: the emulator does not model node capacity, so "room for the
  evicted pods" means schedulable nodes; with K=N there would be none (every evicted pod
  stays Pending, every budget stays exhausted, no drain can finish), so the default warns
  half the nodes and the other 1,000 take the ~19,000 evicted pods (39 per node, under the
  nodes' 110-pod allocatable).
- `hooks`: N=600 nodes, K=300 ASG scale-ins (TerminateInstanceInAutoScalingGroup, 8
  threads) held by a terminate lifecycle hook; each of those nodes runs a Job pod that
  finishes 15-30 s after the storm starts, which the service waits for before it completes
  the hook.

Measured in the same run: notice -> cordon / first eviction / drained / hook completed
(p50 p95 p99 max, from the moment each notice was sent), drains finished before their
deadline; the API ceiling (the service's own mix of pod list, node PATCH and eviction POST,
fired at the same emulator by bench/emulator.py's load generator once the storm is over) and
the service's achieved request rate (counted at the emulator) against it; Kubernetes and AWS
calls per evicted pod and per node (counted at the emulators); the service's peak RSS and
CPU seconds (from /proc), the emulators' CPU; evictions per doomed pod (1.0 ideal).

    python -m bench.storm                      # spot: 2,000 nodes, 40,000 pods, 1,000 warnings
    python -m bench.storm --scenario hooks     # 600 nodes, 300 lifecycle hooks with jobs
    python -m bench.storm --short              # 40 nodes, 10 warnings: CI, under a minute
    python -m bench.storm --runs 3             # medians of three runs
    python -m bench.storm --kube-api-qps 1000  # with the service's default request budget

Writes bench/results/storm.json (storm-hooks.json for hooks; -short for --short). No timing
targets: exits 1 only when no drain finished, or the service crashed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.emulator import (
    Call,
    annotate_call,
    event_call,
    evict_call,
    eviction_targets,
    fire,
    list_call,
    node_names,
    patch_call,
    read_node_call,
)
from devstack.aws.payloads import spot_interruption
from devstack.aws.process import AwsStackProcess
from devstack.aws.stack import AwsStack
from devstack.kube import builders
from devstack.kube.process import KubeApiProcess
from devstack.kube.seeding import Machine, Shape
from devstack.service_process import service_process

RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SENDERS = 8  # threads publishing the notices
CEILING_CONCURRENCY = 32  # as bench/emulator.py
GROUP = "storm"
# The three request kinds of the ceiling, as the emulator's summary names them.
# The service's request kinds the load generator fires, by their key at the emulator's count.
MIX = {
    "list": "list pods 200",
    "patch": "patch nodes",
    "read": "get nodes 200",
    "evict": "evict pods/eviction",
    "annotate": "patch pods",
    "event": "create events",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: int
    pods_per_node: int
    warnings: int
    job_seconds: tuple[float, float] = (0.0, 0.0)  # hooks: each held job ends in this window
    ceiling_seconds: float = 10.0
    timeout: float = 300.0  # longest wait for every drain, from the first notice
    kube_api_qps: float = 0.0  # the service's LIFECYCLED_KUBE_API_QPS (0: no budget)


def scenario(args: argparse.Namespace) -> Scenario:
    hooks = args.scenario == "hooks"
    if args.short:
        base = Scenario(args.scenario, 40, 20, 10, (5.0, 10.0) if hooks else (0.0, 0.0), 2.0, 90)
    elif hooks:
        base = Scenario("hooks", 600, 20, 300, (15.0, 30.0), 10.0, 300)
    else:
        base = Scenario("spot", 2000, 20, 1000, (0.0, 0.0), 10.0, 300)
    return Scenario(
        base.name,
        args.nodes or base.nodes,
        args.pods or base.pods_per_node,
        args.warnings or base.warnings,
        base.job_seconds,
        args.ceiling_seconds or base.ceiling_seconds,
        base.timeout,
        args.kube_api_qps,
    )


# ---- what the service says (its JSON log) ---------------------------------------------------


@dataclass
class StormLog:
    """The service's log lines, reduced to the first time of each step per instance."""

    watched: set[str]
    node_of: dict[str, str] = field(default_factory=dict)  # node -> instance
    received: dict[str, datetime] = field(default_factory=dict)
    event_time: dict[str, datetime] = field(default_factory=dict)
    cordoned: dict[str, datetime] = field(default_factory=dict)
    deadline: dict[str, datetime] = field(default_factory=dict)
    first_eviction: dict[str, datetime] = field(default_factory=dict)
    evicted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    job_finished: dict[str, datetime] = field(default_factory=dict)  # the last one per node
    finished: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    hook_completed: dict[str, datetime] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)  # warning/error messages
    lines: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    want_hooks: bool = False

    def add(self, entry: dict[str, Any]) -> None:
        self.lines += 1
        at = datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
        event = entry.get("event")
        level = str(entry.get("level", "")).lower()
        if level in ("warning", "error", "critical"):
            self.errors[str(event)] += 1
        instance = entry.get("instance") or self.node_of.get(str(entry.get("node")))
        if event == "notice received":
            for i in entry.get("instances") or []:
                self.received.setdefault(i, at)
                if entry.get("event_time"):
                    self.event_time.setdefault(i, datetime.fromisoformat(entry["event_time"]))
            return
        if instance not in self.watched:
            return
        if event == "node cordoned":
            self.node_of[str(entry["node"])] = instance
            self.cordoned.setdefault(instance, at)
            if entry.get("deadline"):
                self.deadline[instance] = datetime.fromisoformat(entry["deadline"])
        elif event == "pod evicted":
            self.first_eviction.setdefault(instance, at)
            self.evicted[instance] += 1
        elif event == "eviction refused by disruption budget; will retry":
            self.refused[instance] += 1
        elif event == "waited-for job finished":
            self.job_finished[instance] = at
        elif event == "drain finished":
            self.finished.setdefault(instance, (at, str(entry.get("outcome"))))
        elif event == "lifecycle action completed":
            self.hook_completed.setdefault(instance, at)
        # A drain closes its record after its hook: the storm is over when both are done.
        hooks_done = not self.want_hooks or len(self.hook_completed) >= len(self.watched)
        if hooks_done and len(self.finished) >= len(self.watched):
            self.done.set()


# ---- what /proc and the emulators say --------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def status_mib(pid: int | None, field: str) -> float:
    """A /proc/PID/status size (VmHWM: peak RSS; VmRSS: now) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mib(pid: int) -> float:
    return status_mib(pid, "VmHWM")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


class Sampler:
    """Every second: the emulator's request counter and loop lag, each process's CPU."""

    def __init__(self, kube: KubeApiProcess, pids: dict[str, int | None]) -> None:
        self.kube, self.pids = kube, pids
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="storm-sampler", daemon=True)

    def start(self) -> None:
        self.kube.stats()  # resets the loop-lag maximum
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            stats = self.kube.stats()
            self.samples.append(
                {
                    "t": round(time.monotonic() - t0, 2),
                    "requests": stats["requests"]["total"],
                    "kube_max_lag_ms": round(stats["loop"]["max_lag_seconds"] * 1000, 1),
                    "pods": stats["pods"],
                    "cpu": {k: cpu_seconds(p) for k, p in self.pids.items()},
                    "service_rss_mib": round(status_mib(self.pids.get("service"), "VmRSS"), 1),
                }
            )
            if self._stop.wait(1.0):
                return

    def peak_rate(self) -> float:
        best = 0.0
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            if b["t"] > a["t"]:
                best = max(best, (b["requests"] - a["requests"]) / (b["t"] - a["t"]))
        return best

    def max_lag_ms(self) -> float:
        return max((s["kube_max_lag_ms"] for s in self.samples), default=0.0)

    def peak_cpu(self, name: str) -> float:
        """The highest one-second CPU use of a process (1.0 = one core)."""
        best = 0.0
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            if b["t"] > a["t"]:
                best = max(best, (b["cpu"][name] - a["cpu"][name]) / (b["t"] - a["t"]))
        return best


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v}


def count(summary: dict[str, int], prefix: str) -> int:
    return sum(v for k, v in summary.items() if k.startswith(prefix))


# ---- statistics -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def spread(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
    }


def since(sent: dict[str, datetime], times: dict[str, datetime]) -> list[float]:
    return [(times[i] - sent[i]).total_seconds() for i in sent if i in times]


# ---- set-up ---------------------------------------------------------------------------------


async def pods_by_node(url: str, nodes: list[str]) -> dict[str, list[dict[str, Any]]]:
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(node: str) -> list[dict[str, Any]]:
            params = {"fieldSelector": f"spec.nodeName={node}"}
            async with session.get(f"{url}/api/v1/pods", params=params) as response:
                items: list[dict[str, Any]] = (await response.json())["items"]
                return items

        lists = await asyncio.gather(*(one(n) for n in nodes))
    return dict(zip(nodes, lists, strict=True))


def owner_kind(pod: dict[str, Any]) -> str:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind"))
    return "Pod"


def held_jobs(sc: Scenario, nodes: list[str]) -> list[dict[str, Any]]:
    """hooks: one Job pod per hooked node, pinned there, ending within `sc.job_seconds`."""
    low, high = sc.job_seconds
    out = []
    for i, node in enumerate(nodes):
        run = low + (high - low) * i / max(1, len(nodes) - 1)
        job = builders.job(
            f"held-{i:04d}",
            namespace="batch",
            annotations=builders.scripted(start=0.05, exit=1.0, run=round(run, 2)),
            grace=30,
            nodeSelector={"kubernetes.io/hostname": node},
        )
        out.append(job)
    return out


def pick(machines: list[Machine], k: int) -> list[Machine]:
    """k machines spread evenly over the list (every other one when k = n/2)."""
    n = len(machines)
    return [machines[i * n // k] for i in range(k)] if k else []


def publish_spot(stack: AwsStack, instances: list[str]) -> dict[str, datetime]:
    """PutEvents, 10 entries per call, from SENDERS threads; the send time per instance."""
    events = stack.boto3_client("events")
    sent: dict[str, datetime] = {}
    batches = [instances[i : i + 10] for i in range(0, len(instances), 10)]

    def one(batch: list[str]) -> None:
        now = datetime.now(UTC)
        entries = []
        for instance in batch:
            spec = spot_interruption(stack.region, stack.account, instance)
            entries.append(
                {
                    "Source": spec.source,
                    "DetailType": spec.detail_type,
                    "Detail": json.dumps(spec.detail),
                    "Resources": spec.resources,
                    "Time": now,
                }
            )
            sent[instance] = now
        reply = events.put_events(Entries=entries)
        if reply.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused entries: {reply}")

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(one, batches))
    return sent


def publish_scale_ins(stack: AwsStack, instances: list[str]) -> dict[str, datetime]:
    """TerminateInstanceInAutoScalingGroup per instance (the hook holds it), SENDERS threads."""
    autoscaling = stack.boto3_client("autoscaling")
    sent: dict[str, datetime] = {}

    def one(instance: str) -> None:
        sent[instance] = datetime.now(UTC)
        autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance, ShouldDecrementDesiredCapacity=True
        )

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(one, instances))
    return sent


# ---- the ceiling ----------------------------------------------------------------------------


def weighted(weights: dict[str, int]) -> Iterator[str]:
    """Smooth weighted round robin over the kinds."""
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    while True:
        for kind, weight in weights.items():
            current[kind] += weight
        kind = max(current, key=lambda k: current[k])
        current[kind] -= total
        yield kind


async def ceiling(
    kube: KubeApiProcess, weights: dict[str, int], avoid: set[str], seconds: float
) -> dict[str, Any]:
    """The service's mix of MIX's kinds, from the minimal load generator, req/s.

    In rounds, as bench/emulator.py does: eviction targets (Running, Ready pods, at most 20
    per Deployment, interleaved) are listed before each round, outside the measured time;
    a round ends when its targets run out (the mix would change) or the time is used."""
    url = kube.url
    weights = {k: w for k, w in weights.items() if w > 0}
    connector = aiohttp.TCPConnector(limit=CEILING_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        names = [n for n in await node_names(session, url) if n not in avoid]
        patched: Counter[str] = Counter()
        counter = dict.fromkeys(weights, 0)

        def calls(targets: list[tuple[str, str]]) -> Iterator[Call]:
            # The service annotates a pod just before it evicts it: so does this, the same
            # list in step, so neither kind runs out of live pods before the other.
            evicting, annotating = iter(targets), iter(targets)
            for kind in weighted(weights):
                i = counter[kind]
                counter[kind] += 1
                node = names[i % len(names)]
                if kind in ("evict", "annotate"):
                    target = next(evicting if kind == "evict" else annotating, None)
                    if target is None:
                        return
                    if kind == "evict":
                        yield evict_call(url, *target)
                    else:
                        yield annotate_call(url, *target, str(i))
                elif kind == "list":
                    yield list_call(url, node)
                elif kind == "read":
                    yield read_node_call(url, node)
                elif kind == "event":
                    yield event_call(url, node, i)
                else:
                    patched[node] += 1  # cordon, then uncordon on the next visit
                    yield patch_call(url, node, patched[node] % 2 == 1)

        warm = (list_call(url, names[i % len(names)]) for i in range(10**9))
        await fire(session, warm, CEILING_CONCURRENCY, time.monotonic() + 0.5)
        before = await asyncio.to_thread(kube.request_summary)
        samples: list[Any] = []
        active, rounds = 0.0, 0
        while active < seconds and rounds < 20:
            rounds += 1
            targets = await eviction_targets(session, url, names, per_app=20)
            if not targets and "evict" in weights:
                break
            stream = calls(targets)
            got, took = await fire(
                session, stream, CEILING_CONCURRENCY, time.monotonic() + seconds - active
            )
            samples += got
            active += took
            if active < seconds:  # replacements Ready again (not measured)
                await asyncio.to_thread(kube.wait, quiet_seconds=0.3, timeout=60)
        after = await asyncio.to_thread(kube.request_summary)
    latencies = [s.seconds for s in samples]
    by_kind = {k: v for k, v in diff(after, before).items() if not k.startswith("list pods")}
    by_kind["list pods 200 (incl. target listing)"] = count(diff(after, before), "list pods")
    return {
        "seconds": round(active, 3),
        "rounds": rounds,
        "requests": len(samples),
        "rps": round(len(samples) / active, 1) if active else 0.0,
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "statuses": dict(Counter(str(s.status) for s in samples)),
        "weights": weights,
        "requests_by_kind": by_kind,
    }


# ---- one run --------------------------------------------------------------------------------


async def run_once(sc: Scenario, index: int) -> dict[str, Any]:
    hooks = sc.name == "hooks"
    t_start = time.monotonic()
    print(
        f"== run {index}: {sc.name}, {sc.nodes} nodes x {sc.pods_per_node} pods, "
        f"{sc.warnings} {'lifecycle hooks' if hooks else 'Spot warnings'}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="lifecycled-storm-"))
    aws = AwsStackProcess(queue="lifecycled", groups={GROUP: sc.nodes}, spot=not hooks)
    kube = KubeApiProcess(record_limit=10_000)
    with kube, aws:
        setup_aws = time.monotonic() - t_start
        machines = [Machine(i.private_dns_name, i.id, i.az) for i in aws.instances[GROUP]]
        shape = Shape(
            nodes=sc.nodes,
            pods_per_node=sc.pods_per_node,
            job_pods_per_node=0.0 if hooks else 0.1,  # hooks: only the held jobs below
        )
        seeded = await asyncio.to_thread(kube.seed, shape, machines, wait=True)
        if seeded.get("errors") or not seeded.get("ready"):
            raise RuntimeError(f"seeding failed: {str(seeded)[:500]}")
        warned = pick(machines, sc.warnings)
        warned_ids = {m.instance_id or "" for m in warned}
        warned_nodes = [m.name for m in warned]
        total_pods = shape.total_pods
        print(
            f"   emulators up: moto {setup_aws:.0f} s; {total_pods} pods seeded in "
            f"{seeded['seconds']:.1f} s",
            flush=True,
        )
        stack = aws.stack()
        env = {
            **aws.env,
            "KUBECONFIG": str(kube.kubeconfig),
            # The service's own default (service_process sets 0.5 s for the demos).
            "LIFECYCLED_DRAIN_POLL_SECONDS": "1.0",
            "LIFECYCLED_KUBE_API_QPS": str(sc.kube_api_qps),
        }
        sink = StormLog(watched=warned_ids, want_hooks=hooks)
        crashed = None
        async with service_process(env, sink, workdir) as service:
            pid = service.proc.pid
            pids = {"service": pid, "kube": kube.pid, "aws": aws.pid}
            await asyncio.sleep(1.0)  # its first receive is under way
            if hooks:  # created now, so that their run time counts from the notices
                created = await asyncio.to_thread(kube.create_objects, held_jobs(sc, warned_nodes))
                if created.get("errors"):
                    raise RuntimeError(f"jobs not created: {str(created)[:500]}")
                total_pods += len(warned_nodes)
                await asyncio.to_thread(kube.wait, pods_ready=total_pods, timeout=120)
            on_warned = await pods_by_node(kube.url, warned_nodes)
            kinds = Counter(owner_kind(p) for pods in on_warned.values() for p in pods)
            doomed = sum(v for k, v in kinds.items() if k not in ("DaemonSet", "Job"))
            kube_before = await asyncio.to_thread(kube.request_summary)
            aws_before = await asyncio.to_thread(aws.call_summary)
            cpu_before = {k: cpu_seconds(p) for k, p in pids.items()}
            busy_before = machine_busy()
            sampler = Sampler(kube, pids)
            sampler.start()
            t0 = time.monotonic()
            publish = publish_scale_ins if hooks else publish_spot
            sent = await asyncio.to_thread(publish, stack, sorted(warned_ids))
            published = time.monotonic() - t0
            print(f"   {len(sent)} notices published in {published:.2f} s", flush=True)
            waiter = asyncio.create_task(sink.done.wait())
            exited = asyncio.create_task(service.proc.wait())
            await asyncio.wait(
                [waiter, exited], timeout=sc.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if exited.done():
                crashed = f"the service exited with {service.proc.returncode} during the storm"
            waiter.cancel()
            exited.cancel()
            storm_seconds = time.monotonic() - t0
            cpu_after = {k: cpu_seconds(p) for k, p in pids.items()}
            busy_after = machine_busy()
            rss = peak_rss_mib(pid)
            sampler.stop()
            kube_after = await asyncio.to_thread(kube.request_summary)
            aws_after = await asyncio.to_thread(aws.call_summary)
            cpu_total_service = cpu_after["service"]
        code = service.code
        print(f"   storm over after {storm_seconds:.1f} s; measuring the ceiling", flush=True)
        kube_storm, aws_storm = diff(kube_after, kube_before), diff(aws_after, aws_before)
        weights = {kind: count(kube_storm, key) for kind, key in MIX.items()}
        top = await ceiling(kube, weights, set(warned_nodes), sc.ceiling_seconds)

    # ---- figures ----
    finished_at = [at for at, _ in sink.finished.values()]
    ends = list(sink.hook_completed.values()) if hooks else finished_at
    first_sent = min(sent.values())
    window = (max(ends) - first_sent).total_seconds() if ends else storm_seconds
    kube_calls = sum(kube_storm.values())
    aws_calls = sum(aws_storm.values())
    evictions_201 = count(kube_storm, "evict pods/eviction 201")
    refusals_429 = count(kube_storm, "evict pods/eviction 429")
    covered = sum(weights.values())
    achieved = kube_calls / window if window > 0 else 0.0
    drained = {i for i, (_, outcome) in sink.finished.items() if outcome == "drained"}
    in_time = [i for i in drained if i in sink.deadline and sink.finished[i][0] <= sink.deadline[i]]
    hook_after_job = [
        (sink.hook_completed[i] - sink.job_finished[i]).total_seconds()
        for i in sink.hook_completed
        if i in sink.job_finished
    ]
    cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after}
    busy = busy_after[0] - busy_before[0]
    elapsed = busy_after[1] - busy_before[1]
    per = max(1, evictions_201)
    result: dict[str, Any] = {
        "scenario": sc.name,
        "nodes": sc.nodes,
        "pods": total_pods,
        "warnings": sc.warnings,
        "doomed_pods": doomed,
        "pods_on_warned_nodes": dict(kinds),
        "published_seconds": round(published, 3),
        "storm_seconds": round(window, 3),
        "cordon": spread(since(sent, sink.cordoned)),
        "first_eviction": spread(since(sent, sink.first_eviction)),
        "drained": spread(since(sent, {i: at for i, (at, _) in sink.finished.items()})),
        "hook_completed": spread(since(sent, sink.hook_completed)),
        "hook_after_last_job_s": spread(hook_after_job),
        "received": spread(since(sent, sink.received)),
        "outcomes": dict(Counter(o for _, o in sink.finished.values())),
        "drained_count": len(drained),
        "drained_before_deadline": round(len(in_time) / sc.warnings, 4) if sc.warnings else 0.0,
        "ceiling": top,
        "ceiling_rps": top["rps"],
        "achieved_rps": round(achieved, 1),
        "achieved_peak_rps": round(sampler.peak_rate(), 1),
        "ceiling_ratio": round(achieved / top["rps"], 3) if top["rps"] else None,
        "mix_share_of_service_requests": round(covered / kube_calls, 3) if kube_calls else None,
        "kube_requests": kube_calls,
        "kube_requests_by_kind": kube_storm,
        "aws_requests": aws_calls,
        "aws_requests_by_kind": aws_storm,
        "evictions": evictions_201,
        "budget_refusals": refusals_429,
        "api_calls_per_evicted_pod": round((kube_calls + aws_calls) / per, 3),
        "kube_calls_per_evicted_pod": round(kube_calls / per, 3),
        "aws_calls_per_evicted_pod": round(aws_calls / per, 3),
        "kube_calls_per_node": round(kube_calls / max(1, sc.warnings), 2),
        "aws_calls_per_node": round(aws_calls / max(1, sc.warnings), 2),
        "evictions_per_pod": round(evictions_201 / doomed, 3) if doomed else None,
        "eviction_attempts_per_pod": (
            round((evictions_201 + refusals_429) / doomed, 3) if doomed else None
        ),
        "peak_rss_mib": round(rss, 1),
        "service_cpu_seconds": round(cpu_total_service, 2),
        "storm_cpu_seconds": cpu,
        "storm_cpu_share": {k: round(v / window, 3) for k, v in cpu.items()} if window else {},
        "peak_cpu_share": {k: round(sampler.peak_cpu(k), 3) for k in cpu},
        "machine_busy_share": round(busy / elapsed, 3) if elapsed else None,
        "kube_max_loop_lag_ms": sampler.max_lag_ms(),
        "service_warnings": dict(sink.errors.most_common(10)),
        "service_log_lines": sink.lines,
        "service_exit_code": code,
        "crashed": crashed or (f"exit code {code}" if code not in (0, None) else None),
        "run_seconds": round(time.monotonic() - t_start, 1),
        "timeline": sampler.samples,
    }
    return result


# ---- several runs, the table ----------------------------------------------------------------

KEY_FIGURES = (
    "cordon_p99_s",
    "drained_p99_s",
    "drained_before_deadline",
    "ceiling_rps",
    "achieved_rps",
    "ceiling_ratio",
    "api_calls_per_evicted_pod",
    "evictions_per_pod",
    "peak_rss_mib",
)


def flatten(run: dict[str, Any]) -> dict[str, Any]:
    """The headline keys of one run (p50/p95/p99/max of each step as `<step>_<q>_s`)."""
    out: dict[str, Any] = {}
    for step in ("cordon", "first_eviction", "drained", "hook_completed", "received"):
        for q in ("p50", "p95", "p99", "max"):
            out[f"{step}_{q}_s"] = run[step][q]
    for key, value in run.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out


def median_of(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return round(statistics.median(numbers), 3) if numbers else None


def report(runs: list[dict[str, Any]], sc: Scenario, short: bool) -> dict[str, Any]:
    flat = [flatten(r) for r in runs]
    keys = list(flat[0])
    summary = {k: median_of([f.get(k) for f in flat]) for k in keys}
    for k in ("nodes", "pods", "warnings", "doomed_pods"):
        summary[k] = flat[0][k]
    runs_out = [{k: v for k, v in r.items() if k != "timeline"} for r in runs]
    for r, full in zip(runs_out, runs, strict=True):
        r["timeline"] = full["timeline"]
    return {
        "scenario": sc.name,
        "mode": "short" if short else "full",
        "kube_api_qps": sc.kube_api_qps,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        },
        "runs_count": len(runs),
        **summary,
        "crashed": [r["crashed"] for r in runs if r["crashed"]],
        "runs": runs_out,
    }


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}{unit}"
    return f"{value:,}{unit}"


def table(out: dict[str, Any]) -> str:
    n = out["runs_count"]
    what = f"median of {n} runs" if n > 1 else "one run"
    last = out["runs"][-1]
    qps = out["kube_api_qps"]
    budget = f"{qps:,.0f} req/s" if qps > 0 else "off"
    lines = [
        f"storm ({out['scenario']}, {out['mode']}, {what}): {out['nodes']:,} nodes, "
        f"{out['pods']:,} pods, {out['warnings']:,} notices, {out['doomed_pods']:,} pods to evict",
        f"the service's Kubernetes request budget (LIFECYCLED_KUBE_API_QPS): {budget}",
        "",
        "| from the notice sent to | n | p50 s | p95 s | p99 s | max s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for step in ("received", "cordon", "first_eviction", "drained", "hook_completed"):
        cells = [fmt(out.get(f"{step}_{q}_s")) for q in ("p50", "p95", "p99", "max")]
        lines.append(
            f"| {step.replace('_', ' ')} | {last[step]['n']} | " + " | ".join(cells) + " |"
        )
    share = last["storm_cpu_share"]
    peak = last["peak_cpu_share"]
    rows = [
        ("drained before the deadline", fmt(out["drained_before_deadline"])),
        ("outcomes (last run)", ", ".join(f"{k}: {v}" for k, v in last["outcomes"].items())),
        ("storm (first notice to last drain)", fmt(out["storm_seconds"], " s")),
        ("API ceiling (same mix, load generator)", fmt(out["ceiling_rps"], " req/s")),
        ("service achieved (storm average)", fmt(out["achieved_rps"], " req/s")),
        ("service achieved (best second)", fmt(out["achieved_peak_rps"], " req/s")),
        ("achieved / ceiling", fmt(out["ceiling_ratio"])),
        (
            "Kubernetes calls per evicted pod / per node",
            (f"{fmt(out['kube_calls_per_evicted_pod'])} / {fmt(out['kube_calls_per_node'])}"),
        ),
        (
            "AWS calls per evicted pod / per node",
            (f"{fmt(out['aws_calls_per_evicted_pod'])} / {fmt(out['aws_calls_per_node'])}"),
        ),
        ("all API calls per evicted pod", fmt(out["api_calls_per_evicted_pod"])),
        ("evictions per doomed pod (201s; 1.0 ideal)", fmt(out["evictions_per_pod"])),
        ("eviction attempts per doomed pod (201 + 429)", fmt(out["eviction_attempts_per_pod"])),
        ("service peak RSS", fmt(out["peak_rss_mib"], " MiB")),
        (
            "service CPU (whole life / storm)",
            (
                f"{fmt(out['service_cpu_seconds'], ' s')} / "
                f"{fmt(last['storm_cpu_seconds']['service'], ' s')}"
            ),
        ),
        (
            "CPU share in the storm: service / kube / moto",
            (
                f"{share.get('service', 0):.2f} / {share.get('kube', 0):.2f} / "
                f"{share.get('aws', 0):.2f}"
                f" (best second {peak.get('service', 0):.2f} / {peak.get('kube', 0):.2f} / "
                f"{peak.get('aws', 0):.2f}; 1.0 = a core)"
            ),
        ),
        ("machine busy in the storm (all processes)", fmt(out["machine_busy_share"])),
        ("emulator max loop lag", fmt(out["kube_max_loop_lag_ms"], " ms")),
    ]
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm")
    parser.add_argument("--scenario", choices=("spot", "hooks"), default="spot")
    parser.add_argument("--short", action="store_true", help="CI size: 40 nodes, 10 notices")
    parser.add_argument("--runs", type=int, default=1, help="report the medians of this many")
    parser.add_argument("--nodes", type=int, help="N (spot 2000, hooks 600, short 40)")
    parser.add_argument("--pods", type=int, help="P, pods per node, the DaemonSet's included")
    parser.add_argument("--warnings", type=int, help="K notices (spot 1000, hooks 300)")
    parser.add_argument("--ceiling-seconds", type=float, help="load generator time (10, short 2)")
    parser.add_argument(
        "--kube-api-qps",
        type=float,
        default=0.0,
        help="the service's LIFECYCLED_KUBE_API_QPS (default 0: no budget; its own default 1000)",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    sc = scenario(args)
    if sc.warnings >= sc.nodes:
        parser.error("the warned nodes' pods need somewhere to go: --warnings < --nodes")
    runs = [asyncio.run(run_once(sc, i + 1)) for i in range(max(1, args.runs))]
    out = report(runs, sc, args.short)
    name = "storm" + ("-hooks" if sc.name == "hooks" else "") + ("-short" if args.short else "")
    path = args.output or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print()
    print(table(out))
    print(f"\nwritten to {path}")
    failures = []
    for r in runs:
        if r["crashed"]:
            failures.append(f"run: the service crashed ({r['crashed']})")
        if not r["drained_count"]:
            failures.append("run: no drain finished")
    for failure in failures:
        print(f"BENCH FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
