"""Watch streams as kubernetes_asyncio's Watch consumes them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes_asyncio import watch

from devstack.kube import builders

from .kube_fixtures import Kube, kube_static

__all__ = ["kube_static"]


async def collect(stream: Any, count: int, within: float = 5.0) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []

    async def read() -> None:
        async for event in stream:
            events.append((event["type"], event["raw_object"]["metadata"]["name"]))
            if len(events) == count:
                return

    await asyncio.wait_for(read(), within)
    return events


async def test_watch_sends_existing_then_changes(kube_static: Kube) -> None:
    k = kube_static
    await k.server.add_object(builders.pod("old"))
    w = watch.Watch()
    stream = w.stream(k.core.list_namespaced_pod, "default", timeout_seconds=5)
    task = asyncio.create_task(collect(stream, 4))
    await asyncio.sleep(0.2)
    await k.server.add_object(builders.pod("new"))
    await k.core.patch_namespaced_pod("new", "default", {"metadata": {"labels": {"x": "1"}}})
    await k.core.delete_namespaced_pod("new", "default")  # unscheduled: deleted at once
    events = await task
    w.stop()
    assert events == [("ADDED", "old"), ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new")]
    record = next(r for r in k.server.requests if r.verb == "watch")
    assert record.query["watch"] == "True"  # what kubernetes_asyncio sends


async def test_watch_from_resource_version_replays_only_later_events(kube_static: Kube) -> None:
    k = kube_static
    await k.server.add_object(builders.pod("before"))
    listed = await k.core.list_namespaced_pod("default")
    await k.server.add_object(builders.pod("after"))
    stream = watch.Watch().stream(
        k.core.list_namespaced_pod,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )
    assert await collect(stream, 1) == [("ADDED", "after")]


async def test_watch_with_selectors_sees_objects_enter_and_leave(kube_static: Kube) -> None:
    k = kube_static
    await k.server.add_object(builders.pod("p", labels={"app": "web"}, node_name="n1"))
    await k.server.add_object(builders.pod("q", labels={"app": "web"}, node_name="n2"))
    stream = watch.Watch().stream(
        k.core.list_namespaced_pod,
        "default",
        label_selector="app=web",
        field_selector="spec.nodeName=n1",
        timeout_seconds=5,
    )
    task = asyncio.create_task(collect(stream, 3))
    await asyncio.sleep(0.2)
    await k.core.patch_namespaced_pod("q", "default", {"metadata": {"labels": {"z": "1"}}})
    await k.core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "db"}}})
    await k.core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "web"}}})
    assert await task == [("ADDED", "p"), ("DELETED", "p"), ("ADDED", "p")]


async def test_watch_timeout_seconds_ends_the_stream(kube_static: Kube) -> None:
    started = time.monotonic()
    events = [e async for e in watch.Watch().stream(kube_static.core.list_node, timeout_seconds=1)]
    assert events == []
    assert 0.9 < time.monotonic() - started < 3


async def test_raw_watch_spellings(kube_static: Kube) -> None:
    k = kube_static
    await k.server.add_node("n1")
    for spelling in ("true", "1"):
        response = await k.api.call_api(
            "/api/v1/nodes",
            "GET",
            query_params=[("watch", spelling), ("timeoutSeconds", "1")],
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        line = await response.content.readline()
        assert b'"type":"ADDED"' in line and b'"name":"n1"' in line
        response.close()


async def test_bookmarks(kube_static: Kube) -> None:
    kube_static.server.bookmark_interval = 0.1
    stream = watch.Watch().stream(
        kube_static.core.list_node, allow_watch_bookmarks=True, timeout_seconds=2
    )
    first = await asyncio.wait_for(stream.__anext__(), 2)
    assert first["type"] == "BOOKMARK"
    assert int(first["raw_object"]["metadata"]["resourceVersion"]) > 0
    stream.stop()


async def test_watch_of_deployments_in_a_group(kube_static: Kube) -> None:
    k = kube_static
    stream = watch.Watch().stream(k.apps.list_deployment_for_all_namespaces, timeout_seconds=3)
    task = asyncio.create_task(collect(stream, 1))
    await asyncio.sleep(0.2)
    await k.server.add_object(builders.deployment("web"))
    assert await task == [("ADDED", "web")]
