"""labelSelector, fieldSelector and limit/continue on list, as kube-apiserver answers them."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client.rest import ApiException

from devstack.kube import builders

from .kube_fixtures import Kube, kube_static, status_body

__all__ = ["kube_static"]

LABELS = {
    "a": {"app": "web", "tier": "front", "env": "prod"},
    "b": {"app": "web", "tier": "back"},
    "c": {"app": "db", "env": "dev"},
    "d": {"legacy": "yes"},
}


async def seed(k: Kube) -> None:
    for name, labels in LABELS.items():
        await k.server.add_object(builders.pod(name, labels=labels, node_name=f"n-{name}"))


async def names(k: Kube, **kwargs: str) -> list[str]:
    pods = await k.core.list_namespaced_pod("default", **kwargs)
    return [p.metadata.name for p in pods.items]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),  # objects without the key match !=
        ("app in (web,db)", ["a", "b", "c"]),
        ("env notin (prod)", ["b", "c", "d"]),
        ("env", ["a", "c"]),
        ("!env", ["b", "d"]),
        ("app=web,tier=back", ["b"]),
        ("app in (web, db),!tier", ["c"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
async def test_label_selectors(kube_static: Kube, selector: str, expected: list[str]) -> None:
    await seed(kube_static)
    assert await names(kube_static, label_selector=selector) == expected


async def test_bad_label_selector_is_400(kube_static: Kube) -> None:
    with pytest.raises(ApiException) as err:
        await kube_static.core.list_namespaced_pod("default", label_selector="app in web")
    assert err.value.status == 400
    assert status_body(err.value)["reason"] == "BadRequest"


async def test_pod_field_selectors(kube_static: Kube) -> None:
    await seed(kube_static)
    await kube_static.core.patch_namespaced_pod_status(
        "c", "default", {"status": {"phase": "Running"}}
    )
    assert await names(kube_static, field_selector="spec.nodeName=n-a") == ["a"]
    assert await names(kube_static, field_selector="spec.nodeName==n-b") == ["b"]
    assert await names(kube_static, field_selector="status.phase=Running") == ["c"]
    assert await names(kube_static, field_selector="status.phase!=Running") == ["a", "b", "d"]
    assert await names(kube_static, field_selector="metadata.name=d") == ["d"]
    assert await names(kube_static, field_selector="spec.nodeName=n-a,metadata.name!=a") == []
    assert await names(
        kube_static, field_selector="spec.schedulerName=default-scheduler", label_selector="env"
    ) == ["a", "c"]


async def test_field_selector_across_namespaces(kube_static: Kube) -> None:
    await kube_static.server.add_namespace("other")
    await kube_static.server.add_object(builders.pod("x", namespace="other", node_name="n1"))
    await kube_static.server.add_object(builders.pod("y", node_name="n1"))
    pods = await kube_static.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert [(p.metadata.namespace, p.metadata.name) for p in pods.items] == [
        ("default", "y"),
        ("other", "x"),
    ]
    pods = await kube_static.core.list_pod_for_all_namespaces(
        field_selector="metadata.namespace=other"
    )
    assert [p.metadata.name for p in pods.items] == ["x"]


async def test_unsupported_field_is_400_like_upstream(kube_static: Kube) -> None:
    await kube_static.server.add_node("n1")
    with pytest.raises(ApiException) as err:
        await kube_static.core.list_node(field_selector="spec.providerID=aws:///us-east-1a/i-1")
    body = status_body(err.value)
    assert (err.value.status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == "field label not supported: spec.providerID"
    with pytest.raises(ApiException) as err:
        await kube_static.core.list_namespaced_pod("default", field_selector="spec.hostname=x")
    assert err.value.status == 400


async def test_node_field_selectors(kube_static: Kube) -> None:
    await kube_static.server.add_node("n1")
    await kube_static.server.add_node("n2", unschedulable=True)
    nodes = await kube_static.core.list_node(field_selector="spec.unschedulable=true")
    assert [n.metadata.name for n in nodes.items] == ["n2"]
    nodes = await kube_static.core.list_node(field_selector="metadata.name=n1")
    assert [n.metadata.name for n in nodes.items] == ["n1"]


async def test_limit_and_continue(kube_static: Kube) -> None:
    for i in range(5):
        await kube_static.server.add_object(builders.pod(f"p{i}"))
    page = await kube_static.core.list_namespaced_pod("default", limit=2)
    seen = [p.metadata.name for p in page.items]
    assert page.metadata.remaining_item_count == 3
    while page.metadata._continue:
        page = await kube_static.core.list_namespaced_pod(
            "default", limit=2, _continue=page.metadata._continue
        )
        seen += [p.metadata.name for p in page.items]
    assert seen == ["p0", "p1", "p2", "p3", "p4"]
