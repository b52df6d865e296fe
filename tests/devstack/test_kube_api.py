"""Discovery, object metadata, create/get/replace and the Status bodies of errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from devstack.kube import builders

from .kube_fixtures import Kube, eventually, kube, kube_static, status_body

__all__ = ["kube", "kube_static"]


async def raw_get(k: Kube, path: str, query: list[tuple[str, str]] | None = None) -> Any:
    return await k.api.call_api(
        path,
        "GET",
        query_params=query or [],
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def configmap(name: str = "", **meta: Any) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name or None, **meta), data={"k": "v"}
    )


async def test_version_with_and_without_trailing_slash(kube_static: Kube) -> None:
    info = await client.VersionApi(kube_static.api).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")
    assert (await raw_get(kube_static, "/version/"))["gitVersion"] == info.git_version


async def test_discovery_documents(kube_static: Kube) -> None:
    versions = await client.CoreApi(kube_static.api).get_api_versions()
    assert versions.versions == ["v1"]
    groups = await client.ApisApi(kube_static.api).get_api_versions()
    names = {g.name for g in groups.groups}
    assert {"apps", "batch", "policy", "coordination.k8s.io", "events.k8s.io"} <= names
    core = await kube_static.core.get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["pods/eviction"].kind == "Eviction"
    assert by_name["pods/eviction"].group == "policy"
    assert by_name["nodes"].namespaced is False and by_name["pods"].namespaced is True
    apps = await kube_static.apps.get_api_resources()
    assert "deployments" in {r.name for r in apps.resources}
    group = await client.PolicyApi(kube_static.api).get_api_group()
    assert group.preferred_version.group_version == "policy/v1"


async def test_create_fills_metadata_and_resource_versions_increase(kube_static: Kube) -> None:
    first = await kube_static.core.create_namespaced_config_map("default", configmap("one"))
    second = await kube_static.core.create_namespaced_config_map("default", configmap("two"))
    m = first.metadata
    assert m.uid and m.creation_timestamp is not None and m.generation == 1
    assert m.namespace == "default"
    assert int(second.metadata.resource_version) > int(m.resource_version)
    listed = await kube_static.core.list_namespaced_config_map("default")
    assert int(listed.metadata.resource_version) >= int(second.metadata.resource_version)
    assert [c.metadata.name for c in listed.items] == ["one", "two"]
    fetched = await kube_static.core.read_namespaced_config_map("one", "default")
    assert fetched.metadata.uid == m.uid


async def test_generate_name(kube_static: Kube) -> None:
    made = await kube_static.core.create_namespaced_config_map(
        "default", configmap(generate_name="cache-")
    )
    assert made.metadata.name.startswith("cache-") and len(made.metadata.name) == len("cache-") + 5


async def test_already_exists_is_409_with_details(kube_static: Kube) -> None:
    await kube_static.core.create_namespaced_config_map("default", configmap("dup"))
    with pytest.raises(ApiException) as err:
        await kube_static.core.create_namespaced_config_map("default", configmap("dup"))
    body = status_body(err.value)
    assert err.value.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "dup" already exists'
    assert body["details"] == {"name": "dup", "kind": "configmaps"}


async def test_not_found_is_404_with_group_details(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await kube_static.apps.read_namespaced_deployment("nope", "default")
    body = status_body(err.value)
    assert (err.value.status, body["reason"], body["kind"]) == (404, "NotFound", "Status")
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


async def test_create_in_missing_namespace_is_404(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await kube_static.core.create_namespaced_config_map("ghost", configmap("x"))
    assert err.value.status == 404
    assert status_body(err.value)["message"] == 'namespaces "ghost" not found'


async def test_create_with_resource_version_is_refused(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await kube_static.core.create_namespaced_config_map(
            "default", configmap("x", resource_version="12")
        )
    assert err.value.status == 500
    assert "resourceVersion should not be set" in status_body(err.value)["message"]


async def test_replace_with_stale_resource_version_conflicts(kube_static: Kube) -> None:
    made = await kube_static.core.create_namespaced_config_map("default", configmap("cm"))
    made.data = {"k": "v2"}
    updated = await kube_static.core.replace_namespaced_config_map("cm", "default", made)
    assert updated.data == {"k": "v2"}
    made.data = {"k": "v3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        await kube_static.core.replace_namespaced_config_map("cm", "default", made)
    body = status_body(err.value)
    assert (err.value.status, body["reason"]) == (409, "Conflict")
    assert body["message"].startswith('Operation cannot be fulfilled on configmaps "cm"')
    assert "the object has been modified" in body["message"]


async def test_generation_moves_with_spec_only(kube_static: Kube) -> None:
    await kube_static.server.add_object(builders.deployment("web", replicas=1))
    body = {"metadata": {"labels": {"team": "a"}}}
    labelled = await kube_static.apps.patch_namespaced_deployment("web", "default", body)
    assert labelled.metadata.generation == 1
    scaled = await kube_static.apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"replicas": 4}}
    )
    assert scaled.metadata.generation == 2


async def test_main_resource_ignores_status_and_status_subresource_ignores_spec(
    kube_static: Kube,
) -> None:
    await kube_static.server.add_object(builders.pod("p", node_name="n1"))
    patched = await kube_static.core.patch_namespaced_pod(
        "p", "default", {"status": {"phase": "Running"}, "metadata": {"labels": {"x": "1"}}}
    )
    assert patched.status.phase == "Pending" and patched.metadata.labels["x"] == "1"
    patched = await kube_static.core.patch_namespaced_pod_status(
        "p", "default", {"status": {"phase": "Running"}, "spec": {"nodeName": "other"}}
    )
    assert patched.status.phase == "Running" and patched.spec.node_name == "n1"


async def test_pod_defaults(kube_static: Kube) -> None:
    pod = await kube_static.core.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="p"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
        ),
    )
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.restart_policy == "Always"
    assert pod.status.phase == "Pending"
    keys = {t.key for t in pod.spec.tolerations}
    assert {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} <= keys


async def test_invalid_pod_is_422(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await kube_static.core.create_namespaced_pod(
            "default", {"metadata": {"name": "p"}, "spec": {"containers": []}}
        )
    body = status_body(err.value)
    assert (err.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["kind"] == "Pod"
    assert body["details"]["causes"][0]["field"] == "spec.containers"


async def test_lease_get_create_replace(kube_static: Kube) -> None:
    coord = kube_static.coordination
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="lock"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    made = await coord.create_namespaced_lease("default", lease)
    made.spec.holder_identity = "b"
    replaced = await coord.replace_namespaced_lease("lock", "default", made)
    assert replaced.spec.holder_identity == "b"
    made.spec.holder_identity = "c"
    with pytest.raises(ApiException) as err:
        await coord.replace_namespaced_lease("lock", "default", made)
    assert err.value.status == 409


async def test_leader_election_with_the_client_library(kube_static: Kube) -> None:
    """kubernetes_asyncio's own leader election (get/create/replace on a Lease) works."""
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    async def on_stopped() -> None:
        return None

    lock = LeaseLock("lifecycled", "default", "candidate-1", kube_static.api)
    cfg = electionconfig.Config(lock, 3, 2, 1, on_started, on_stopped)
    task = asyncio.create_task(leaderelection.LeaderElection(cfg).run())
    try:
        await asyncio.wait_for(started.wait(), 5)
        lease = await kube_static.coordination.read_namespaced_lease("lifecycled", "default")
        assert lease.spec.holder_identity == "candidate-1"
        verbs = {
            r.verb for r in kube_static.server.requests if r.resource and "leases" in r.resource
        }
        assert {"get", "create"} <= verbs
        await eventually(lambda: _saw_replace(kube_static), within=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _saw_replace(k: Kube) -> None:
    assert any(r.verb == "update" and r.status == 200 for r in k.server.requests)


async def test_requests_are_recorded(kube_static: Kube) -> None:
    await kube_static.core.list_namespaced_pod("default", label_selector="app=x")
    record = kube_static.server.requests[-1]
    assert (record.method, record.verb, record.resource) == ("GET", "list", "pods")
    assert record.path == "/api/v1/namespaces/default/pods"
    assert record.query["labelSelector"] == "app=x"
    assert record.status == 200 and record.time > 0


async def test_unknown_path_is_404(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await raw_get(kube_static, "/apis/example.com/v1/widgets")
    assert err.value.status == 404
