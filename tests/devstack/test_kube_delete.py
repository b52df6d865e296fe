"""Deletion: graceful pods, finalizers, propagation policies and garbage collection."""

from __future__ import annotations

import time
from collections.abc import Awaitable

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from devstack.kube import builders

from .kube_fixtures import Kube, eventually, kube, kube_static, running_pod, status_body

__all__ = ["kube", "kube_static"]


async def gone(k: Kube, name: str, namespace: str = "default") -> None:
    await absent(k.core.read_namespaced_pod(name, namespace))


async def absent(request: Awaitable[object]) -> None:
    """Raise AssertionError (so `eventually` retries) unless the request is a 404."""
    try:
        await request
    except ApiException as exc:
        assert exc.status == 404
        return
    raise AssertionError("still there")


async def test_graceful_pod_delete_keeps_the_pod_until_it_exits(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.pod("p", node_name="n1", grace=20, annotations=builders.scripted(exit=0.4))
    )
    deleted = await kube.core.delete_namespaced_pod("p", "default")
    started = time.monotonic()
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 20
    listed = await kube.core.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["p"]
    await eventually(lambda: gone(kube, "p"))
    assert 0.3 < time.monotonic() - started < 2


async def test_grace_period_expiry_kills_a_slow_pod(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.pod("p", node_name="n1", grace=30, annotations=builders.scripted(exit=60))
    )
    started = time.monotonic()
    await kube.core.delete_namespaced_pod("p", "default", grace_period_seconds=1)
    await eventually(lambda: gone(kube, "p"), within=5)
    assert 0.9 < time.monotonic() - started < 3


async def test_grace_period_zero_deletes_at_once(kube_static: Kube) -> None:
    await running_pod(kube_static, "p")
    deleted = await kube_static.core.delete_namespaced_pod("p", "default", grace_period_seconds=0)
    assert deleted.metadata.name == "p"
    await gone(kube_static, "p")


async def test_unscheduled_pod_is_deleted_at_once(kube_static: Kube) -> None:
    await kube_static.server.add_object(builders.pod("p"))
    await kube_static.core.delete_namespaced_pod("p", "default")
    await gone(kube_static, "p")


async def test_graceful_delete_can_only_be_shortened(kube_static: Kube) -> None:
    await running_pod(kube_static, "p", grace=30)
    await kube_static.core.delete_namespaced_pod("p", "default", grace_period_seconds=10)
    again = await kube_static.core.delete_namespaced_pod("p", "default", grace_period_seconds=20)
    assert again.metadata.deletion_grace_period_seconds == 10
    again = await kube_static.core.delete_namespaced_pod("p", "default", grace_period_seconds=5)
    assert again.metadata.deletion_grace_period_seconds == 5


async def test_finalizers_hold_an_object(kube_static: Kube) -> None:
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm", finalizers=["x.io/hold"]))
    await kube_static.core.create_namespaced_config_map("default", cm)
    await kube_static.core.delete_namespaced_config_map("cm", "default")
    held = await kube_static.core.read_namespaced_config_map("cm", "default")
    assert held.metadata.deletion_timestamp is not None
    await kube_static.core.patch_namespaced_config_map(
        "cm",
        "default",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as err:
        await kube_static.core.read_namespaced_config_map("cm", "default")
    assert err.value.status == 404


async def test_delete_returns_status_for_non_pods(kube_static: Kube) -> None:
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"))
    made = await kube_static.core.create_namespaced_config_map("default", cm)
    result = await kube_static.core.delete_namespaced_config_map("cm", "default")
    assert result.status == "Success"
    assert (result.details.name, result.details.kind) == ("cm", "configmaps")
    assert result.details.uid == made.metadata.uid


async def test_uid_precondition(kube_static: Kube) -> None:
    await running_pod(kube_static, "p")
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="other"))
    with pytest.raises(ApiException) as err:
        await kube_static.core.delete_namespaced_pod("p", "default", body=options)
    assert err.value.status == 409
    assert "Precondition failed" in status_body(err.value)["message"]


async def job_pods(k: Kube, job: str) -> list[client.V1Pod]:
    pods = await k.core.list_namespaced_pod("default", label_selector=f"job-name={job}")
    return list(pods.items)


async def running_job(k: Kube, name: str) -> list[client.V1Pod]:
    await k.server.add_node("n1")
    await k.server.add_object(builders.job(name, annotations=builders.scripted(exit=0.05)))

    async def started() -> list[client.V1Pod]:
        pods = await job_pods(k, name)
        assert pods and pods[0].status.phase == "Running"
        return pods

    return await eventually(started)


async def test_job_delete_orphans_its_pods_by_default(kube: Kube) -> None:
    pods = await running_job(kube, "batch")
    await kube.batch.delete_namespaced_job("batch", "default")
    pod = await kube.core.read_namespaced_pod(pods[0].metadata.name, "default")
    assert not pod.metadata.owner_references
    assert pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"


async def test_job_delete_in_background_removes_its_pods(kube: Kube) -> None:
    pods = await running_job(kube, "batch")
    await kube.batch.delete_namespaced_job("batch", "default", propagation_policy="Background")
    await eventually(lambda: gone(kube, pods[0].metadata.name))


async def test_deployment_delete_cascades_by_default(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.deployment("web", replicas=2, annotations=builders.scripted(exit=0.05))
    )

    async def pods(count: int) -> None:
        listed = await kube.core.list_namespaced_pod("default", label_selector="app=web")
        assert len(listed.items) == count

    await eventually(lambda: pods(2))
    await kube.apps.delete_namespaced_deployment("web", "default")
    await eventually(lambda: pods(0))
    sets = await kube.apps.list_namespaced_replica_set("default")
    assert sets.items == []


async def test_foreground_delete_waits_for_dependents(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.deployment("web", replicas=1, annotations=builders.scripted(exit=0.3))
    )

    async def one_ready() -> None:
        d = await kube.apps.read_namespaced_deployment("web", "default")
        assert d.status.ready_replicas == 1

    await eventually(one_ready)
    await kube.apps.delete_namespaced_deployment("web", "default", propagation_policy="Foreground")
    held = await kube.apps.read_namespaced_deployment("web", "default")
    assert held.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in held.metadata.finalizers

    await eventually(lambda: absent(kube.apps.read_namespaced_deployment("web", "default")))
    pods = await kube.core.list_namespaced_pod("default")
    assert pods.items == []


async def test_namespace_deletion_empties_and_removes_it(kube: Kube) -> None:
    await kube.server.add_namespace("team")
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"))
    await kube.core.create_namespaced_config_map("team", cm)
    await kube.core.delete_namespace("team")

    await eventually(lambda: absent(kube.core.read_namespace("team")))


async def test_delete_collection_with_a_selector(kube_static: Kube) -> None:
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"team": team}))
        await kube_static.core.create_namespaced_config_map("default", cm)
    await kube_static.core.delete_collection_namespaced_config_map(
        "default", label_selector="team=x"
    )
    left = await kube_static.core.list_namespaced_config_map("default")
    assert [c.metadata.name for c in left.items] == ["b"]
    assert kube_static.server.requests[-2].verb == "deletecollection"
