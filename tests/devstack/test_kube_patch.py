"""Merge, JSON and strategic-merge patches with the real patch strategies."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client.rest import ApiException

from devstack.kube import builders

from .kube_fixtures import Kube, kube_static, status_body

__all__ = ["kube_static"]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

TAINT_A = {"key": "a", "value": "1", "effect": "NoSchedule"}
TAINT_B = {"key": "b", "effect": "NoExecute"}


async def node_with_taints(k: Kube) -> None:
    await k.server.add_node("n1", taints=[TAINT_A])


def taints(node: Any) -> list[tuple[str, str]]:
    return [(t.key, t.effect) for t in node.spec.taints or []]


async def test_strategic_patch_replaces_the_whole_taint_list(kube_static: Kube) -> None:
    await node_with_taints(kube_static)
    node = await kube_static.core.patch_node("n1", {"spec": {"taints": [TAINT_B]}})
    assert taints(node) == [("b", "NoExecute")]
    record = kube_static.server.requests[-1]
    assert record.content_type == "application/strategic-merge-patch+json"
    assert record.verb == "patch"


async def test_merge_patch_replaces_lists_and_null_deletes(kube_static: Kube) -> None:
    await node_with_taints(kube_static)
    await kube_static.core.patch_node("n1", {"metadata": {"labels": {"x": "1"}}})
    node = await kube_static.core.patch_node(
        "n1",
        {"spec": {"taints": [TAINT_B]}, "metadata": {"labels": {"x": None, "y": "2"}}},
        _content_type=MERGE,
    )
    assert taints(node) == [("b", "NoExecute")]
    assert "x" not in node.metadata.labels and node.metadata.labels["y"] == "2"
    assert node.metadata.labels["kubernetes.io/hostname"] == "n1"  # maps merge


async def test_taint_read_modify_write_with_precondition(kube_static: Kube) -> None:
    """The safe way to add a taint: send the whole list plus the resourceVersion read."""
    await node_with_taints(kube_static)
    node = await kube_static.core.read_node("n1")
    stale_rv = node.metadata.resource_version
    await kube_static.core.patch_node("n1", {"metadata": {"labels": {"other": "writer"}}})
    body = {"metadata": {"resourceVersion": stale_rv}, "spec": {"taints": [TAINT_A, TAINT_B]}}
    with pytest.raises(ApiException) as err:
        await kube_static.core.patch_node("n1", body)
    assert (err.value.status, status_body(err.value)["reason"]) == (409, "Conflict")
    fresh = await kube_static.core.read_node("n1")
    body["metadata"]["resourceVersion"] = fresh.metadata.resource_version
    node = await kube_static.core.patch_node("n1", body)
    assert taints(node) == [("a", "NoSchedule"), ("b", "NoExecute")]


async def test_containers_merge_by_name(kube_static: Kube) -> None:
    pod = builders.pod("p")
    pod["spec"]["containers"].append({"name": "side", "image": "side:1"})
    await kube_static.server.add_object(pod)
    patched = await kube_static.core.patch_namespaced_pod(
        "p",
        "default",
        {"spec": {"containers": [{"name": "side", "env": [{"name": "A", "value": "1"}]}]}},
    )
    by_name = {c.name: c for c in patched.spec.containers}
    assert set(by_name) == {"main", "side"}
    assert by_name["side"].image == "side:1" and by_name["side"].env[0].name == "A"


async def test_owner_references_merge_by_uid_and_finalizers_union(kube_static: Kube) -> None:
    await kube_static.server.add_object(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "cm",
                "finalizers": ["a/one"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1"}
                ],
            },
        }
    )
    patched = await kube_static.core.patch_namespaced_config_map(
        "cm",
        "default",
        {
            "metadata": {
                "finalizers": ["b/two"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n2", "uid": "u2"}
                ],
            },
        },
    )
    assert patched.metadata.finalizers == ["a/one", "b/two"]
    assert [r.uid for r in patched.metadata.owner_references] == ["u1", "u2"]
    patched = await kube_static.core.patch_namespaced_config_map(
        "cm",
        "default",
        {
            "metadata": {
                "$deleteFromPrimitiveList/finalizers": ["a/one"],
                "ownerReferences": [{"uid": "u1", "$patch": "delete"}],
            },
        },
    )
    assert patched.metadata.finalizers == ["b/two"]
    assert [r.uid for r in patched.metadata.owner_references] == ["u2"]


async def test_status_conditions_merge_by_type(kube_static: Kube) -> None:
    await kube_static.server.add_node("n1")
    node = await kube_static.core.patch_node_status(
        "n1", {"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}]}}
    )
    kinds = {c.type: c.status for c in node.status.conditions}
    assert kinds == {"Ready": "True", "MemoryPressure": "False"}
    node = await kube_static.core.patch_node_status(
        "n1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    kinds = {c.type: c.status for c in node.status.conditions}
    assert kinds == {"Ready": "False", "MemoryPressure": "False"}


async def test_patch_directives_on_maps(kube_static: Kube) -> None:
    await kube_static.server.add_object(
        builders.pod("p", labels={"a": "1", "b": "2"}, annotations={"x": "1"})
    )
    patched = await kube_static.core.patch_namespaced_pod(
        "p",
        "default",
        {
            "metadata": {
                "labels": {"$patch": "replace", "c": "3"},
                "annotations": {"$patch": "delete"},
            }
        },
    )
    assert patched.metadata.labels == {"c": "3"}
    assert not patched.metadata.annotations


async def test_json_patch_operations(kube_static: Kube) -> None:
    await kube_static.server.add_object(builders.pod("p", labels={"a": "1"}))
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/c"},
        {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/d"},
        {"op": "replace", "path": "/metadata/labels/b", "value": "20"},
        {"op": "remove", "path": "/metadata/labels/c"},
        {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "k", "operator": "Exists"}},
    ]
    patched = await kube_static.core.patch_namespaced_pod("p", "default", ops)
    assert kube_static.server.requests[-1].content_type == JSON_PATCH
    assert patched.metadata.labels == {"b": "20", "d": "1"}
    assert patched.spec.tolerations[-1].key == "k"


async def test_json_patch_failed_test_is_422(kube_static: Kube) -> None:
    await kube_static.server.add_object(builders.pod("p", labels={"a": "1"}))
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "2"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
    ]
    with pytest.raises(ApiException) as err:
        await kube_static.core.patch_namespaced_pod("p", "default", ops)
    assert err.value.status == 422
    pod = await kube_static.core.read_namespaced_pod("p", "default")
    assert pod.metadata.labels == {"a": "1"}


async def test_json_patch_resource_version_test_as_precondition(kube_static: Kube) -> None:
    await node_with_taints(kube_static)
    node = await kube_static.core.read_node("n1")
    ops = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/spec/taints/-", "value": TAINT_B},
    ]
    with pytest.raises(ApiException) as err:
        await kube_static.core.patch_node("n1", ops)
    assert err.value.status == 409
    ops[0]["value"] = node.metadata.resource_version
    patched = await kube_static.core.patch_node("n1", ops)
    assert taints(patched) == [("a", "NoSchedule"), ("b", "NoExecute")]


async def test_apply_patch_is_unsupported(kube_static: Kube) -> None:
    await node_with_taints(kube_static)
    with pytest.raises(ApiException) as err:
        await kube_static.core.patch_node(
            "n1",
            {"metadata": {"labels": {"x": "1"}}},
            _content_type="application/apply-patch+yaml",
            field_manager="test",
        )
    assert err.value.status == 415


async def test_patch_missing_object_is_404(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await kube_static.core.patch_node("ghost", {"metadata": {"labels": {"x": "1"}}})
    assert err.value.status == 404
    assert status_body(err.value)["details"] == {"name": "ghost", "kind": "nodes"}
