"""The emulator's own admin API under `/devstack/` (not Kubernetes): seed, inspect and steer a
server that runs in another process. JSON in, JSON out; requests here are not recorded.

| method and path | body / query | answer |
|---|---|---|
| `GET /devstack/stats` | | counts (objects, pods by phase), controller and loop figures |
| `POST /devstack/seed` | `{"shape": {...}, "machines": [...], "wait": true}` | created, seconds |
| `POST /devstack/objects` | `{"items": [manifest, ...]}` | created, errors |
| `POST /devstack/wait` | `{"pods_ready": N, "quiet_seconds": s, "timeout": s}` | ok, seconds |
| `GET /devstack/requests` | `?since=N` (a sequence number) | recorded requests after N |
| `GET /devstack/requests/summary` | | count per "verb resource[/sub] status" |
| `POST /devstack/controllers/run-once` | | |
| `POST /devstack/nodes/{name}/ready` | `{"ready": false}` | the node |
| `DELETE /devstack/nodes/{name}` | | the machine is gone: node deleted, pods GC'd at once |
| `POST /devstack/profile/start`, `.../stop` | `?sort=tottime&limit=40` | cProfile of the loop |
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import gc
import io
import json
import pstats
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors, resources, seeding
from .errors import JSON, ApiError
from .objects import meta

if TYPE_CHECKING:
    from .server import KubeApiServer

PREFIX = "devstack"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


async def _body(request: web.Request) -> JSON:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.bad_request(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.bad_request("the body must be a JSON object")
    return body


def stats(server: KubeApiServer) -> JSON:
    store, manager = server.store, server.controllers
    return {
        "resourceVersion": store.resource_version,
        "objects": {r.key: store.count(r) for r in resources.RESOURCES if store.count(r)},
        "pods": {k: v for k, v in sorted(store.pod_counts.items()) if v},
        "scheduler": {
            "queued": len(manager.scheduler.queue),
            "parked": sum(len(keys) for keys in manager.scheduler.parked.values()),
            "attempts": manager.scheduler.attempts,
            "signatures": len(manager.scheduler.signatures),
        },
        "kubelet": {"timers": len(manager.kubelet.timers)},
        "controllers": {
            "enabled": server.controllers_enabled,
            "passes": manager.passes,
            "busy_seconds": round(manager.busy_seconds, 3),
            "slowest_pass_seconds": round(manager.slowest_pass, 3),
            "step_seconds": {k: round(v, 3) for k, v in manager.step_seconds.items()},
        },
        "loop": {"max_lag_seconds": round(server.take_max_lag(), 4)},
        "gc": {
            "pause_seconds": {str(g): round(t, 3) for g, t in sorted(server.gc_pauses.items())},
            "max_pause_seconds": round(server.gc_max_pause, 4),
            "frozen": gc.get_freeze_count(),
        },
        "requests": {"total": server.request_seq},
    }


def freeze() -> None:
    """Move everything alive now out of the cyclic GC's sight (gc.freeze): a seeded store is
    millions of acyclic JSON objects that full collections would otherwise walk every time
    (pauses of 0.5 s at 20,000 pods)."""
    gc.collect()
    gc.freeze()


def create_all(server: KubeApiServer, items: list[Any]) -> JSON:
    created, failed = 0, []
    for item in items:
        try:
            res = resources.for_object(item)
            namespace = meta(item).get("namespace") or ("default" if res.namespaced else None)
            server.registry.create(res, item, namespace)
            created += 1
        except (ApiError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, ApiError) and exc.code == 409 and item.get("kind") == "Namespace":
                continue  # the system namespaces exist already
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            failed.append({"name": meta(item).get("name"), "error": message})
    return {"created": created, "errors": failed}


async def wait(server: KubeApiServer, body: JSON) -> JSON:
    """Until at least `pods_ready` pods are Ready and the store has been quiet (no write) for
    `quiet_seconds`, or `timeout` (default 300 s)."""
    started = time.monotonic()
    deadline = started + float(body.get("timeout", 300))
    want = int(body.get("pods_ready", 0))
    quiet = float(body.get("quiet_seconds", 0))
    store = server.store
    last_rv, quiet_since = store.resource_version, time.monotonic()
    while True:
        now = time.monotonic()
        if store.resource_version != last_rv:
            last_rv, quiet_since = store.resource_version, now
        if store.pod_counts.get("ready", 0) >= want and now - quiet_since >= quiet:
            return {"ok": True, "seconds": round(now - started, 3), "stats": stats(server)}
        if now > deadline:
            return {"ok": False, "seconds": round(now - started, 3), "stats": stats(server)}
        await asyncio.sleep(0.05)


async def handle(server: KubeApiServer, request: web.Request, parts: list[str]) -> web.Response:
    try:
        return await _route(server, request, parts[1:])
    except ApiError as exc:
        return _json(exc.status(), exc.code)
    except (ValueError, TypeError, KeyError) as exc:
        return _json(errors.bad_request(str(exc)).status(), 400)


async def _route(server: KubeApiServer, request: web.Request, parts: list[str]) -> web.Response:
    method = request.method
    if parts == ["stats"] and method == "GET":
        return _json(stats(server))
    if parts == ["seed"] and method == "POST":
        body = await _body(request)
        shape = seeding.Shape.from_json(body.get("shape") or {})
        machines = body.get("machines")
        listed = [seeding.Machine(**m) for m in machines] if machines is not None else None
        started = time.monotonic()
        result = create_all(server, seeding.manifests(shape, listed))
        result.update(expected_pods=shape.total_pods, seconds=round(time.monotonic() - started, 3))
        if body.get("wait"):
            waited = await wait(
                server, {"pods_ready": shape.total_pods, "timeout": body.get("timeout", 300)}
            )
            result.update(ready=waited["ok"], seconds=round(time.monotonic() - started, 3))
        if server.freeze_after_seed:
            freeze()
        return _json(result)
    if parts == ["objects"] and method == "POST":
        items = (await _body(request)).get("items") or []
        return _json(create_all(server, list(items)))
    if parts == ["wait"] and method == "POST":
        return _json(await wait(server, await _body(request)))
    if parts == ["requests"] and method == "GET":
        since = int(request.query.get("since", "0"))
        start = max(0, since - server.requests_trimmed)
        items = [dataclasses.asdict(r) for r in server.requests[start:]]
        return _json({"next": server.request_seq, "items": items})
    if parts == ["requests", "summary"] and method == "GET":
        return _json(dict(sorted(server.request_summary.items())))
    if parts == ["controllers", "run-once"] and method == "POST":
        await server.run_controllers_once()
        return _json({"ok": True})
    if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "ready" and method == "POST":
        ready = bool((await _body(request)).get("ready", True))
        return _json(await server.set_node_ready(parts[1], ready))
    if parts == ["profile", "start"] and method == "POST":
        server.profiler = cProfile.Profile()
        server.profiler.enable()
        return _json({"ok": True})
    if parts == ["profile", "stop"] and method == "POST" and server.profiler is not None:
        profiler, server.profiler = server.profiler, None
        profiler.disable()
        out = io.StringIO()
        report = pstats.Stats(profiler, stream=out)
        report.sort_stats(request.query.get("sort", "cumulative"))
        report.print_stats(int(request.query.get("limit", "40")))
        return web.Response(text=out.getvalue())
    if len(parts) == 2 and parts[0] == "nodes" and method == "DELETE":
        await server.delete_node(parts[1])
        return _json({"ok": True})
    raise errors.not_found_path()
