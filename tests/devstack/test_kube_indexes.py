"""The store's indexes stay equal to a rebuild from the stored objects through binding,
eviction, deletion, garbage collection, relabelling and budget changes; selectors are served
from them; budgets computed from the index equal budgets computed by a scan."""

from __future__ import annotations

import random
from typing import Any

import pytest
from kubernetes_asyncio import client

from devstack.kube import Store, builders
from devstack.kube.pdb import PDBS, budget, scanned_budget, scanned_pods, selected_pods
from devstack.kube.resources import BY_KEY

from .kube_fixtures import Kube, eventually, kube, kube_static, running_pod

__all__ = ["kube", "kube_static"]
PODS = BY_KEY["pods"]
FAST = builders.scripted(start=0.02, exit=0.05)


def consistent(store: Store) -> None:
    assert store.verify() == []
    for pdb in list(store.iter_refs(PDBS)):
        assert budget(store, pdb) == scanned_budget(store, pdb)
        names = sorted(p["metadata"]["name"] for p in selected_pods(store, pdb))
        assert names == sorted(p["metadata"]["name"] for p in scanned_pods(store, pdb))


def on_node(store: Store, node: str) -> list[str]:
    """Pods bound to `node`, by a scan (the index's reference)."""
    return sorted(
        p["metadata"]["name"] for p in store.iter_refs(PODS) if p["spec"].get("nodeName") == node
    )


async def listed_on(k: Kube, node: str) -> list[str]:
    pods = await k.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
    return sorted(p.metadata.name for p in pods.items)


async def test_binding_eviction_and_node_deletion_keep_the_indexes(kube: Kube) -> None:
    store = kube.server.store
    for name in ("a", "b", "c"):
        await kube.server.add_node(name)
    await kube.server.add_object(builders.daemonset("agent", annotations=FAST))
    await kube.server.add_object(builders.deployment("web", replicas=9, annotations=FAST))
    await kube.server.add_object(builders.pdb("web", match_labels={"app": "web"}, min_available=6))

    async def running(count: int) -> None:
        assert store.pod_counts.get("ready", 0) == count
        assert store.pod_counts.get("total", 0) == count

    await eventually(lambda: running(12))
    consistent(store)
    for node in ("a", "b", "c"):
        assert await listed_on(kube, node) == on_node(store, node)
        assert len(on_node(store, node)) == 4  # 3 web pods and the agent: least loaded first
        assert store.node_load(node) == 4
    victims = [n for n in on_node(store, "a") if n.startswith("web")]
    for victim in victims:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=victim))
        await kube.core.create_namespaced_pod_eviction(victim, "default", body)
    consistent(store)  # right after the evictions: terminating pods, budget spent
    await eventually(lambda: running(12))
    consistent(store)
    await kube.server.delete_node("b")
    assert on_node(store, "b") == [] and await listed_on(kube, "b") == []
    assert store.node_load("b") == 0
    consistent(store)
    await eventually(lambda: running(11))  # web rescheduled on a and c; one agent fewer
    consistent(store)
    assert store.node_load("a") + store.node_load("c") == 11


async def test_garbage_collection_empties_the_owner_and_label_indexes(kube: Kube) -> None:
    store = kube.server.store
    await kube.server.add_node("n1")
    made = await kube.server.add_object(builders.deployment("web", replicas=3, annotations=FAST))

    async def pods(count: int) -> None:
        assert len(store.select_refs(PODS, "default", _app("web"))) == count

    await eventually(lambda: pods(3))
    uid = made["metadata"]["uid"]
    assert len(store.dependents(uid)) == 1  # the ReplicaSet
    rs_uid = store.dependents(uid)[0][1]["metadata"]["uid"]
    assert len(store.dependents(rs_uid)) == 3
    await kube.apps.delete_namespaced_deployment("web", "default")
    await eventually(lambda: pods(0))
    assert store.dependents(uid) == [] and store.dependents(rs_uid) == []
    assert store.owner_uids() == []
    assert store.pods_on_node("n1") == [] and store.node_load("n1") == 0
    consistent(store)


async def test_relabelling_moves_pods_in_and_out_of_budgets(kube_static: Kube) -> None:
    store = kube_static.server.store
    for i in range(4):
        await running_pod(kube_static, f"p{i}", labels={"app": "web", "tier": "front"})
    await kube_static.server.add_object(
        builders.pdb("web", match_labels={"app": "web"}, min_available=2)
    )
    everything = builders.pdb("all", match_labels={}, min_available=0)
    everything["metadata"]["namespace"] = "default"
    everything["spec"]["selector"] = {
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]
    }
    await kube_static.server.add_object(everything)
    consistent(store)
    assert [p["metadata"]["name"] for p in store.pdbs_of_pod("default", "p0")] == ["all", "web"]
    await kube_static.server.patch_object(
        "pods", "p0", {"metadata": {"labels": {"app": "db"}}}, "default"
    )
    await kube_static.server.patch_object("pods", "p1", {"metadata": {"labels": None}}, "default")
    consistent(store)
    assert [p["metadata"]["name"] for p in store.pdbs_of_pod("default", "p0")] == ["all"]
    assert store.pdbs_of_pod("default", "p1") == []
    web = store.get_ref(PDBS, "default", "web")
    assert web is not None and budget(store, web).current_healthy == 2
    await kube_static.server.patch_object(
        "poddisruptionbudgets",
        "web",
        {"spec": {"selector": {"matchLabels": {"app": "db"}}}},
        "default",
    )
    consistent(store)
    web = store.get_ref(PDBS, "default", "web")
    assert web is not None and [p["metadata"]["name"] for p in selected_pods(store, web)] == ["p0"]
    await kube_static.server.delete_object("poddisruptionbudgets", "all", "default")
    consistent(store)
    assert [p["metadata"]["name"] for p in store.pdbs_of_pod("default", "p2")] == []


