"""The Kubernetes emulator's own throughput, at two cluster sizes, in a process of its own.

For each size the emulator (`python -m devstack.kube`, through KubeApiProcess) is started
fresh and seeded with a storm-shaped cluster (20 pods per node: Deployments of 50 under
PodDisruptionBudgets, a DaemonSet, some Job pods). Then a minimal concurrent aiohttp load
generator fires, one kind at a time:

- list: `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>` (a drain's view of a node)
- patch: `PATCH /api/v1/nodes/<node>` strategic merge `{"spec": {"unschedulable": ...}}`
  (cordon, then uncordon on the next round over the nodes)
- evict: `POST .../pods/<pod>/eviction` (policy/v1), on Running pods spread over the
  Deployments within their budgets; rounds until the time is used, the cluster settles
  (replacements Ready) between rounds, outside the measured time; at most 10 rounds (3
  with --short)

and prints requests/s, p50 and p99 per kind and size, writes bench/results/emulator.json and
exits 1 when, for any kind, the large size's rate is below half the small size's (the target
is flat: per-request cost must not grow with the cluster).

    python -m bench.emulator            # 1,000 and 20,000 pods, ~10 s per kind (a few minutes)
    python -m bench.emulator --short    # 200 and 1,000 pods, ~2 s per kind (CI, ~30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from devstack.kube.process import KubeApiProcess
from devstack.kube.seeding import Shape

RESULTS = Path(__file__).resolve().parent / "results" / "emulator.json"
KINDS = ("list", "patch", "evict")
FLATNESS = 0.5  # large-size rate must be at least this fraction of the small-size rate
STRATEGIC = "application/strategic-merge-patch+json"


@dataclass
class Sample:
    seconds: float
    status: int


@dataclass
class Result:
    kind: str
    pods: int
    requests: int = 0
    active_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    @classmethod
    def of(cls, kind: str, pods: int, samples: list[Sample], active: float) -> Result:
        latencies = sorted(s.seconds for s in samples)
        statuses = Counter(str(s.status) for s in samples)
        result = cls(kind, pods, len(samples), round(active, 3), dict(sorted(statuses.items())))
        if latencies:
            result.rate = round(len(samples) / active, 1) if active > 0 else 0.0
            result.p50_ms = round(statistics.median(latencies) * 1000, 2)
            result.p99_ms = round(percentile(latencies, 0.99) * 1000, 2)
            result.max_ms = round(latencies[-1] * 1000, 2)
        return result


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


Call = Callable[[aiohttp.ClientSession], Awaitable[int]]


async def fire(
    session: aiohttp.ClientSession, calls: Iterator[Call], concurrency: int, until: float
) -> tuple[list[Sample], float]:
    """Run `calls` with `concurrency` in flight until they run out or `until` (monotonic)."""
    samples: list[Sample] = []
    started = time.monotonic()

    async def worker() -> None:
        for call in calls:
            if time.monotonic() >= until:
                return
            t0 = time.perf_counter()
            status = await call(session)
            samples.append(Sample(time.perf_counter() - t0, status))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.monotonic() - started


def request_call(method: str, url: str, body: str | None = None, content_type: str = "") -> Call:
    """One request, its reply read whole (as a client's would be); the call returns the status."""
    headers = {"Content-Type": content_type} if content_type else {}

    async def call(session: aiohttp.ClientSession) -> int:
        async with session.request(method, url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    return call


def list_call(url: str, node: str) -> Call:
    return request_call("GET", f"{url}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")


def patch_call(url: str, node: str, unschedulable: bool) -> Call:
    body = json.dumps({"spec": {"unschedulable": unschedulable}})
    return request_call("PATCH", f"{url}/api/v1/nodes/{node}", body, STRATEGIC)


def evict_call(url: str, namespace: str, pod: str) -> Call:
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}})
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction"
    return request_call("POST", url + path, body, "application/json")


def read_node_call(url: str, node: str) -> Call:
    return request_call("GET", f"{url}/api/v1/nodes/{node}")


def annotate_call(url: str, namespace: str, pod: str, value: str) -> Call:
    """As the service's deadline annotation: a strategic-merge patch of one annotation."""
    body = json.dumps({"metadata": {"annotations": {"bench.lifecycled.io/mark": value}}})
    return request_call("PATCH", f"{url}/api/v1/namespaces/{namespace}/pods/{pod}", body, STRATEGIC)


