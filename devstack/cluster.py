"""Seed a small, realistic cluster through the Kubernetes API (the real client, over HTTP).

Nodes mirror EC2 instances (providerID, private DNS name); workloads are a web Deployment
guarded by a PodDisruptionBudget, an API Deployment, a node-agent DaemonSet and a batch Job.
Pod behaviour (start, exit, run time) is scripted by devstack annotations the emulator reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio import client

if TYPE_CHECKING:  # only NodeJoiner needs it: seeding a cluster does not load moto
    from devstack.aws import AwsStack

DEVSTACK = "devstack.lifecycled.io/"
JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Machine:
    instance_id: str
    private_dns_name: str
    az: str


@dataclass(frozen=True, slots=True)
class Workloads:
    web_replicas: int = 30
    web_max_unavailable: int = 2
    api_replicas: int = 120
    job_parallelism: int = 20
    job_run_seconds: float | None = None  # None: the job runs until it is stopped
    exit_seconds: float = 1.0
    grace_seconds: int = 30


def node_body(machine: Machine) -> JsonDict:
    name = machine.private_dns_name
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": machine.az,
                "node.kubernetes.io/instance-type": "m5.large",
            },
        },
        "spec": {"providerID": f"aws:///{machine.az}/{machine.instance_id}"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "Hostname", "address": name}],
        },
    }


def pod_template(app: str, *, annotations: dict[str, str], grace: int, **spec: Any) -> JsonDict:
    return {
        "metadata": {"labels": {"app": app}, "annotations": annotations},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": app, "image": f"example.com/{app}:1"}],
            **spec,
        },
    }


def _behaviour(w: Workloads, run_seconds: float | None = None) -> dict[str, str]:
    scripted = {DEVSTACK + "exit-seconds": str(w.exit_seconds)}
    if run_seconds is not None:
        scripted[DEVSTACK + "run-seconds"] = str(run_seconds)
    return scripted


def deployment(name: str, namespace: str, replicas: int, w: Workloads) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, annotations=_behaviour(w), grace=w.grace_seconds),
        },
    }


def budget(name: str, namespace: str, app: str, max_unavailable: int) -> JsonDict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": {"app": app}}},
    }


def daemonset(name: str, namespace: str, w: Workloads) -> JsonDict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, annotations=_behaviour(w), grace=w.grace_seconds),
        },
    }


def job(name: str, namespace: str, w: Workloads) -> JsonDict:
    template = pod_template(
        name,
        annotations=_behaviour(w, w.job_run_seconds),
        grace=w.grace_seconds,
        restartPolicy="Never",
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parallelism": w.job_parallelism,
            "completions": w.job_parallelism,
            "backoffLimit": 100,
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "template": template,
        },
    }


async def seed(api: client.ApiClient, machines: Sequence[Machine], w: Workloads) -> None:
    # Plain manifests (dicts) are what the API takes; the client's stubs only know its models.
    core: Any = client.CoreV1Api(api)
    apps: Any = client.AppsV1Api(api)
    batch: Any = client.BatchV1Api(api)
    policy: Any = client.PolicyV1Api(api)
    for namespace in ("shop", "batch", "monitoring"):
        await core.create_namespace({"metadata": {"name": namespace}})
    for machine in machines:
        await core.create_node(node_body(machine))
    await policy.create_namespaced_pod_disruption_budget(
        "shop", budget("web", "shop", "web", w.web_max_unavailable)
    )
    await apps.create_namespaced_daemon_set("monitoring", daemonset("node-agent", "monitoring", w))
    await apps.create_namespaced_deployment("shop", deployment("web", "shop", w.web_replicas, w))
    await apps.create_namespaced_deployment("shop", deployment("api", "shop", w.api_replicas, w))
    if w.job_parallelism:
        await batch.create_namespaced_job("batch", job("report", "batch", w))


def is_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    return (
        pod.status is not None
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in conditions)
    )


async def wait_running(api: client.ApiClient, expected: int, within: float = 60.0) -> int:
    """Wait until at least `expected` pods are Running and Ready; returns how many are."""
    core = client.CoreV1Api(api)
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        pods = (await core.list_pod_for_all_namespaces()).items
        ready = sum(1 for pod in pods if is_ready(pod))
        if ready >= expected or loop.time() > end:
            return ready
        await asyncio.sleep(0.2)


def expected_pods(machines: Iterable[Machine], w: Workloads) -> int:
    return len(list(machines)) + w.web_replicas + w.api_replicas + w.job_parallelism


class NodeJoiner:
    """The nodes of an Auto Scaling group follow its instances, as kubelets do: an instance
    in service gets its node (Ready) `boot_seconds` after it is first seen; the node of an
    instance that left the group is deleted (the machine is gone). Run it beside a group
    whose capacity changes (replace-ahead)."""

    def __init__(
        self,
        aws: AwsStack,
        api: client.ApiClient,
        group: str,
        *,
        boot_seconds: float = 1.0,
        poll_seconds: float = 0.25,
    ) -> None:
        self._aws = aws
        self._core: Any = client.CoreV1Api(api)
        self._group = group
        self._boot = boot_seconds
        self._poll = poll_seconds
        self.nodes: dict[str, str] = {}  # instance id -> node name, joined or seeded
        self.joined: dict[str, float] = {}  # node name -> time.monotonic() it joined Ready
        self._seen: dict[str, float] = {}  # instance id -> loop time first seen in service

    def adopt(self, machines: Iterable[Machine]) -> None:
        """Nodes that exist already (seeded)."""
        self.nodes.update({m.instance_id: m.private_dns_name for m in machines})

    @contextlib.asynccontextmanager
    async def adopting(self, machines: Iterable[Machine]) -> AsyncIterator[NodeJoiner]:
        """`adopt(machines)`, then `running()`."""
        self.adopt(machines)
        async with self.running() as joiner:
            yield joiner

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[NodeJoiner]:
        task = asyncio.create_task(self._run(), name=f"joiner-{self._group}")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            members = await asyncio.to_thread(self._members)
            now = loop.time()
            for instance_id, state in members.items():
                if instance_id in self.nodes or state != "InService":
                    continue
                first = self._seen.setdefault(instance_id, now)
                if now - first >= self._boot:
                    await self._join(instance_id)
            for instance_id in [i for i in self.nodes if i not in members]:
                name = self.nodes.pop(instance_id)
                with contextlib.suppress(client.ApiException):
                    await self._core.delete_node(name)
            await asyncio.sleep(self._poll)

    def _members(self) -> dict[str, str]:
        described = self._aws.boto3_client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self._group]
        )
        return {
            str(i["InstanceId"]): str(i["LifecycleState"])
            for g in described["AutoScalingGroups"]
            for i in g["Instances"]
        }

    async def _join(self, instance_id: str) -> None:
        (instance,) = await asyncio.to_thread(self._aws.instances, [instance_id])
        machine = Machine(instance.id, instance.private_dns_name, instance.az)
        await self._core.create_node(node_body(machine))
        self.nodes[instance_id] = machine.private_dns_name
        self.joined[machine.private_dns_name] = time.monotonic()
