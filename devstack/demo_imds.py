"""`make demo-imds`: DaemonSet mode on the embedded stack.

One node's instance metadata (the IMDS emulator) gets a Spot interruption notice; the real
service (`lifecycled run --source imds`, as the DaemonSet pod on that node would run it)
drains the node. Configured as a user would: NODE_NAME, AWS_EC2_METADATA_SERVICE_ENDPOINT,
KUBECONFIG, AWS_ENDPOINT_URL and LIFECYCLED_* variables.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from kubernetes_asyncio import client, config

from devstack.aws import AwsStack
from devstack.cluster import Machine, Workloads, expected_pods, seed, wait_running
from devstack.demo import Timeline
from devstack.imds import ImdsEmulator, in_thread
from devstack.kube import KubeApiServerThread
from devstack.service_process import say, service_process, total, verdict

NODES = 4
POLL_SECONDS = 1.0
WORKLOADS = Workloads(
    web_replicas=8,
    web_max_unavailable=1,
    api_replicas=24,
    job_parallelism=0,
    exit_seconds=1.0,
    grace_seconds=30,
)
TIMEOUT = 60.0


async def pods_left(api: client.ApiClient, node: str) -> list[str]:
    """Pods on `node` that a drain must move (DaemonSet pods stay)."""
    reply = await client.CoreV1Api(api).list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={node}"
    )
    return [
        f"{p.metadata.namespace}/{p.metadata.name}"
        for p in reply.items
        if not any(ref.kind == "DaemonSet" for ref in p.metadata.owner_references or [])
    ]


async def run_demo(
    aws: AwsStack, kube: KubeApiServerThread, imds: ImdsEmulator, workdir: Path, node: str
) -> int:
    kubeconfig = workdir / "kubeconfig"
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    env = {
        **aws.env(),
        **imds.env(),
        "KUBECONFIG": str(kubeconfig),
        "NODE_NAME": node,
        "LIFECYCLED_SOURCE": "imds",
        "LIFECYCLED_IMDS_POLL_SECONDS": str(POLL_SECONDS),
        "LIFECYCLED_EVICTION_RETRY_SECONDS": "1",
    }
    timeline = Timeline()
    async with (
        client.ApiClient(configuration) as api,
        service_process(env, timeline, workdir) as service,
    ):
        say(f"== lifecycled --source imds running for {node} (pid {service.proc.pid})")
        before = len(await pods_left(api, node))
        action = imds.set_spot_action()
        say(f"== IMDS spot/instance-action now says {action}; {before} pods to move")
        values = await service.wait_for(
            lambda v: bool(total(v, "lifecycled_drain_duration_seconds_count")), TIMEOUT
        )
        left = await pods_left(api, node)
    code = service.code
    timeline.print()
    drained = total(values, "lifecycled_drain_duration_seconds_count", outcome="drained")
    say("\n== summary")
    polls_ok = int(total(values, "lifecycled_imds_polls_total", outcome="ok"))
    polls_failed = int(total(values, "lifecycled_imds_polls_total", outcome="error"))
    evicted = int(total(values, "lifecycled_evictions_total", outcome="evicted"))
    say(f"  IMDS polls ok/error: {polls_ok}/{polls_failed}")
    say(f"  pods evicted:        {evicted}")
    say(f"  pods left on {node}: {len(left)}")
    say(f"  service exit code:   {code}; full log: {service.log}")
    failures: list[str] = []
    if not drained or left:
        failures.append(f"{node} was not drained ({len(left)} pods left)")
    if code != 0:
        failures.append(f"lifecycled exited with {code}")
    return verdict(failures)


async def build(aws: AwsStack, kube: KubeApiServerThread, workdir: Path) -> list[Machine]:
    instances = aws.create_group("demo-daemonset", size=NODES, heartbeat_timeout=30)
    machines = [Machine(i.id, i.private_dns_name, i.az) for i in instances]
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        await seed(api, machines, WORKLOADS)
        ready = await wait_running(api, expected_pods(machines, WORKLOADS))
    say(f"== cluster: {NODES} nodes, {ready} pods running; no SQS queue, no EventBridge rules")
    return machines


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lifecycled-demo-imds-"))
    aws = AwsStack()
    kube = KubeApiServerThread()
    aws.start()
    kube.start()
    try:
        say(f"== building the stack: moto at {aws.endpoint_url}, Kubernetes at {kube.url}")
        machines = asyncio.run(build(aws, kube, workdir))
        target = machines[0]
        emulator = ImdsEmulator(instance_id=target.instance_id, region=aws.region, az=target.az)
        with in_thread(emulator) as imds:
            say(f"== IMDS emulator for {target.instance_id} at {imds.url}")
            return asyncio.run(run_demo(aws, kube, imds, workdir, target.private_dns_name))
    finally:
        kube.stop()
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
