"""Controllers work on what changed: the scheduler looks at new pending pods only, computes
node fit once per pod signature, parks pods that fit nowhere until a node change can help,
and nothing runs over the whole store when nothing changed."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from devstack.kube import builders

from .kube_fixtures import Kube, eventually, kube, kube_static

__all__ = ["kube", "kube_static"]
FAST = builders.scripted(start=0.02, exit=0.05)


async def bound(k: Kube, name: str) -> str:
    pod = await k.core.read_namespaced_pod(name, "default")
    assert pod.spec.node_name
    return str(pod.spec.node_name)


async def test_scheduler_looks_only_at_new_pending_pods(kube_static: Kube) -> None:
    server = kube_static.server
    scheduler = server.controllers.scheduler
    for i in range(5):
        await server.add_node(f"n{i}")
    for i in range(40):
        await server.add_object(builders.pod(f"p{i}", annotations=FAST))
    await server.run_controllers_once()
    assert scheduler.attempts == 40
    assert sorted(server.store.node_load(f"n{i}") for i in range(5)) == [8] * 5
    for _ in range(3):  # nothing new: no attempt, however many passes
        await server.run_controllers_once()
    await server.patch_object("nodes", "n0", {"metadata": {"labels": {"pool": "x"}}})
    await server.add_object(builders.namespace("other"))
    await server.run_controllers_once()
    assert scheduler.attempts == 40
    await server.add_object(builders.pod("late"))
    await server.run_controllers_once()
    assert scheduler.attempts == 41
    assert await bound(kube_static, "late")


async def test_fit_is_computed_once_per_signature_and_kept_per_node(kube_static: Kube) -> None:
    server = kube_static.server
    scheduler = server.controllers.scheduler
    for i in range(3):
        await server.add_node(f"n{i}", labels={"disk": "ssd" if i == 2 else "hdd"})
    for i in range(30):
        await server.add_object(builders.pod(f"p{i}"))
    await server.add_object(builders.pod("fast", nodeSelector={"disk": "ssd"}))
    await server.run_controllers_once()
    assert len(scheduler.signatures) == 2
    assert await bound(kube_static, "fast") == "n2"
    await server.patch_object("nodes", "n2", {"spec": {"unschedulable": True}})
    await server.run_controllers_once()  # the cordon reaches every signature's cached fit
    assert all("n2" not in fits.fit for fits in scheduler.signatures.values())
    await server.add_object(builders.pod("after-cordon"))
    await server.run_controllers_once()
    assert await bound(kube_static, "after-cordon") in ("n0", "n1")


async def test_unschedulable_pods_are_parked_until_a_node_can_take_them(kube: Kube) -> None:
    server = kube.server
    scheduler = server.controllers.scheduler
    await server.add_node("n1", unschedulable=True)
    for i in range(5):
        await server.add_object(builders.pod(f"p{i}", annotations=FAST))

    async def parked() -> None:
        assert sum(len(keys) for keys in scheduler.parked.values()) == 5
        pod = await kube.core.read_namespaced_pod("p0", "default")
        cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
        assert (cond.status, cond.reason) == ("False", "Unschedulable")
        assert cond.message == "0/1 nodes are available: 1 node(s) were unschedulable."

    await eventually(parked)
    attempts = scheduler.attempts
    await server.add_object(builders.namespace("noise"))  # not a node: no retry
    await server.run_controllers_once()
    assert scheduler.attempts == attempts
    await kube.core.patch_node("n1", {"spec": {"unschedulable": False}})

    async def placed() -> None:
        for i in range(5):
            assert await bound(kube, f"p{i}") == "n1"

    await eventually(placed, within=2)
    assert not scheduler.parked


async def test_nothing_is_written_when_nothing_changed(kube_static: Kube) -> None:
    server = kube_static.server
    await server.add_node("n1")
    await server.add_object(builders.deployment("web", replicas=3, annotations=FAST))
    await server.add_object(builders.pdb("web", match_labels={"app": "web"}, max_unavailable=1))
    await server.add_object(builders.daemonset("agent", annotations=FAST))

    async def settled() -> None:
        await server.run_controllers_once()
        assert server.store.pod_counts.get("ready", 0) == 4
        deploy = server.store.get("deployments", "web", "default")
        assert deploy is not None and deploy["status"].get("readyReplicas") == 3

    await eventually(settled)
    version = server.store.resource_version
    for _ in range(5):
        await server.run_controllers_once()
    assert server.store.resource_version == version
    kubelet = server.controllers.kubelet
    assert not kubelet.dirty and len(kubelet.timers) == 0


async def test_kubelet_steps_fall_due_on_timers(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_object(
        builders.pod("p", annotations=builders.scripted(start=0.3, run=0.3))
    )

    async def phase(expected: str) -> Any:
        pod = await kube.core.read_namespaced_pod("p", "default")
        assert pod.status.phase == expected
        return pod

    await eventually(lambda: phase("Pending"), within=0.2)
    await eventually(lambda: phase("Running"), within=2)
    await eventually(lambda: phase("Succeeded"), within=2)
    assert not kube.server.controllers.kubelet.timers


async def test_daemonset_status_follows_node_changes_incrementally(kube: Kube) -> None:
    await kube.server.add_node("n1")
    await kube.server.add_node("n2")
    await kube.server.add_object(builders.daemonset("agent", annotations=FAST))

    async def counts(desired: int, ready: int) -> None:
        ds = await kube.apps.read_namespaced_daemon_set("agent", "kube-system")
        assert (ds.status.desired_number_scheduled, ds.status.number_ready) == (desired, ready)

    await eventually(lambda: counts(2, 2))
    taint = client.V1Taint(key="drain", effect="NoExecute")
    await kube.core.patch_node("n2", {"spec": {"taints": [taint.to_dict()]}})
    await eventually(lambda: counts(1, 1))
    await kube.server.add_node("n3")
    await eventually(lambda: counts(2, 2))
