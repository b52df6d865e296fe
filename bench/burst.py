"""A burst of Spot warnings against the embedded stack, the real service as a subprocess.

Measures, from the moment each warning is sent (through EventBridge, into SQS): time to
cordon and time to drained per node (p50 / p95 / max), and the service's peak resident
memory. Targets (checked; exit 1
when missed): cordon p95 under 5 s, every drain done within 100 s of a 120 s warning, peak
RSS under 250 MiB.

    python -m bench.burst                 # 60 nodes, 30 warnings (make bench)
    python -m bench.burst --nodes 12 --burst 6   # the CI-sized run (make bench-short)

from the repo root, where devstack/ (not installed with lifecycled) is importable.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from kubernetes_asyncio import client, config

from devstack.aws import AwsStack
from devstack.cluster import Machine, Workloads, expected_pods, seed, wait_running
from devstack.demo import Timeline
from devstack.kube import KubeApiServerThread
from devstack.service_process import Values, service_process, total

CORDON_P95_LIMIT = 5.0
DRAIN_MAX_LIMIT = 100.0
RSS_LIMIT_MIB = 250.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    median, worst = statistics.median(values), max(values)
    return f"p50 {median:5.2f} s  p95 {p95(values):5.2f} s  max {worst:5.2f} s"


def since(sent: dict[str, datetime], timeline: Timeline, step: str) -> list[float]:
    """Seconds from each warning's sending to its instance's first `step`."""
    found = []
    for instance, steps in timeline.steps.items():
        times = [at for at, what in steps if what.startswith(step)]
        if times and instance in sent:
            found.append((min(times) - sent[instance]).total_seconds())
    return found


async def run(aws: AwsStack, kube: KubeApiServerThread, nodes: int, burst: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lifecycled-bench-"))
    queue = aws.create_queue("bench", dlq=True)
    aws.route_events_to(queue)
    instances = aws.create_group("bench", size=nodes, heartbeat_timeout=300)
    machines = [Machine(i.id, i.private_dns_name, i.az) for i in instances]
    workloads = Workloads(
        web_replicas=nodes * 2,
        web_max_unavailable=max(2, nodes // 5),
        api_replicas=nodes * 7,
        job_parallelism=0,
        exit_seconds=1.0,
        grace_seconds=30,
    )
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        await seed(api, machines, workloads)
        pods = await wait_running(api, expected_pods(machines, workloads), within=120)
    print(f"== {nodes} nodes, {pods} pods; {burst} Spot warnings at once")
    env = {
        **aws.env(),
        "KUBECONFIG": str(kubeconfig),
        "LIFECYCLED_QUEUE_URL": queue.url,
        "LIFECYCLED_SQS_WAIT_SECONDS": "2",
        "LIFECYCLED_EVICTION_RETRY_SECONDS": "1",
    }
    timeline = Timeline()
    async with service_process(env, timeline, workdir) as service:
        sent: dict[str, datetime] = {}
        for instance in instances[:burst]:
            sent[instance.id] = datetime.now(UTC)
            aws.send_spot_interruption(instance.id)

        def done(values: Values) -> bool:
            return total(values, "lifecycled_drain_duration_seconds_count") >= burst

        values = await service.wait_for(done, 150)
        rss = peak_rss_mib(service.proc.pid)
    cordon = since(sent, timeline, "cordoned")
    drained = since(sent, timeline, "drain finished: drained")
    print(f"  cordoned:  {len(cordon):3d}/{burst}  {spread(cordon)}")
    print(f"  drained:   {len(drained):3d}/{burst}  {spread(drained)}")
    evicted = total(values, "lifecycled_evictions_total", outcome="evicted")
    refused = total(values, "lifecycled_evictions_total", outcome="blocked_by_budget")
    print(f"  evictions: {int(evicted)}, budget refusals {int(refused)}")
    print(f"  peak RSS:  {rss:.0f} MiB; service exit code {service.code}")
    failures = []
    if len(drained) < burst:
        failures.append(f"only {len(drained)} of {burst} drains finished")
    if cordon and p95(cordon) > CORDON_P95_LIMIT:
        failures.append(f"cordon p95 above {CORDON_P95_LIMIT} s")
    if drained and max(drained) > DRAIN_MAX_LIMIT:
        failures.append(f"a drain took more than {DRAIN_MAX_LIMIT} s")
    if rss > RSS_LIMIT_MIB:
        failures.append(f"peak RSS {rss:.0f} MiB above {RSS_LIMIT_MIB} MiB")
    if service.code != 0:
        failures.append(f"service exited with {service.code}")
    for failure in failures:
        print(f"BENCH FAILED: {failure}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=60)
    parser.add_argument("--burst", type=int, default=30)
    args = parser.parse_args()
    aws, kube = AwsStack(), KubeApiServerThread()
    aws.start()
    kube.start()
    try:
        return asyncio.run(run(aws, kube, args.nodes, args.burst))
    finally:
        kube.stop()
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
