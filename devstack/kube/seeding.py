"""Storm-sized clusters as manifests: nodes, Deployments under PodDisruptionBudgets, a
DaemonSet and some Job pods, adding up to exactly `nodes * pods_per_node` pods.

    python -m devstack.kube --seed-nodes 1000          # 20,000 pods, then serve
    handle.seed(Shape(nodes=1000))                    # the same through the admin API

Nodes can mirror real (moto) instances: pass `machines` (name, instance id, zone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from . import builders
from .errors import JSON

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
DAEMON_NAMESPACE = "kube-system"
JOB_NAMESPACE = "batch"


@dataclass(frozen=True)
class Machine:
    name: str
    instance_id: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Shape:
    nodes: int = 1000
    pods_per_node: int = 20  # including the DaemonSet's pod
    deployment_replicas: int = 50  # every Deployment but the last (which takes the rest)
    namespaces: int = 10  # Deployments are spread over team-00, team-01, ...
    max_unavailable: int | str = "10%"  # each Deployment's PodDisruptionBudget
    job_pods_per_node: float = 0.1  # Job pods (running until stopped), 10 per Job
    job_parallelism: int = 10
    start_seconds: float = 0.05
    exit_seconds: float = 1.0
    grace_seconds: int = 30

    @classmethod
    def from_json(cls, raw: JSON) -> Shape:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown shape fields: {sorted(unknown)}")
        return cls(**raw)

    def to_json(self) -> JSON:
        return asdict(self)

    @property
    def total_pods(self) -> int:
        return self.nodes * self.pods_per_node

    @property
    def job_pods(self) -> int:
        return min(int(self.nodes * self.job_pods_per_node), self.total_pods - self.nodes)

    @property
    def deployment_pods(self) -> int:
        return self.total_pods - self.nodes - self.job_pods


def node_name(i: int) -> str:
    return f"ip-10-{i // 65536}-{(i // 256) % 256}-{i % 256}.ec2.internal"


def deployment_sizes(shape: Shape) -> list[int]:
    left, sizes = shape.deployment_pods, []
    while left > 0:
        size = min(shape.deployment_replicas, left)
        sizes.append(size)
        left -= size
    return sizes


def manifests(shape: Shape, machines: list[Machine] | None = None) -> list[JSON]:
    """Everything to create, in order: namespaces, nodes, the DaemonSet, budgets,
    Deployments, Jobs. The controllers make the pods."""
    if machines is not None and len(machines) != shape.nodes:
        raise ValueError(f"{len(machines)} machines for {shape.nodes} nodes")
    script = builders.scripted(start=shape.start_seconds, exit=shape.exit_seconds)
    teams = [f"team-{i:02d}" for i in range(max(1, shape.namespaces))]
    out: list[JSON] = [builders.namespace(ns) for ns in [*teams, JOB_NAMESPACE]]
    for i in range(shape.nodes):
        m = machines[i] if machines is not None else Machine(node_name(i))
        out.append(
            builders.node(m.name, instance_id=m.instance_id, zone=m.zone or ZONES[i % len(ZONES)])
        )
    out.append(
        builders.daemonset(
            "node-agent",
            namespace=DAEMON_NAMESPACE,
            annotations=script,
            grace=shape.grace_seconds,
        )
    )
    for i, size in enumerate(deployment_sizes(shape)):
        name, ns = f"app-{i:04d}", teams[i % len(teams)]
        labels = {"app": name}
        out.append(
            builders.pdb(name, namespace=ns, match_labels=labels, max_unavailable=_budget(shape))
        )
        out.append(
            builders.deployment(
                name,
                namespace=ns,
                replicas=size,
                labels=labels,
                annotations=script,
                grace=shape.grace_seconds,
            )
        )
    left, j = shape.job_pods, 0
    while left > 0:
        size = min(shape.job_parallelism, left)
        out.append(
            builders.job(
                f"batch-{j:04d}",
                namespace=JOB_NAMESPACE,
                parallelism=size,
                completions=size,
                backoff_limit=1000,
                annotations=script,
                pod_failure_policy=builders.IGNORE_DISRUPTIONS,
                grace=shape.grace_seconds,
            )
        )
        left -= size
        j += 1
    return out


def _budget(shape: Shape) -> Any:
    value = shape.max_unavailable
    return int(value) if isinstance(value, int) or str(value).isdigit() else str(value)
