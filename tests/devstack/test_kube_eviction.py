"""The eviction subresource and PodDisruptionBudgets, pinned to eviction.go's behaviour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from devstack.kube import builders

from .kube_fixtures import Kube, eventually, kube, kube_static, running_pod, status_body

__all__ = ["kube", "kube_static"]
WEB = {"app": "web"}


def eviction(name: str, grace: int | None = None) -> client.V1Eviction:
    options = client.V1DeleteOptions(grace_period_seconds=grace) if grace is not None else None
    return client.V1Eviction(metadata=client.V1ObjectMeta(name=name), delete_options=options)


async def evict(k: Kube, name: str, grace: int | None = None) -> Any:
    return await k.core.create_namespaced_pod_eviction(name, "default", eviction(name, grace))


async def evict_status(k: Kube, name: str) -> int:
    try:
        _, code, _ = await k.core.create_namespaced_pod_eviction_with_http_info(
            name, "default", eviction(name)
        )
    except ApiException as exc:
        return int(exc.status)
    return int(code)


async def web_pods(k: Kube, count: int, **kwargs: Any) -> None:
    for i in range(count):
        await running_pod(k, f"web-{i}", labels=WEB, **kwargs)


async def test_allowed_eviction_is_201_and_pod_terminates_gracefully(kube_static: Kube) -> None:
    await running_pod(kube_static, "p", grace=45)
    assert await evict_status(kube_static, "p") == 201
    record = kube_static.server.requests[-1]
    assert (record.verb, record.path) == ("evict", "/api/v1/namespaces/default/pods/p/eviction")
    pod = await kube_static.core.read_namespaced_pod("p", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 45
    target = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason) == ("True", "EvictionByEvictionAPI")


async def test_eviction_delete_options_set_the_grace_period(kube_static: Kube) -> None:
    await running_pod(kube_static, "p", grace=45)
    await evict(kube_static, "p", grace=3)
    pod = await kube_static.core.read_namespaced_pod("p", "default")
    assert pod.metadata.deletion_grace_period_seconds == 3


async def test_eviction_of_missing_pod_is_404(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await evict(kube_static, "ghost")
    assert err.value.status == 404
    assert status_body(err.value)["message"] == 'pods "ghost" not found'


async def test_budget_violation_is_429_with_upstream_body(kube_static: Kube) -> None:
    await web_pods(kube_static, 3)
    await kube_static.server.add_object(builders.pdb("web-pdb", match_labels=WEB, min_available=3))
    with pytest.raises(ApiException) as err:
        await evict(kube_static, "web-0")
    body = status_body(err.value)
    assert err.value.status == 429
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web-pdb needs 3 healthy pods and has 3 currently",
        }
    ]
    pod = await kube_static.core.read_namespaced_pod("web-0", "default")
    assert pod.metadata.deletion_timestamp is None


async def test_min_available_allows_down_to_the_minimum(kube_static: Kube) -> None:
    await web_pods(kube_static, 3)
    await kube_static.server.add_object(builders.pdb("web-pdb", match_labels=WEB, min_available=2))
    assert await evict_status(kube_static, "web-0") == 201
    assert await evict_status(kube_static, "web-1") == 429
    assert await evict_status(kube_static, "web-0") == 201  # already terminating: no check


async def test_parallel_evictions_never_break_the_budget(kube_static: Kube) -> None:
    await web_pods(kube_static, 10)
    await kube_static.server.add_object(builders.pdb("web-pdb", match_labels=WEB, min_available=7))
    codes = await asyncio.gather(*(evict_status(kube_static, f"web-{i}") for i in range(10)))
    assert sorted(codes) == [201] * 3 + [429] * 7
    pods = await kube_static.core.list_namespaced_pod("default")
    assert sum(1 for p in pods.items if p.metadata.deletion_timestamp is None) == 7


async def test_pending_and_finished_pods_skip_the_budget(kube_static: Kube) -> None:
    await web_pods(kube_static, 2)
    await running_pod(kube_static, "pending", labels=WEB, phase="Pending", ready=False)
    await running_pod(kube_static, "done", labels=WEB, phase="Succeeded", ready=False)
    await kube_static.server.add_object(builders.pdb("web-pdb", match_labels=WEB, min_available=5))
    assert await evict_status(kube_static, "pending") == 201
    assert await evict_status(kube_static, "done") == 201
    with pytest.raises(ApiException):  # a finished pod is deleted at once
        await kube_static.core.read_namespaced_pod("done", "default")


async def test_more_than_one_budget_is_500(kube_static: Kube) -> None:
    await web_pods(kube_static, 2)
    await kube_static.server.add_object(builders.pdb("a", match_labels=WEB, min_available=0))
    await kube_static.server.add_object(builders.pdb("b", match_labels=WEB, min_available=0))
    with pytest.raises(ApiException) as err:
        await evict(kube_static, "web-0")
    assert err.value.status == 500
    assert "more than one PodDisruptionBudget" in status_body(err.value)["message"]


async def test_unhealthy_pod_policy(kube_static: Kube) -> None:
    await web_pods(kube_static, 2)
    await running_pod(kube_static, "sick", labels=WEB, ready=False)
    pdb = builders.pdb("web-pdb", match_labels=WEB, min_available=2)
    await kube_static.server.add_object(pdb)
    # IfHealthyBudget: 2 healthy >= 2 desired, so the unready pod may go without using budget.
    assert await evict_status(kube_static, "sick") == 201
    await running_pod(kube_static, "sick2", labels=WEB, ready=False)
    await kube_static.server.patch_object(
        "pods",
        "web-1",
        {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        "default",
        subresource="status",
    )
    assert await evict_status(kube_static, "sick2") == 429  # 1 healthy < 2 desired
    await kube_static.policy.patch_namespaced_pod_disruption_budget(
        "web-pdb", "default", {"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}}
    )
    assert await evict_status(kube_static, "sick2") == 201


async def test_max_unavailable_counts_from_the_controller_scale(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(builders.deployment("web", replicas=3, labels=WEB))
    await eventually(lambda: ready_pods(kube, 3))
    # Cordoned and alone: replacements stay Pending, so they are not healthy.
    await kube.core.patch_node("n1", {"spec": {"unschedulable": True}})
    await kube.server.add_object(builders.pdb("web-pdb", match_labels=WEB, max_unavailable=1))
    names = await ready_pods(kube, 3)
    assert await evict_status(kube, names[0]) == 201
    assert await evict_status(kube, names[1]) == 429


async def test_percentage_min_available(kube_static: Kube) -> None:
    await web_pods(kube_static, 4)
    pdb = builders.pdb("web-pdb", match_labels=WEB, min_available="50%")
    await kube_static.server.add_object(pdb)
    codes = [await evict_status(kube_static, f"web-{i}") for i in range(4)]
    assert codes == [201, 201, 429, 429]


async def test_pdb_status_is_kept_up_to_date(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(builders.deployment("web", replicas=3, labels=WEB))
    await kube.server.add_object(builders.pdb("web-pdb", match_labels=WEB, min_available=2))

    async def settled() -> Any:
        pdb = await kube.policy.read_namespaced_pod_disruption_budget("web-pdb", "default")
        s = pdb.status
        assert (s.current_healthy, s.desired_healthy, s.disruptions_allowed, s.expected_pods) == (
            3,
            2,
            1,
            3,
        )
        assert any(c.type == "DisruptionAllowed" and c.status == "True" for c in s.conditions)
        return pdb

    await eventually(settled)
    names = await ready_pods(kube, 3)
    await evict(kube, names[0])
    pdb = await kube.policy.read_namespaced_pod_disruption_budget("web-pdb", "default")
    assert pdb.status.disruptions_allowed == 0


async def test_v1beta1_eviction_body_is_accepted(kube_static: Kube) -> None:
    await running_pod(kube_static, "p")
    body = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p"}}
    await kube_static.core.create_namespaced_pod_eviction("p", "default", body)
    assert kube_static.server.requests[-1].status == 201


async def test_name_mismatch_is_400(kube_static: Kube) -> None:
    await running_pod(kube_static, "p")
    with pytest.raises(ApiException) as err:
        await kube_static.core.create_namespaced_pod_eviction("p", "default", eviction("q"))
    assert err.value.status == 400


async def test_mirror_pod_is_evicted_and_recreated_by_the_kubelet(kube: Kube) -> None:
    await kube.server.add_node("n1")
    mirror = builders.pod(
        "etcd-n1",
        namespace="kube-system",
        node_name="n1",
        annotations={"kubernetes.io/config.mirror": "abc", **builders.scripted(exit=0.05)},
    )
    made = await kube.server.add_object(mirror)
    await kube.core.create_namespaced_pod_eviction(
        "etcd-n1", "kube-system", {"metadata": {"name": "etcd-n1"}}
    )

    async def recreated() -> None:
        pod = await kube.core.read_namespaced_pod("etcd-n1", "kube-system")
        assert pod.metadata.uid != made["metadata"]["uid"]

    await eventually(recreated)


async def ready_pods(k: Kube, count: int) -> list[str]:
    pods = await k.core.list_namespaced_pod("default", label_selector="app=web")
    ready = [
        p.metadata.name
        for p in pods.items
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    assert len(ready) >= count
    return ready
