"""The event recorder against the Kubernetes emulator: a storm writes a bounded number of
Events per node, repeats are aggregated (count, via PATCH), nothing waits on the writes."""

from __future__ import annotations

import time

from kubernetes_asyncio import client

from devstack.kube import KubeApiServer
from lifecycled.clients.kube import KubeClient
from lifecycled.kube_events import EventRecorder, Limits
from lifecycled.observe import Metrics


async def test_a_storm_writes_a_bounded_number_of_events_per_node(
    kube: KubeApiServer, api: client.ApiClient
) -> None:
    metrics = Metrics()
    async with KubeClient.open(metrics, 5.0) as kc:
        recorder = EventRecorder(kc.create_event, kc.patch_event, metrics, Limits(burst=10))
        async with recorder.running():
            start = time.monotonic()
            for n in range(300):
                recorder.node("node-a", f"Reason{n % 30}", f"storm {n}")
                recorder.node("node-b", "EvictionBlockedByBudget", f"refusal {n}")
            assert time.monotonic() - start < 0.5  # posting never waits on the API
            await recorder.flush()
    items = (await client.CoreV1Api(api).list_namespaced_event("default")).items
    by_node = {
        name: [e for e in items if e.involved_object.name == name] for name in ("node-a", "node-b")
    }
    assert len(by_node["node-a"]) == 10  # the burst; the rest dropped and counted
    (refusals,) = by_node["node-b"]  # one Event, its count rising
    assert refusals.count == 10 and refusals.message == "refusal 9"
    sample = metrics.registry.get_sample_value
    assert sample("lifecycled_kube_events_total", {"outcome": "created"}) == 11
    assert sample("lifecycled_kube_events_total", {"outcome": "aggregated"}) == 9
    assert sample("lifecycled_kube_events_total", {"outcome": "dropped_rate_limited"}) == 580
