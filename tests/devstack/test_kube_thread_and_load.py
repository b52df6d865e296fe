"""The threaded server (for the demo) and a load check at the size the product targets."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from devstack.kube import KubeApiServer, KubeApiServerThread, builders

from .kube_fixtures import Kube, connect, eventually, kube

__all__ = ["kube"]


async def test_threaded_server_serves_a_client_in_another_loop(tmp_path: Path) -> None:
    server = KubeApiServerThread(tick=0.02)
    server.start()
    try:
        server.call(server.server.add_node, "n1")
        made = server.call(server.server.add_object, builders.pod("p"))
        assert made["metadata"]["name"] == "p"
        api, _ = await connect(server.server, tmp_path)
        async with api:
            core = client.CoreV1Api(api)
            nodes = await core.list_node()
            assert [n.metadata.name for n in nodes.items] == ["n1"]

            async def running() -> None:
                pod = await core.read_namespaced_pod("p", "default")
                assert pod.status.phase == "Running"

            await eventually(running)
    finally:
        server.stop()
    assert server.url.startswith("http://127.0.0.1:")


async def test_kubeconfig_points_at_the_server(kube: Kube) -> None:
    text = kube.kubeconfig.read_text()
    assert kube.server.url in text
    assert kube.api.configuration.host == kube.server.url


NODES, PER_NODE = 25, 12


async def seed_cluster(server: KubeApiServer) -> None:
    for i in range(NODES):
        await server.add_node(f"node-{i:02d}")
    for i in range(NODES):
        await server.add_object(
            builders.deployment(
                f"app-{i:02d}",
                replicas=PER_NODE,
                annotations=builders.scripted(start=0.05, exit=0.1),
            )
        )
        await server.add_object(
            builders.pdb(f"app-{i:02d}", match_labels={"app": f"app-{i:02d}"}, max_unavailable=1)
        )


async def drain(core: client.CoreV1Api, node: str, deadline: float) -> int:
    """Evict everything on `node`, retrying 429s, as a product's drain would."""
    evicted = 0
    while time.monotonic() < deadline:
        pods = await core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
        left = [p for p in pods.items if p.metadata.deletion_timestamp is None]
        if not left:
            return evicted
        for pod in left:
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name))
            try:
                await core.create_namespaced_pod_eviction(pod.metadata.name, "default", body)
                evicted += 1
            except ApiException as exc:
                assert exc.status in (404, 429)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node} not drained")


async def poll(core: client.CoreV1Api, node: str, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.monotonic()
        await core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.02)
    return latencies


async def watch_budgets(policy: client.PolicyV1Api, stop: asyncio.Event) -> int:
    """Read every budget's status until stopped; return the worst shortfall seen."""
    worst = 0
    while not stop.is_set():
        pdbs = await policy.list_namespaced_pod_disruption_budget("default")
        for pdb in pdbs.items:
            worst = max(worst, pdb.status.desired_healthy - pdb.status.current_healthy)
        await asyncio.sleep(0.02)
    return worst


async def test_300_pods_25_nodes_10_clients(kube: Kube) -> None:
    await seed_cluster(kube.server)
    core = kube.core

    async def all_ready() -> None:
        pods = await core.list_pod_for_all_namespaces(label_selector="app")
        running = [p for p in pods.items if p.status.phase == "Running"]
        assert len(running) == NODES * PER_NODE

    await eventually(all_ready, within=20, interval=0.2)
    for i in range(2):  # cordon the nodes being drained, as a drain would
        await core.patch_node(f"node-{i:02d}", {"spec": {"unschedulable": True}})
    stop = asyncio.Event()
    pollers = [asyncio.create_task(poll(core, f"node-{i:02d}", stop)) for i in range(2, 10)]
    budgets = asyncio.create_task(watch_budgets(client.PolicyV1Api(kube.api), stop))
    deadline = time.monotonic() + 30
    started = time.monotonic()
    evicted = await asyncio.gather(
        drain(core, "node-00", deadline), drain(core, "node-01", deadline)
    )
    drained_in = time.monotonic() - started
    stop.set()
    latencies = sorted(x for result in await asyncio.gather(*pollers) for x in result)
    assert sum(evicted) >= 2 * PER_NODE * 0.5
    p95 = latencies[int(len(latencies) * 0.95)]
    assert p95 < 0.5, f"p95 list latency {p95:.3f}s"
    assert drained_in < 20
    # No budget was ever broken: at most one pod of each app was unavailable (maxUnavailable 1).
    assert await budgets == 0
