"""`make demo`: the whole flow on the embedded stack, no AWS account and no cluster needed.

moto's server and the Kubernetes emulator run in this process (each in its own thread);
the real service runs as a subprocess (`lifecycled run`), configured exactly as a user
would configure it: AWS_ENDPOINT_URL, KUBECONFIG and LIFECYCLED_* variables.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from devstack import timeline_svg
from devstack.aws import AwsStack, Instance
from devstack.cluster import (
    Machine,
    NodeJoiner,
    Workloads,
    expected_pods,
    job,
    seed,
    wait_running,
)
from devstack.kube import KubeApiServerThread
from devstack.service_process import Values, say, service_process, total, verdict
from lifecycled.clients.kube import JsonDict

NODES = 20
SPOT_BURST = 5
WORKLOADS = Workloads(
    web_replicas=30,
    web_max_unavailable=2,
    api_replicas=140,
    job_parallelism=20,
    exit_seconds=1.5,
    grace_seconds=30,
    job_run_seconds=25,  # long enough for a held hook to show; short enough for a demo
)
TIMEOUT = 120.0
HOSTNAME = "kubernetes.io/hostname"
NODE_PORTS = {"web": 30080, "api": 30443}  # NodePort services behind two ALB target groups
GROUP = "demo-workers"
DEADLINE = "lifecycled.io/interruption-deadline"
KIND = "lifecycled.io/interruption-kind"


@dataclass
class Timeline:
    """Built from the service's own JSON log lines."""

    event_time: dict[str, datetime] = field(default_factory=dict)  # instance -> event time
    kind: dict[str, str] = field(default_factory=dict)
    node: dict[str, str] = field(default_factory=dict)  # instance -> node
    steps: dict[str, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    evicted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lines: list[dict[str, Any]] = field(default_factory=list)
    deadline: dict[str, datetime] = field(default_factory=dict)  # instance -> drain deadline

    def instance_of(self, node: str) -> str | None:
        return next((i for i, n in self.node.items() if n == node), None)

    def add(self, entry: dict[str, Any]) -> None:
        self.lines.append(entry)
        at = datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
        event = entry.get("event")
        if event == "notice received":
            for instance in entry.get("instances", []):
                self.event_time.setdefault(instance, datetime.fromisoformat(entry["event_time"]))
                self.kind.setdefault(instance, entry["kind"])
                self.steps[instance].append((at, f"notice received ({entry['kind']})"))
        elif event == "node cordoned":
            self.node[entry["instance"]] = entry["node"]
            if entry.get("deadline"):
                self.deadline[entry["instance"]] = datetime.fromisoformat(entry["deadline"])
            self.steps[entry["instance"]].append((at, "cordoned and tainted"))
        elif event == "pod evicted":
            instance = self.instance_of(entry["node"])
            if instance:
                if not self.evicted[instance]:
                    self.steps[instance].append((at, "first eviction"))
                self.evicted[instance] += 1
        elif event == "eviction refused by disruption budget; will retry":
            instance = self.instance_of(entry["node"])
            if instance:
                self.refused[instance] += 1
        elif event == "waiting for a job to finish":
            instance = self.instance_of(entry["node"])
            if instance:
                self.steps[instance].append((at, f"waiting for job pod {entry['pod']}"))
        elif event == "waited-for job finished":
            instance = self.instance_of(entry["node"])
            if instance:
                self.steps[instance].append((at, f"job pod {entry['pod']} finished"))
        elif event == "node deregistered from its load balancers":
            groups = len(entry.get("target_groups") or [])
            self.steps[entry["instance"]].append((at, f"out of {groups} target groups"))
        elif event == "load balancer wait over; evicting":
            instance = self.instance_of(entry["node"])
            if instance:
                self.steps[instance].append((at, f"load balancers drained ({entry['outcome']})"))
        elif event == "replacement node ready; draining":
            self.steps[entry["instance"]].append((at, f"replacement node {entry['node']} Ready"))
        elif event == "replace-ahead settled":
            self.steps[entry["instance"]].append((at, "terminated in its group, capacity -1"))
        elif event == "drain finished":
            self.steps[entry["instance"]].append((at, f"drain finished: {entry['outcome']}"))
        elif event == "lifecycle heartbeat sent":
            self.steps[entry["instance"]].append((at, "lifecycle heartbeat"))
        elif event == "lifecycle action completed":
            self.steps[entry["instance"]].append((at, f"hook completed ({entry['result']})"))

    def svg(self) -> str:
        """One lane per node, against its deadline (devstack/timeline_svg.py)."""
        lanes = [
            (
                f"{self.node.get(i, '?')} ({i}, {self.kind.get(i)})",
                self.event_time[i],
                self.deadline.get(i),
                steps,
            )
            for i, steps in self.steps.items()
            if i in self.event_time
        ]
        return timeline_svg.render(lanes)

    def print(self) -> None:
        for instance, steps in self.steps.items():
            if instance not in self.event_time:
                continue
            t0 = self.event_time[instance]
            say(f"\n{instance}  {self.node.get(instance, '?')}  [{self.kind.get(instance)}]")
            for at, what in sorted(steps):
                say(f"  +{(at - t0).total_seconds():6.2f}s  {what}")
            say(
                f"           {self.evicted[instance]} pods evicted, "
                f"{self.refused[instance]} refusals by a disruption budget (retried)"
            )


def export_job(instance: Instance) -> JsonDict:
    """A single-pod Job on the node that will be scaled in: its hook is held until it ends."""
    body = job("export", "batch", replace(WORKLOADS, job_parallelism=1, job_run_seconds=20))
    body["spec"]["template"]["spec"]["nodeSelector"] = {HOSTNAME: instance.private_dns_name}
    return body


async def watch_job_pods(api: client.ApiClient, told: list[JsonDict]) -> None:
    """What a job's downward-API volume would show: the first job pod annotated."""
    core: Any = client.CoreV1Api(api)
    while not told:
        reply = await core.list_namespaced_pod("batch", _preload_content=False)
        for pod in (await reply.json())["items"]:
            if DEADLINE in (pod["metadata"].get("annotations") or {}):
                told.append({"metadata": pod["metadata"], "node": pod["spec"].get("nodeName")})
                break
        await asyncio.sleep(0.2)


def target_groups(aws: AwsStack, instances: list[str]) -> list[str]:
    """Every node in two target groups (deregistration delay 3 s), as NodePort services are."""
    elbv2 = aws.boto3_client("elbv2")
    arns = []
    for service, port in NODE_PORTS.items():
        arn = aws.create_target_group(f"demo-{service}", port=port, deregistration_delay=3)
        elbv2.register_targets(
            TargetGroupArn=arn, Targets=[{"Id": i, "Port": port} for i in instances]
        )
        arns.append(arn)
    return arns


async def run_demo(aws: AwsStack, kube: KubeApiServerThread, workdir: Path) -> int:
    say(f"== building the stack: moto at {aws.endpoint_url}, Kubernetes emulator at {kube.url}")
    queue = aws.create_queue("lifecycled-demo", dlq=True)
    aws.route_events_to(queue)
    # Replace-ahead (opt-in per group, by tag): a Spot warning raises the group first.
    instances = aws.create_group(
        GROUP, size=NODES, heartbeat_timeout=30, tags={"lifecycled.io/replace-ahead": "true"}
    )
    machines = [Machine(i.id, i.private_dns_name, i.az) for i in instances]
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    scaled = instances[SPOT_BURST]
    async with client.ApiClient(configuration) as api:
        await seed(api, machines, WORKLOADS)
        batch: Any = client.BatchV1Api(api)  # the client's stubs want V1Job; a dict is sent as is
        await batch.create_namespaced_job("batch", export_job(scaled))
        want = expected_pods(machines, WORKLOADS) + 1
        ready = await wait_running(api, want)
        say(
            f"== cluster: {NODES} nodes, {ready} pods running "
            f"(web Deployment + PodDisruptionBudget, api Deployment, node-agent DaemonSet, "
            f"a 20-pod Job, and a Job on {scaled.id}'s node)"
        )

    groups = target_groups(aws, [i.id for i in instances])
    env = {
        **aws.env(),
        "KUBECONFIG": str(kubeconfig),
        "LIFECYCLED_QUEUE_URL": queue.url,
        "LIFECYCLED_LB_TARGET_GROUPS": ",".join(groups),
        "LIFECYCLED_LB_POLL_SECONDS": "0.5",
        "LIFECYCLED_SQS_WAIT_SECONDS": "2",
        "LIFECYCLED_EVICTION_RETRY_SECONDS": "1",
        "LIFECYCLED_REPLACE_AHEAD": "true",
        "LIFECYCLED_REPLACE_AHEAD_INTERVAL_SECONDS": "1",
    }
    timeline = Timeline()
    spot = instances[:SPOT_BURST]
    expected = SPOT_BURST + 1
    told: list[JsonDict] = []  # a job pod as it was told its deadline
    async with (
        client.ApiClient(configuration) as api,
        NodeJoiner(aws, api, GROUP, boot_seconds=2.0).adopting(machines) as joiner,
        service_process(env, timeline, workdir) as service,
    ):
        watching = asyncio.create_task(watch_job_pods(api, told))
        say(f"== lifecycled running (pid {service.proc.pid}), metrics at {service.url}/metrics")
        say(
            f"== sending {SPOT_BURST} Spot interruption warnings through EventBridge, "
            f"and scaling in {scaled.id} (terminate lifecycle hook)"
        )
        for instance in spot:
            aws.send_spot_interruption(instance.id)
        aws.scale_in(GROUP, scaled.id)

        def done(values: Values) -> bool:
            closed = total(values, "lifecycled_drain_duration_seconds_count")
            gone = all(aws.lifecycle_state(i.id) is None for i in [*spot, scaled])
            return closed >= expected and gone

        values = await service.wait_for(done, TIMEOUT)
        # The Events are written off the drains' path: give the last ones a moment.
        node = scaled.private_dns_name
        reasons = await node_reasons(configuration, node, until=STORY[-1], within=10.0)
        watching.cancel()
    code = service.code
    timeline.print()
    for pod in told[:1]:
        meta = pod["metadata"]
        say(
            f"\n== job pod batch/{meta['name']} on {pod['node']}, "
            "as its downward-API file shows it:"
        )
        say(f'  {DEADLINE}="{meta["annotations"][DEADLINE]}"')
        say(f'  {KIND}="{meta["annotations"][KIND]}"')
    desired = aws.boto3_client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[GROUP]
    )["AutoScalingGroups"][0]["DesiredCapacity"]
    say(f"\n== Kubernetes Events on {node}: {', '.join(reasons) or 'none'}")
    picture = workdir / "timeline.svg"
    picture.write_text(timeline.svg())
    say(f"\n== timeline picture: {picture}")
    drained = total(values, "lifecycled_drain_duration_seconds_count", outcome="drained")
    say("\n== summary")
    say(f"  notices:            {int(total(values, 'lifecycled_notices_total'))}")
    say(
        f"  drains drained:     {int(drained)} ({expected} notices, and the terminate hooks of "
        f"the {SPOT_BURST} instances replaced ahead: their nodes were already empty)"
    )
    evicted = total(values, "lifecycled_evictions_total", outcome="evicted")
    say(f"  pods evicted:       {int(evicted)}")
    say(
        f"  budget refusals:    "
        f"{int(total(values, 'lifecycled_evictions_total', outcome='blocked_by_budget'))}"
    )
    say(
        f"  hooks completed:    "
        f"{int(total(values, 'lifecycled_lifecycle_actions_total', result='CONTINUE'))}"
    )
    lb = int(total(values, "lifecycled_lb_deregistrations_total"))
    say(f"  LB deregistrations: {lb} (target groups left before the first eviction)")
    say(f"  jobs requeued:      {int(total(values, 'lifecycled_jobs_requeued_total'))}")
    say(f"  jobs waited for:    {int(total(values, 'lifecycled_jobs_waited_seconds_count'))}")
    say(f"  forced terminations: {int(total(values, 'lifecycled_forced_terminations_total'))}")
    say(f"  instance {scaled.id} in the group: {aws.lifecycle_state(scaled.id) or 'terminated'}")
    raised = int(total(values, "lifecycled_replacements_total", outcome="requested"))
    say(
        f"  replacements:       {raised} requested, {len(joiner.joined)} joined as nodes; the "
        f"group's desired capacity is {desired} ({NODES} - 1 scaled in)"
    )
    told_pods = int(total(values, "lifecycled_pod_notices_total", outcome="annotated"))
    say(f"  pods told deadline: {told_pods}")
    say(f"  service exit code:  {code}; full log: {service.log}")
    failures: list[str] = []
    if drained < expected:
        failures.append(f"only {int(drained)} of {expected} drains finished")
    if aws.lifecycle_state(scaled.id) is not None:
        failures.append("the lifecycle hook was not completed")
    if desired != NODES - 1:
        failures.append(f"the group ends at {desired}, not {NODES - 1}")
    if not told:
        failures.append("no job pod was seen with its deadline")
    if code != 0:
        failures.append(f"lifecycled exited with {code}")
    it = iter(reasons)
    if not all(r in it for r in STORY):
        failures.append(f"the Events on {node} do not tell {', '.join(STORY)} in order")
    return verdict(failures)


# The scaled-in node's story (docs/events.md); an EvictionBlockedByBudget may come between.
STORY = (
    "InterruptionNoticeReceived",
    "Cordoned",
    "LifecycleHookHeld",
    "DrainStarted",
    "LoadBalancersLeft",
    "Drained",
    "LifecycleHookCompleted",
)


async def node_reasons(
    configuration: client.Configuration, node: str, *, until: str, within: float
) -> list[str]:
    """The Node's Event reasons in the order written, once `until` is among them (or time is
    up)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    async with client.ApiClient(configuration) as api:
        while True:
            events = (await client.CoreV1Api(api).list_namespaced_event("default")).items
            reasons = [
                e.reason
                for e in sorted(events, key=lambda e: e.metadata.name)
                if e.involved_object.kind == "Node" and e.involved_object.name == node
            ]
            if until in reasons or loop.time() > end:
                return reasons
            await asyncio.sleep(0.2)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lifecycled-demo-"))
    aws = AwsStack()
    kube = KubeApiServerThread()
    aws.start()
    kube.start()
    try:
        return asyncio.run(run_demo(aws, kube, workdir))
    finally:
        kube.stop()
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
