"""Manifests for seeding the emulator (tests, demo). Plain dicts, as the API would take them."""

from __future__ import annotations

import hashlib
from typing import Any

from .errors import JSON
from .nodes import ANNOTATION_PREFIX


def scripted(
    *,
    start: float | None = None,
    exit: float | None = None,
    run: float | None = None,
    fail: float | None = None,
) -> dict[str, str]:
    """The `devstack.lifecycled.io/*-seconds` annotations that script a pod's life."""
    values = {
        "start-seconds": start,
        "exit-seconds": exit,
        "run-seconds": run,
        "fail-seconds": fail,
    }
    return {ANNOTATION_PREFIX + k: str(v) for k, v in values.items() if v is not None}


def instance_id_for(name: str) -> str:
    return "i-0" + hashlib.sha256(name.encode()).hexdigest()[:16]


def node(
    name: str,
    *,
    instance_id: str | None = None,
    zone: str = "us-east-1a",
    instance_type: str = "m5.large",
    labels: dict[str, str] | None = None,
    ready: bool = True,
    unschedulable: bool = False,
    taints: list[JSON] | None = None,
    provider_id: str | None = None,
) -> JSON:
    instance = instance_id or instance_id_for(name)
    spec: JSON = {"providerID": provider_id or f"aws:///{zone}/{instance}"}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    address = "10.0." + ".".join(str(b) for b in hashlib.sha256(name.encode()).digest()[:2])
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": zone[:-1],
                "node.kubernetes.io/instance-type": instance_type,
                **(labels or {}),
            },
        },
        "spec": spec,
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
        },
    }


def pod_spec(
    *,
    grace: int | None = None,
    node_name: str | None = None,
    restart_policy: str | None = None,
    **extra: Any,
) -> JSON:
    out: JSON = {"containers": [{"name": "main", "image": "registry.example/app:1.0"}]}
    if grace is not None:
        out["terminationGracePeriodSeconds"] = grace
    if node_name:
        out["nodeName"] = node_name
    if restart_policy:
        out["restartPolicy"] = restart_policy
    out.update(extra)
    return out


def _template(labels: dict[str, str], annotations: dict[str, str] | None, spec: JSON) -> JSON:
    metadata: JSON = {"labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"metadata": metadata, "spec": spec}


def pod(
    name: str,
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec_args: Any,
) -> JSON:
    metadata: JSON = {"name": name, "namespace": namespace, "labels": labels or {"app": name}}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec(**spec_args)}


def deployment(
    name: str,
    *,
    namespace: str = "default",
    replicas: int = 1,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec_args: Any,
) -> JSON:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": _template(labels, annotations, pod_spec(**spec_args)),
        },
    }


def statefulset(name: str, *, namespace: str = "default", replicas: int = 1) -> JSON:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": _template(labels, None, pod_spec()),
        },
    }


def daemonset(
    name: str,
    *,
    namespace: str = "kube-system",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec_args: Any,
) -> JSON:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": _template(labels, annotations, pod_spec(**spec_args)),
        },
    }


def job(
    name: str,
    *,
    namespace: str = "default",
    parallelism: int = 1,
    completions: int | None = 1,
    backoff_limit: int = 6,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    pod_failure_policy: JSON | None = None,
    suspend: bool = False,
    **spec_args: Any,
) -> JSON:
    spec_args.setdefault("restart_policy", "Never")
    spec: JSON = {
        "parallelism": parallelism,
        "backoffLimit": backoff_limit,
        "template": _template(labels or {"app": name}, annotations, pod_spec(**spec_args)),
    }
    if completions is not None:
        spec["completions"] = completions
    if pod_failure_policy is not None:
        spec["podFailurePolicy"] = pod_failure_policy
    if suspend:
        spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


IGNORE_DISRUPTIONS: JSON = {
    "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
}


def pdb(
    name: str,
    *,
    namespace: str = "default",
    match_labels: dict[str, str],
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    unhealthy_pod_eviction_policy: str | None = None,
) -> JSON:
    spec: JSON = {"selector": {"matchLabels": dict(match_labels)}}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    if unhealthy_pod_eviction_policy:
        spec["unhealthyPodEvictionPolicy"] = unhealthy_pod_eviction_policy
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def namespace(name: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