def event_call(url: str, node: str, serial: int) -> Call:
    """As the service's Events: a core/v1 Event about a node, a new name each time."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{node}.{serial:x}", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": node, "namespace": ""},
        "reason": "BenchCeiling",
        "message": "load generator",
        "type": "Normal",
        "source": {"component": "bench"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    body = json.dumps(event)
    return request_call("POST", f"{url}/api/v1/namespaces/default/events", body, "application/json")


def cycle(make: Callable[[int], Call]) -> Iterator[Call]:
    i = 0
    while True:
        yield make(i)
        i += 1


async def node_names(session: aiohttp.ClientSession, url: str) -> list[str]:
    async with session.get(f"{url}/api/v1/nodes") as response:
        body = await response.json()
    return sorted(n["metadata"]["name"] for n in body["items"])


async def eviction_targets(
    session: aiohttp.ClientSession, url: str, nodes: list[str], per_app: int
) -> list[tuple[str, str]]:
    """Running, Ready, not terminating, non-DaemonSet pods, at most `per_app` per app, taken
    node by node (as drains would) and interleaved across apps."""
    by_app: dict[str, list[tuple[str, str]]] = {}

    async def one(node: str) -> list[Any]:
        params = {"fieldSelector": f"spec.nodeName={node}"}
        async with session.get(f"{url}/api/v1/pods", params=params) as response:
            items: list[Any] = (await response.json())["items"]
            return items

    lists = await asyncio.gather(*(one(n) for n in nodes))
    for pod in (p for items in lists for p in items):
        m = pod["metadata"]
        refs = m.get("ownerReferences") or []
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        if m.get("deletionTimestamp") or not ready or any(r["kind"] == "DaemonSet" for r in refs):
            continue
        app = (m.get("labels") or {}).get("app", m["name"])
        picked = by_app.setdefault(app, [])
        if len(picked) < per_app:
            picked.append((m["namespace"], m["name"]))
    queues = list(by_app.values())
    out: list[tuple[str, str]] = []
    while queues:
        out.extend(q.pop() for q in queues)
        queues = [q for q in queues if q]
    return out


async def settle(kube: KubeApiProcess, pods: int) -> None:
    """Every pod Ready again and the store quiet (not measured)."""
    await asyncio.to_thread(kube.wait, pods_ready=pods, quiet_seconds=0.3, timeout=120)


async def phase(
    kube: KubeApiProcess,
    kind: str,
    pods: int,
    run: Callable[[], Awaitable[tuple[list[Sample], float]]],
) -> tuple[Result, dict[str, float]]:
    before = await asyncio.to_thread(kube.stats)  # also resets the loop-lag maximum
    samples, active = await run()
    after = await asyncio.to_thread(kube.stats)
    emulator = {
        "controller_busy_seconds": round(
            after["controllers"]["busy_seconds"] - before["controllers"]["busy_seconds"], 3
        ),
        "max_loop_lag_ms": round(after["loop"]["max_lag_seconds"] * 1000, 1),
    }
    return Result.of(kind, pods, samples, active), emulator


async def run_size(
    nodes: int, duration: float, concurrency: int, max_rounds: int
) -> dict[str, Any]:
    # Budgets of 50% so that most evictions are allowed. Evicted pods exit at once, so the
    # follow-up work (termination, replacement, scheduling, start) overlaps the measured
    # round at every size instead of falling after a short round; the cluster also settles
    # fast between rounds (settling is not measured).
    shape = Shape(nodes=nodes, max_unavailable="50%", start_seconds=0.02, exit_seconds=0.0)
    total = shape.total_pods
    print(f"-- {nodes} nodes, {total} pods: starting the emulator and seeding", flush=True)
    with KubeApiProcess(record_limit=50_000) as kube:
        seeded = await asyncio.to_thread(kube.seed, shape, wait=True)
        if not seeded.get("ready") or seeded.get("errors"):
            raise RuntimeError(f"seeding failed: {seeded}")
        print(f"   seeded in {seeded['seconds']:.1f} s", flush=True)
        await settle(kube, total)
        url = kube.url
        connector = aiohttp.TCPConnector(limit=concurrency)
        results: dict[str, Result] = {}
        emulator: dict[str, dict[str, float]] = {}
        async with aiohttp.ClientSession(connector=connector) as session:
            names = await node_names(session, url)
            warm = cycle(lambda i: list_call(url, names[i % len(names)]))
            await fire(session, warm, concurrency, time.monotonic() + min(1.0, duration / 4))

            async def lists() -> tuple[list[Sample], float]:
                calls = cycle(lambda i: list_call(url, names[i % len(names)]))
                return await fire(session, calls, concurrency, time.monotonic() + duration)

            async def patches() -> tuple[list[Sample], float]:
                calls = cycle(
                    lambda i: patch_call(url, names[i % len(names)], (i // len(names)) % 2 == 0)
                )
                return await fire(session, calls, concurrency, time.monotonic() + duration)

            async def evictions() -> tuple[list[Sample], float]:
                samples: list[Sample] = []
                active = 0.0
                for _ in range(max_rounds):
                    if active >= duration:
                        break
                    targets = await eviction_targets(session, url, names, per_app=20)
                    if not targets:
                        break
                    calls = iter([evict_call(url, ns, pod) for ns, pod in targets])
                    until = time.monotonic() + duration - active
                    got, took = await fire(session, calls, concurrency, until)
                    samples += got
                    active += took
                    if active < duration:
                        await settle(kube, total)
                return samples, active

            for kind, run in (("list", lists), ("patch", patches)):
                results[kind], emulator[kind] = await phase(kube, kind, total, run)
            uncordon = iter([patch_call(url, n, False) for n in names])
            await fire(session, uncordon, concurrency, time.monotonic() + 600)
            await settle(kube, total)
            results["evict"], emulator["evict"] = await phase(kube, "evict", total, evictions)
        stats = await asyncio.to_thread(kube.stats)
    for kind in KINDS:
        r = results[kind]
        print(
            f"   {kind:5}  {r.requests:6d} req  {r.rate:8.1f} req/s  p50 {r.p50_ms:7.2f} ms  "
            f"p99 {r.p99_ms:7.2f} ms  {r.statuses}  (emulator busy "
            f"{emulator[kind]['controller_busy_seconds']:.2f} s, max loop lag "
            f"{emulator[kind]['max_loop_lag_ms']:.0f} ms)",
            flush=True,
        )
    return {
        "nodes": nodes,
        "pods": total,
        "seed_seconds": seeded["seconds"],
        "results": {k: asdict(v) for k, v in results.items()},
        "emulator": emulator,
        "final_stats": stats,
    }


def table(sizes: list[dict[str, Any]]) -> str:
    lines = [
        "| kind | pods | requests | req/s | p50 ms | p99 ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for kind in KINDS:
        for size in sizes:
            r = size["results"][kind]
            statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
            lines.append(
                f"| {kind} | {size['pods']:,} | {r['requests']:,} | {r['rate']:,.0f} | "
                f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {statuses} |"
            )
    lines += [f"| seeding | {s['pods']:,} | | | | | {s['seed_seconds']:.1f} s |" for s in sizes]
    return "\n".join(lines)


async def bench(
    node_counts: list[int], duration: float, concurrency: int, max_rounds: int
) -> dict[str, Any]:
    sizes = [await run_size(n, duration, concurrency, max_rounds) for n in node_counts]
    small, large = sizes[0], sizes[-1]
    ratios = {
        kind: round(large["results"][kind]["rate"] / max(small["results"][kind]["rate"], 1e-9), 3)
        for kind in KINDS
    }
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_seconds": duration,
        "concurrency": concurrency,
        "max_eviction_rounds": max_rounds,
        "sizes": sizes,
        "ratios": ratios,
        "target": f"large/small req/s >= {FLATNESS} for every kind",
        "ok": all(r >= FLATNESS for r in ratios.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator")
    parser.add_argument("--short", action="store_true", help="CI size: 200 and 1,000 pods, 2 s")
    parser.add_argument("--nodes", type=int, nargs=2, metavar=("SMALL", "LARGE"))
    parser.add_argument("--duration", type=float, help="seconds per request kind and size")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="eviction rounds at most (3, or 10 in full)")
    parser.add_argument("--output", type=Path, help="default: results/emulator(-short).json")
    args = parser.parse_args(argv)
    nodes = args.nodes or ([10, 50] if args.short else [50, 1000])
    duration = args.duration or (2.0 if args.short else 10.0)
    rounds = args.rounds or (3 if args.short else 10)
    report = asyncio.run(bench(nodes, duration, args.concurrency, rounds))
    report["mode"] = "short" if args.short else "full"
    # A short run never overwrites the full figures the README quotes.
    output = args.output or (RESULTS.with_name("emulator-short.json") if args.short else RESULTS)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report["sizes"]))
    print()
    for kind, ratio in report["ratios"].items():
        print(f"{kind}: {nodes[-1] * 20:,}-pod rate / {nodes[0] * 20:,}-pod rate = {ratio:.2f}")
    print(f"written to {output}")
    if not report["ok"]:
        print(f"BENCH FAILED: a per-request rate fell below {FLATNESS} of the small size's")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