async def test_selectors_are_served_from_the_indexes(
    kube_static: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kube_static.server.add_node("n1")
    await kube_static.server.add_node("n2")
    for i in range(6):
        pod = builders.pod(
            f"p{i}", labels={"app": "web" if i % 2 else "db"}, node_name=f"n{i % 2 + 1}"
        )
        await kube_static.server.add_object(pod)

    def no_scans(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a full scan")

    monkeypatch.setattr(kube_static.server.store, "sorted_refs", no_scans)
    by_node = await kube_static.core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n2")
    assert [p.metadata.name for p in by_node.items] == ["p1", "p3", "p5"]
    by_label = await kube_static.core.list_namespaced_pod("default", label_selector="app=db")
    assert [p.metadata.name for p in by_label.items] == ["p0", "p2", "p4"]
    both = await kube_static.core.list_namespaced_pod(
        "default", label_selector="app in (db,web),app!=web", field_selector="spec.nodeName=n1"
    )
    assert [p.metadata.name for p in both.items] == ["p0", "p2", "p4"]


async def test_namespace_deletion_leaves_no_index_entries(kube: Kube) -> None:
    store = kube.server.store
    await kube.server.add_node("n1")
    await kube.server.add_namespace("team")
    await kube.server.add_object(
        builders.deployment("web", namespace="team", replicas=2, annotations=FAST)
    )
    await kube.server.add_object(
        builders.pdb("web", namespace="team", match_labels={"app": "web"}, max_unavailable=1)
    )
    await eventually(_ready(store, 2))
    await kube.core.delete_namespace("team")

    async def gone() -> None:
        assert store.get("namespaces", "team") is None

    await eventually(gone, within=10)
    consistent(store)
    assert store.budget_members("team", "web") is None
    assert store.select_refs(PODS, "team", _app("web")) == []


async def test_random_writes_keep_every_index_consistent(kube_static: Kube) -> None:
    """Random creates, relabels, binds, status changes, deletions and budget edits; the
    indexes are checked against a rebuild after every step."""
    rng = random.Random(7)
    server, store = kube_static.server, kube_static.server.store
    for node in ("n1", "n2"):
        await server.add_node(node)
    apps = ["a", "b", "c"]
    for app in apps[:2]:
        await server.add_object(builders.pdb(app, match_labels={"app": app}, max_unavailable=1))
    for step in range(200):
        names = [p["metadata"]["name"] for p in store.iter_refs(PODS)]
        action = rng.choice(["create", "create", "relabel", "bind", "status", "delete", "pdb"])
        name = rng.choice(names) if names else None
        if action == "create" or name is None:
            labels = {"app": rng.choice(apps)}
            await server.add_object(builders.pod(f"p{step}", labels=labels))
        elif action == "relabel":
            labels = {"app": rng.choice(apps)}
            await server.patch_object("pods", name, {"metadata": {"labels": labels}}, "default")
        elif action == "bind":
            node = rng.choice(["n1", "n2"])
            await server.patch_object("pods", name, {"spec": {"nodeName": node}}, "default")
        elif action == "status":
            phase, ready = rng.choice(
                [("Running", "True"), ("Running", "False"), ("Succeeded", "False")]
            )
            status = {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}
            await server.patch_object(
                "pods", name, {"status": status}, "default", subresource="status"
            )
        elif action == "delete":
            await server.delete_object("pods", name, "default", grace_period=rng.choice([0, 30]))
        else:
            pdb = rng.choice(apps[:2])
            selector = {"matchLabels": {"app": rng.choice(apps)}}
            patch = {"spec": {"selector": selector}}
            await server.patch_object("poddisruptionbudgets", pdb, patch, "default")
        consistent(store)


def _app(name: str) -> list[Any]:
    from devstack.kube.selectors import parse_label_selector

    return parse_label_selector(f"app={name}")


def _ready(store: Store, count: int) -> Any:
    async def check() -> None:
        assert store.pod_counts.get("ready", 0) == count

    return check


async def test_verify_reports_a_corrupted_index(kube_static: Kube) -> None:
    store = kube_static.server.store
    await running_pod(kube_static, "p", labels={"app": "web"})
    await kube_static.server.add_object(builders.pdb("web", match_labels={"app": "web"}))
    assert store.verify() == []
    store._load["n1"] += 1
    store._pods_by_node["n9"] = {("default", "p")}
    members = store.budget_members("default", "web")
    assert members is not None
    members.healthy += 1
    problems = store.verify()
    assert {p.split(":")[0] for p in problems} == {"_load", "_pods_by_node", "_members"}
