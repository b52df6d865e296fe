"""The controller-manager lite: scheduler, kubelet, Deployment, DaemonSet, Job, GC."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from devstack.kube import builders

from .kube_fixtures import Kube, eventually, kube, kube_static, status_body

__all__ = ["kube", "kube_static"]
FAST = builders.scripted(start=0.05, exit=0.05)


async def pods_of(k: Kube, selector: str, namespace: str = "default") -> list[client.V1Pod]:
    listed = await k.core.list_namespaced_pod(namespace, label_selector=selector)
    return list(listed.items)


def live(pods: list[client.V1Pod]) -> list[client.V1Pod]:
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


async def placed(k: Kube, name: str) -> str:
    pod = await k.core.read_namespaced_pod(name, "default")
    assert pod.spec.node_name
    return str(pod.spec.node_name)


async def test_pod_is_scheduled_and_started(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(builders.pod("p", annotations=builders.scripted(start=0.1)))

    async def running() -> client.V1Pod:
        pod = await kube.core.read_namespaced_pod("p", "default")
        assert pod.status.phase == "Running" and ready(pod)
        return pod

    pod = await eventually(running)
    assert pod.spec.node_name == "n1" and pod.status.pod_ip and pod.status.host_ip


async def test_scheduler_respects_cordon_taints_selectors_and_affinity(kube: Kube) -> None:
    await kube.server.add_node("cordoned", unschedulable=True)
    await kube.server.add_node("tainted", taints=[{"key": "gpu", "effect": "NoSchedule"}])
    await kube.server.add_node("plain", labels={"pool": "general"})
    await kube.server.add_object(builders.pod("any"))
    await kube.server.add_object(
        builders.pod(
            "tolerant",
            tolerations=[{"key": "gpu", "operator": "Exists"}],
            node_selector={"kubernetes.io/hostname": "tainted"},
        )
    )
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "pool", "operator": "NotIn", "values": ["general"]}
                        ]
                    }
                ]
            }
        }
    }
    await kube.server.add_object(builders.pod("picky", affinity=affinity))
    assert await eventually(lambda: placed(kube, "any")) == "plain"
    assert await eventually(lambda: placed(kube, "tolerant")) == "tainted"

    async def unschedulable() -> None:
        pod = await kube.core.read_namespaced_pod("picky", "default")
        cond = next(c for c in pod.status.conditions or [] if c.type == "PodScheduled")
        assert (cond.status, cond.reason) == ("False", "Unschedulable")
        assert pod.status.phase == "Pending" and not pod.spec.node_name

    await eventually(unschedulable)


async def test_scheduler_match_fields_and_least_loaded(kube: Kube) -> None:
    await kube.server.add_node("a")
    await kube.server.add_node("b")
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}
                ]
            }
        }
    }
    await kube.server.add_object(builders.pod("pinned", affinity=affinity))
    assert await eventually(lambda: placed(kube, "pinned")) == "b"
    for i in range(4):
        await kube.server.add_object(builders.pod(f"p{i}"))
    nodes = [await eventually(lambda i=i: placed(kube, f"p{i}")) for i in range(4)]
    assert sorted(nodes) == ["a", "a", "a", "b"]


async def test_cordon_adds_the_unschedulable_taint(kube: Kube) -> None:
    await kube.server.add_node("n1", taints=[{"key": "mine", "effect": "NoSchedule"}])
    await kube.core.patch_node("n1", {"spec": {"unschedulable": True}})

    async def tainted(expected: list[str]) -> None:
        node = await kube.core.read_node("n1")
        assert [t.key for t in node.spec.taints or []] == expected

    await eventually(lambda: tainted(["mine", "node.kubernetes.io/unschedulable"]))
    await kube.core.patch_node("n1", {"spec": {"unschedulable": False}})
    await eventually(lambda: tainted(["mine"]))


async def test_evicted_deployment_pod_is_replaced_elsewhere(kube: Kube) -> None:
    await kube.server.add_node("n1")
    slow_exit = builders.scripted(start=0.05, exit=1.0)
    await kube.server.add_object(builders.deployment("web", replicas=2, annotations=slow_exit))

    async def two_ready() -> list[client.V1Pod]:
        pods = live(await pods_of(kube, "app=web"))
        assert len(pods) == 2 and all(ready(p) for p in pods)
        deploy = await kube.apps.read_namespaced_deployment("web", "default")
        assert deploy.status.ready_replicas == 2 and deploy.status.available_replicas == 2
        return pods

    first = await eventually(two_ready)
    assert first[0].metadata.owner_references[0].kind == "ReplicaSet"
    await kube.server.add_node("n2")
    await kube.core.patch_node("n1", {"spec": {"unschedulable": True}})
    victim = first[0].metadata.name
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=victim))
    await kube.core.create_namespaced_pod_eviction(victim, "default", body)

    async def replaced_while_victim_terminates() -> None:
        pods = await pods_of(kube, "app=web")
        assert len(live(pods)) == 2 and victim not in {p.metadata.name for p in live(pods)}
        assert victim in {p.metadata.name for p in pods}

    await eventually(replaced_while_victim_terminates, within=0.5)

    async def moved() -> None:
        pods = await eventually(two_ready)
        assert sorted(p.spec.node_name for p in pods) == ["n1", "n2"]

    await eventually(moved)


async def test_daemonset_runs_one_pod_per_node_even_when_cordoned(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_node("n2", unschedulable=True)
    await kube.server.add_object(builders.daemonset("agent", annotations=FAST))

    async def on_nodes(expected: list[str]) -> None:
        pods = live(await pods_of(kube, "app=agent", "kube-system"))
        assert sorted(p.spec.node_name for p in pods) == expected
        assert all(p.metadata.owner_references[0].kind == "DaemonSet" for p in pods)

    await eventually(lambda: on_nodes(["n1", "n2"]))
    await kube.server.add_node("n3")
    await eventually(lambda: on_nodes(["n1", "n2", "n3"]))
    await kube.server.delete_node("n2")
    await eventually(lambda: on_nodes(["n1", "n3"]))

    async def status_counts() -> None:
        ds = await kube.apps.read_namespaced_daemon_set("agent", "kube-system")
        assert (ds.status.desired_number_scheduled, ds.status.number_ready) == (2, 2)

    await eventually(status_counts)


async def test_deleted_node_loses_its_pods(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(builders.pod("p", node_name="n1"))
    await kube.server.delete_node("n1")
    pods = await kube.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert pods.items == []


async def test_no_execute_taint_evicts_intolerant_pods(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(builders.pod("p", node_name="n1", annotations=FAST))
    await kube.server.add_object(
        builders.pod("q", node_name="n1", tolerations=[{"key": "drain", "operator": "Exists"}])
    )
    await kube.core.patch_node(
        "n1", {"spec": {"taints": [{"key": "drain", "effect": "NoExecute"}]}}
    )

    async def p_deleted() -> None:
        pod = await kube.core.read_namespaced_pod("p", "default")
        assert pod.metadata.deletion_timestamp is not None
        reasons = {c.reason for c in pod.status.conditions if c.type == "DisruptionTarget"}
        assert reasons == {"DeletionByTaintManager"}

    await eventually(p_deleted)
    q = await kube.core.read_namespaced_pod("q", "default")
    assert q.metadata.deletion_timestamp is None


async def job_status(k: Kube, name: str) -> Any:
    return (await k.batch.read_namespaced_job(name, "default")).status


def has(status: Any, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in status.conditions or [])


async def test_job_runs_to_completion(kube: Kube) -> None:
    await kube.server.add_node("n1")
    job = builders.job("work", completions=2, annotations={**FAST, **builders.scripted(run=0.1)})
    made = await kube.batch.create_namespaced_job("default", job)
    uid = made.metadata.uid
    assert made.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    labels = made.spec.template.metadata.labels
    assert labels["controller-uid"] == uid and labels["job-name"] == "work"
    assert labels["batch.kubernetes.io/job-name"] == "work"

    async def complete() -> Any:
        status = await job_status(kube, "work")
        assert has(status, "Complete") and status.succeeded == 2
        assert status.completion_time is not None and not status.failed
        return status

    await eventually(complete)
    pods = await pods_of(kube, "job-name=work")
    assert len(pods) == 2 and all(p.status.phase == "Succeeded" for p in pods)
    ref = pods[0].metadata.owner_references[0]
    assert (ref.kind, ref.controller, ref.uid) == ("Job", True, uid)
    assert pods[0].metadata.name.startswith("work-") and len(pods[0].metadata.name) == 10
    assert not pods[0].metadata.finalizers  # tracking finalizer released once counted


async def evict_job_pod(k: Kube, job: str) -> str:
    async def running() -> str:
        pods = live(await pods_of(k, f"job-name={job}"))
        assert len(pods) == 1 and pods[0].status.phase == "Running"
        return str(pods[0].metadata.name)

    name = await eventually(running)
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name))
    await k.core.create_namespaced_pod_eviction(name, "default", body)
    return name


async def test_evicted_job_pod_is_replaced_and_counted_as_failed(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(builders.job("work", annotations=FAST))
    first = await evict_job_pod(kube, "work")

    async def replaced() -> None:
        pods = live(await pods_of(kube, "job-name=work"))
        assert len(pods) == 1 and pods[0].metadata.name != first
        assert (await job_status(kube, "work")).failed == 1

    await eventually(replaced)


async def test_pod_failure_policy_ignores_disruptions(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.job("work", annotations=FAST, pod_failure_policy=builders.IGNORE_DISRUPTIONS)
    )
    first = await evict_job_pod(kube, "work")

    async def replaced() -> None:
        pods = live(await pods_of(kube, "job-name=work"))
        assert len(pods) == 1 and pods[0].metadata.name != first
        with pytest.raises(ApiException):  # the evicted pod has finished and gone
            await kube.core.read_namespaced_pod(first, "default")

    await eventually(replaced)
    assert not (await job_status(kube, "work")).failed


async def test_backoff_limit_fails_the_job(kube: Kube) -> None:
    await kube.server.add_node("n1")
    failing = {**FAST, **builders.scripted(fail=0.05)}
    await kube.server.add_object(builders.job("bad", backoff_limit=1, annotations=failing))

    async def failed() -> None:
        status = await job_status(kube, "bad")
        assert has(status, "Failed") and status.failed == 2
        reason = next(c.reason for c in status.conditions if c.type == "Failed")
        assert reason == "BackoffLimitExceeded"

    await eventually(failed)


async def test_suspend_terminates_active_pods_and_resume_restarts(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.job("work", parallelism=2, completions=4, annotations=FAST)
    )

    async def active(count: int) -> None:
        pods = live(await pods_of(kube, "job-name=work"))
        assert len(pods) == count

    await eventually(lambda: active(2))
    await kube.batch.patch_namespaced_job("work", "default", {"spec": {"suspend": True}})

    async def suspended() -> None:
        assert await pods_of(kube, "job-name=work") == []
        status = await job_status(kube, "work")
        assert has(status, "Suspended") and not status.active and not status.failed

    await eventually(suspended)
    await kube.batch.patch_namespaced_job("work", "default", {"spec": {"suspend": False}})
    await eventually(lambda: active(2))


async def test_naive_job_copy_is_rejected(kube_static: Kube) -> None:
    original = await kube_static.batch.create_namespaced_job("default", builders.job("work"))
    copy = kube_static.api.sanitize_for_serialization(original)
    copy["metadata"] = {"name": "work-retry", "namespace": "default"}
    copy.pop("status", None)
    with pytest.raises(ApiException) as err:
        await kube_static.batch.create_namespaced_job("default", copy)
    body = status_body(err.value)
    assert (err.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["kind"] == "Job" and body["details"]["group"] == "batch"
    fields = {c["field"] for c in body["details"]["causes"]}
    assert "spec.selector" in fields
    assert "spec.template.metadata.labels[controller-uid]" in fields
    # Dropping the generated selector and labels makes it acceptable.
    copy["spec"].pop("selector")
    for key in (
        "controller-uid",
        "job-name",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
    ):
        copy["spec"]["template"]["metadata"]["labels"].pop(key)
    made = await kube_static.batch.create_namespaced_job("default", copy)
    assert (
        made.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == made.metadata.uid
    )


async def test_job_selector_needs_manual_selector(kube_static: Kube) -> None:
    job = builders.job("work")
    job["spec"]["selector"] = {"matchLabels": {"app": "work"}}
    with pytest.raises(ApiException) as err:
        await kube_static.batch.create_namespaced_job("default", job)
    assert err.value.status == 422
    job["spec"]["manualSelector"] = True
    made = await kube_static.batch.create_namespaced_job("default", job)
    assert made.spec.selector.match_labels == {"app": "work"}


async def test_job_needs_never_or_on_failure(kube_static: Kube) -> None:
    job = builders.job("work")
    del job["spec"]["template"]["spec"]["restartPolicy"]
    with pytest.raises(ApiException) as err:
        await kube_static.batch.create_namespaced_job("default", job)
    assert err.value.status == 422
    assert "restartPolicy" in status_body(err.value)["message"]
