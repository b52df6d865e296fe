"""The event recorder against the Kubernetes emulator: a storm writes a bounded number of
Events per node, repeats are aggregated (count, via PATCH), a repeated reason never uses up
another reason's budget, nothing waits on the writes."""

from __future__ import annotations

import time

from kubernetes_asyncio import client

from devstack.kube import KubeApiServer
from lifecycled import report
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
                recorder.node("node-a", f"Reason{n % 3}", f"storm {n}")
                recorder.node("node-b", report.EVICTION_BLOCKED, f"refusal {n}")
            # After hundreds of refusals, the drain's outcome is still written.
            recorder.node("node-b", report.DEADLINE_MISSED, "deadline passed", warning=True)
            assert time.monotonic() - start < 0.5  # posting never waits on the API
            await recorder.flush()
    items = (await client.CoreV1Api(api).list_namespaced_event("default")).items
    by_node = {
        name: [e for e in items if e.involved_object.name == name] for name in ("node-a", "node-b")
    }
    # Per node and reason: one Event, written at most `burst` times (1 create, 9 PATCHes).
    assert sorted((e.reason, e.count) for e in by_node["node-a"]) == [
        ("Reason0", 10),
        ("Reason1", 10),
        ("Reason2", 10),
    ]
    refusals, missed = sorted(by_node["node-b"], key=lambda e: e.metadata.name)
    assert refusals.reason == report.EVICTION_BLOCKED
    assert refusals.count == 10 and refusals.message == "refusal 9"
    assert missed.reason == report.DEADLINE_MISSED and missed.type == "Warning"
    sample = metrics.registry.get_sample_value
    assert sample("lifecycled_kube_events_total", {"outcome": "created"}) == 5
    assert sample("lifecycled_kube_events_total", {"outcome": "aggregated"}) == 36
    assert sample("lifecycled_kube_events_total", {"outcome": "dropped_rate_limited"}) == 560
