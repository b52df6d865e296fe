"""The HTTP front: routing, verbs, watch streams; `KubeApiServer` and its thread wrapper."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import cProfile
import gc
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from . import admin, builders, errors, resources
from .controllers import ControllerManager
from .errors import JSON, ApiError
from .nodes import collect_orphan_pods
from .objects import clone, meta, set_condition
from .pdb import evict
from .registry import DeleteOptions, Registry
from .resources import BY_PATH, Resource
from .selectors import (
    FieldRequirement,
    Requirement,
    matches_all,
    parse_field_selector,
    parse_label_selector,
)
from .store import Store, WatchEvent

log = logging.getLogger(__name__)
T = TypeVar("T")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    verb: str
    time: float
    resource: str | None = None  # Resource.key, e.g. "pods", "leases.coordination.k8s.io"
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    status: int = 0


@dataclass
class Route:
    res: Resource
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool = False


@dataclass
class Filter:
    """What a list or watch request selects."""

    namespace: str | None
    labels: list[Requirement]
    fields: list[FieldRequirement]
    res: Resource
    name: str | None = None

    def matches(self, obj: JSON) -> bool:
        m = meta(obj)
        if self.namespace is not None and m.get("namespace") != self.namespace:
            return False
        if self.name is not None and m.get("name") != self.name:
            return False
        return matches_all(self.labels, m.get("labels") or {}) and all(
            f.matches(self.res, obj) for f in self.fields
        )


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _error(exc: ApiError) -> web.Response:
    response = _json(exc.status(), exc.code)
    if exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class _Discovery(Exception):
    def __init__(self, body: Any) -> None:
        self.body = body


def parse_path(path: str, server_address: str) -> Route:
    """Map a URL path to a resource route; discovery documents come back as _Discovery."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise _Discovery({"paths": ["/api", "/api/v1", "/apis", "/version"]})
    if parts[0] == "version" and len(parts) == 1:
        raise _Discovery(resources.VERSION_INFO)
    if parts[0] == "api":
        if len(parts) == 1:
            raise _Discovery(resources.api_versions(server_address))
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            raise _Discovery(resources.api_group_list())
        if len(parts) == 2:
            if parts[1] not in resources.groups():
                raise errors.not_found_path()
            raise _Discovery(resources.api_group(parts[1]))
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.not_found_path()
    if not rest:
        doc = resources.resource_list(group, version)
        if doc is None:
            raise errors.not_found_path()
        raise _Discovery(doc)
    return _resource_route(group, version, rest)


def _resource_route(group: str, version: str, rest: list[str]) -> Route:
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        inner = BY_PATH.get((group, version, rest[2]))
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    res = BY_PATH.get((group, version, rest[0])) if rest else None
    if res is None or len(rest) > 3:
        raise errors.not_found_path()
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and not (
        (sub == "status" and res.has_status) or (sub == "eviction" and res.key == "pods")
    ):
        raise errors.not_found_path()
    if res.namespaced and name is not None and namespace is None:
        raise errors.not_found_path()
    return Route(res, namespace, name, sub, watch_path)


def _verb(method: str, route: Route, query: dict[str, str]) -> str:
    if route.subresource == "eviction":
        return "evict"
    if method == "GET":
        if route.watch_path or _truthy(query.get("watch")):
            return "watch"
        return "get" if route.name else "list"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


class KubeApiServer:
    """A Kubernetes API server on 127.0.0.1, for tests, the demo and benchmarks (in this
    process, in a thread with KubeApiServerThread, or alone: `python -m devstack.kube`).

    `record_limit`: keep at most about that many recorded requests (the oldest half goes when
    it is exceeded); None keeps them all. `freeze_after_seed`: gc.freeze() the process heap
    after an admin seed (for a server alone in its process). `status_interval`: the
    controllers write a ReplicaSet's or Deployment's status at most that often (a change
    inside the interval is written when it ends); PDB status is always written at once."""

    def __init__(
        self,
        *,
        controllers: bool = True,
        tick: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
        record_limit: int | None = None,
        freeze_after_seed: bool = False,
        status_interval: float = 0.5,
    ) -> None:
        self.store = Store()
        self.registry = Registry(self.store)
        self.controllers = ControllerManager(self.registry, tick, status_interval)
        self.controllers_enabled = controllers
        self.tick = tick
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.record_limit = record_limit
        self.freeze_after_seed = freeze_after_seed  # gc.freeze() after an admin seed
        self.request_seq = 0  # requests recorded so far (also those trimmed away)
        self.requests_trimmed = 0
        self.request_summary: dict[str, int] = {}  # "verb resource[/sub] status" -> count
        self.url = ""
        self.port = port
        self.bookmark_interval = 1.0  # seconds between BOOKMARKs when a watch asks for them
        # SelfSubjectAccessReview answers: everything is allowed but these (verb, group,
        # resource, subresource, namespace or "" for every one), which a test adds to take a
        # permission away (`deny`), and but a review without one of the names a Role's rule
        # lists (`only_named`: (verb, group, resource) -> resourceNames).
        self.denied: set[tuple[str, str, str, str, str]] = set()
        self.named: dict[tuple[str, str, str], frozenset[str]] = {}
        self._runner: web.AppRunner | None = None
        self._controller_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._max_lag = 0.0
        self.profiler: cProfile.Profile | None = None  # the admin API's /devstack/profile
        self.gc_pauses: dict[int, float] = {}  # generation -> seconds (while serving)
        self.gc_max_pause = 0.0
        self._gc_started = 0.0

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        for name in SYSTEM_NAMESPACES:
            if self.store.get_ref(resources.BY_KEY["namespaces"], None, name) is None:
                self.registry.create(resources.BY_KEY["namespaces"], builders.namespace(name), None)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        await web.SockSite(self._runner, sock, backlog=1024).start()
        if self.controllers_enabled:
            self._controller_task = asyncio.create_task(self.controllers.run())
        self._lag_task = asyncio.create_task(self._watch_lag())
        gc.callbacks.append(self._gc_callback)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc_callback)
        for task in (self._controller_task, self._lag_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._controller_task = self._lag_task = None
        self.store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KubeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_kubeconfig(self, path: str | Path) -> Path:
        return write_kubeconfig(self.url, path)

    # ---- helpers for tests and the demo (call them in the server's loop) ------------------

    async def add_object(self, obj: JSON) -> JSON:
        res = resources.for_object(obj)
        namespace = meta(obj).get("namespace") or ("default" if res.namespaced else None)
        return clone(self.registry.create(res, obj, namespace))

    async def add_objects(self, *objs: JSON) -> list[JSON]:
        return [await self.add_object(o) for o in objs]

    async def add_node(self, name: str, **kwargs: Any) -> JSON:
        """A Ready node; kwargs as `builders.node` (instance_id, zone, labels, taints...)."""
        return await self.add_object(builders.node(name, **kwargs))

    async def add_namespace(self, name: str) -> JSON:
        return await self.add_object(builders.namespace(name))

    async def delete_node(self, name: str) -> None:
        """The machine is gone: the node object goes, and pod GC deletes its pods at once."""
        self.registry.delete(resources.BY_KEY["nodes"], None, name, DeleteOptions())
        collect_orphan_pods(self.registry, [name])

    async def set_node_ready(self, name: str, ready: bool) -> JSON:
        nodes = resources.BY_KEY["nodes"]
        node = self.registry.require(nodes, None, name)
        new = clone(node)
        set_condition(
            new,
            "Ready",
            "True" if ready else "False",
            "KubeletReady" if ready else "NodeStatusUnknown",
        )
        return clone(self.registry.commit(nodes, node, new))

    async def get_object(
        self, resource: str, name: str, namespace: str | None = None
    ) -> JSON | None:
        return self.store.get(resource, name, namespace)

    async def list_objects(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[JSON]:
        return self.store.list(
            resource, namespace, label_selector=label_selector, field_selector=field_selector
        )

    async def patch_object(
        self,
        resource: str,
        name: str,
        patch: JSON,
        namespace: str | None = None,
        *,
        content_type: str = "application/merge-patch+json",
        subresource: str | None = None,
    ) -> JSON:
        res = resources.resolve(resource)
        result = self.registry.patch(
            res, namespace, name, content_type, json.dumps(patch).encode(), subresource=subresource
        )
        return clone(result)

    async def delete_object(
        self,
        resource: str,
        name: str,
        namespace: str | None = None,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
    ) -> JSON:
        res = resources.resolve(resource)
        opts = DeleteOptions(grace_period=grace_period, propagation=propagation)
        return clone(self.registry.delete(res, namespace, name, opts))

    async def run_controllers_once(self) -> None:
        self.controllers.run_once()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until `predicate()` (evaluated in this loop) holds, or raise TimeoutError."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            await asyncio.sleep(min(self.tick, 0.02))

    async def _watch_lag(self, period: float = 0.05) -> None:
        """How late the loop wakes up: the longest stall since `take_max_lag` was called."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            self._max_lag = max(self._max_lag, loop.time() - due)

    def _gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        generation = info.get("generation", 0)
        self.gc_pauses[generation] = self.gc_pauses.get(generation, 0.0) + took
        self.gc_max_pause = max(self.gc_max_pause, took)

    def take_max_lag(self) -> float:
        lag, self._max_lag = self._max_lag, 0.0
        return lag

    # ---- HTTP ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(f"/{admin.PREFIX}/"):
            return await admin.handle(self, request, [p for p in request.path.split("/") if p])
        query = dict(request.query)
        record = RecordedRequest(
            request.method, request.path, query, request.content_type, "unknown", time.monotonic()
        )
        self._record(record)
        try:
            response = await self._route(request, record)
        except ApiError as exc:
            response = _error(exc)
        except Exception as exc:  # answer like the real server: a Status, never a traceback
            log.exception("internal error on %s %s", request.method, request.path)
            response = _error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))
        record.status = response.status
        what = record.resource or "-"
        if record.subresource:
            what = f"{what}/{record.subresource}"
        summary = f"{record.verb} {what} {record.status}"
        self.request_summary[summary] = self.request_summary.get(summary, 0) + 1
        return response

    def _record(self, record: RecordedRequest) -> None:
        self.requests.append(record)
        self.request_seq += 1
        if self.record_limit is not None and len(self.requests) > self.record_limit:
            drop = len(self.requests) // 2
            del self.requests[:drop]
            self.requests_trimmed += drop

    async def _route(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts in (["healthz"], ["readyz"], ["livez"]):
            record.verb = "get"
            return web.Response(text="ok")
        if parts == ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]:
            record.verb, record.resource = "create", "selfsubjectaccessreviews"
            if request.method != "POST":
                raise errors.method_not_allowed()
            return _json(self._access_review(await self._body(request)), 201)
        try:
            route = parse_path(request.path, f"127.0.0.1:{self.port}")
        except _Discovery as doc:
            record.verb = "discovery"
            if request.method != "GET":
                raise errors.method_not_allowed() from None
            return _json(doc.body)
        record.verb = _verb(request.method, route, record.query)
        record.resource, record.namespace = route.res.key, route.namespace
        record.name, record.subresource = route.name, route.subresource
        return await self._dispatch(request, route, record.verb)

    def deny(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        subresource: str = "",
        namespace: str = "",
    ) -> None:
        """Take one permission away from every client (SelfSubjectAccessReview says no), in
        one namespace (then also a review for all namespaces is refused) or, "", in all."""
        self.denied.add((verb, group, resource, subresource, namespace))

    def only_named(self, verb: str, resource: str, names: set[str], *, group: str = "") -> None:
        """Grant the permission only on these objects, as a Role rule with resourceNames
        does: a review that names none of them (or no object at all) is refused."""
        self.named[(verb, group, resource)] = frozenset(names)

    def _access_review(self, body: JSON) -> JSON:
        """What kube-apiserver returns for a SelfSubjectAccessReview: the spec echoed, and
        status.allowed. Only resourceAttributes are answered (nonResourceAttributes: allowed)."""
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        key = (
            str(attrs.get("verb", "")),
            str(attrs.get("group", "")),
            str(attrs.get("resource", "")),
            str(attrs.get("subresource", "")),
        )
        namespace = str(attrs.get("namespace", ""))
        allowed = not any(
            denied[:4] == key and (not denied[4] or not namespace or denied[4] == namespace)
            for denied in self.denied
        )
        names = self.named.get(key[:3])
        if names is not None and str(attrs.get("name", "")) not in names:
            allowed = False
        status: JSON = {"allowed": allowed}
        if not allowed:
            status["reason"] = "denied by the emulator (KubeApiServer.deny)"
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": None},
            "spec": body.get("spec") or {},
            "status": status,
        }

    async def _dispatch(self, request: web.Request, route: Route, verb: str) -> web.StreamResponse:
        query = dict(request.query)
        dry_run = bool(query.get("dryRun"))
        res, ns, name = route.res, route.namespace, route.name
        if verb == "watch":
            return await self._watch(request, route, query)
        if verb == "list":
            return self._list(route, query)
        if verb == "get" and name is not None:
            return _json(self.registry.require(res, ns, name))
        if verb == "evict" and request.method == "POST" and name is not None and ns is not None:
            status = evict(self.registry, ns, name, await self._body(request), dry_run=dry_run)
            return _json(status, 201)
        if verb == "create" and route.name is None:
            if res.namespaced and ns is None:
                raise errors.method_not_allowed()
            return _json(
                self.registry.create(res, await self._body(request), ns, dry_run=dry_run), 201
            )
        if name is None:
            if verb == "deletecollection":
                return self._delete_collection(route, query, await self._optional_body(request))
            raise errors.method_not_allowed()
        if verb == "update":
            return _json(
                self.registry.update(
                    res,
                    ns,
                    name,
                    await self._body(request),
                    subresource=route.subresource,
                    dry_run=dry_run,
                )
            )
        if verb == "patch":
            raw = await request.read()
            return _json(
                self.registry.patch(
                    res,
                    ns,
                    name,
                    request.content_type,
                    raw,
                    subresource=route.subresource,
                    dry_run=dry_run,
                )
            )
        if verb == "delete" and route.subresource is None:
            opts = DeleteOptions.parse(await self._optional_body(request), query)
            return _json(self.registry.delete(res, ns, name, opts))
        raise errors.method_not_allowed()

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc

    async def _optional_body(self, request: web.Request) -> Any:
        return await self._body(request) if request.can_read_body else None

    # ---- list ----------------------------------------------------------------------------

    def _filter(self, route: Route, query: dict[str, str]) -> Filter:
        return Filter(
            namespace=route.namespace if route.res.namespaced else None,
            labels=parse_label_selector(query.get("labelSelector", "")),
            fields=parse_field_selector(query.get("fieldSelector", ""), route.res),
            res=route.res,
            name=route.name,
        )

    def _candidates(self, flt: Filter) -> Iterable[JSON]:
        """Objects in key order; pods by spec.nodeName come from the node index, `=`/`in`
        label requirements from the label index."""
        return self.store.candidates(flt.res, flt.namespace, flt.labels, flt.fields)

    def _list(self, route: Route, query: dict[str, str]) -> web.Response:
        flt = self._filter(route, query)
        items = [o for o in self._candidates(flt) if flt.matches(o)]
        items, list_meta = self._paginate(items, query)
        head = {
            "kind": f"{route.res.kind}List",
            "apiVersion": route.res.api_version,
            "metadata": list_meta,
        }
        prefix = json.dumps(head, separators=(",", ":"))[:-1].encode()
        body = b"".join(
            [prefix, b',"items":[', b",".join(self.store.item_bytes(o) for o in items), b"]}"]
        )
        return web.Response(body=body, content_type="application/json")

    def _paginate(self, items: list[JSON], query: dict[str, str]) -> tuple[list[JSON], JSON]:
        list_meta: JSON = {"resourceVersion": str(self.store.resource_version)}
        token = query.get("continue")
        if token:
            try:
                start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise errors.bad_request(f"invalid continue token: {exc}") from exc
            items = [
                o for o in items if [meta(o).get("namespace") or "", meta(o).get("name")] > start
            ]
        try:
            limit = int(query.get("limit") or 0)
        except ValueError as exc:
            raise errors.bad_request("invalid limit") from exc
        if 0 < limit < len(items):
            last = items[limit - 1]
            key = [meta(last).get("namespace") or "", meta(last).get("name")]
            next_token = base64.urlsafe_b64encode(json.dumps({"start": key}).encode()).decode()
            list_meta.update({"continue": next_token, "remainingItemCount": len(items) - limit})
            items = items[:limit]
        return items, list_meta

    def _delete_collection(self, route: Route, query: dict[str, str], body: Any) -> web.Response:
        flt = self._filter(route, query)
        opts = DeleteOptions.parse(body, query)
        deleted = []
        for obj in list(self._candidates(flt)):
            if flt.matches(obj):
                m = meta(obj)
                result = self.registry.delete(route.res, m.get("namespace"), str(m["name"]), opts)
                deleted.append(result if result.get("kind") != "Status" else obj)
        return _json(
            {
                "kind": f"{route.res.kind}List",
                "apiVersion": route.res.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            }
        )

    # ---- watch ---------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, route: Route, query: dict[str, str]
    ) -> web.StreamResponse:
        flt = self._filter(route, query)
        since = self._since(query.get("resourceVersion"))
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            watcher, backlog = self.store.subscribe(route.res, flt.namespace, since)
        except ApiError as exc:
            await response.prepare(request)
            await response.write(_event_line("ERROR", exc.status()))
            return response
        initial = [] if since is not None else [o for o in self._candidates(flt) if flt.matches(o)]
        await response.prepare(request)
        try:
            for obj in initial:
                await response.write(_event_line("ADDED", obj))
            for event in backlog:
                await self._send(response, flt, event)
            await self._pump(response, flt, watcher.queue, timeout, bookmarks, route.res)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(watcher)
        return response

    @staticmethod
    def _since(value: str | None) -> int | None:
        if not value or value == "0":
            return None
        try:
            return int(value)
        except ValueError as exc:
            raise errors.bad_request(f"invalid resource version: {value}") from exc

    async def _pump(
        self,
        response: web.StreamResponse,
        flt: Filter,
        queue: asyncio.Queue[WatchEvent | None],
        seconds: float | None,
        bookmarks: bool,
        res: Resource,
    ) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            wait = self.bookmark_interval if bookmarks else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            try:
                event = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if bookmarks:
                    await response.write(_bookmark(res, self.store.resource_version))
                continue
            if event is None:
                return
            await self._send(response, flt, event)

    @staticmethod
    async def _send(response: web.StreamResponse, flt: Filter, event: WatchEvent) -> None:
        translated = translate(event, flt)
        if translated is not None:
            await response.write(_event_line(*translated))


def translate(event: WatchEvent, flt: Filter) -> tuple[str, JSON] | None:
    """An event as a filtered watcher sees it: objects entering the selection are ADDED,
    objects leaving it DELETED (with their previous state, as the watch cache does)."""
    now = flt.matches(event.obj)
    if event.type != "MODIFIED":
        return (event.type, event.obj) if now else None
    before = event.old is not None and flt.matches(event.old)
    if now:
        return ("MODIFIED" if before else "ADDED", event.obj)
    if before and event.old is not None:
        old = dict(event.old)
        old["metadata"] = dict(meta(event.old), resourceVersion=str(event.rv))
        return ("DELETED", old)
    return None


def _event_line(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _bookmark(res: Resource, rv: int) -> bytes:
    obj = {
        "kind": res.kind,
        "apiVersion": res.api_version,
        "metadata": {"resourceVersion": str(rv)},
    }
    return _event_line("BOOKMARK", obj)


def write_kubeconfig(url: str, path: str | Path) -> Path:
    """A kubeconfig (JSON is YAML) that kubernetes_asyncio and kubectl load unchanged."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devstack", "cluster": {"server": url}}],
        "users": [{"name": "devstack", "user": {"token": "devstack"}}],
        "contexts": [
            {
                "name": "devstack",
                "context": {"cluster": "devstack", "user": "devstack", "namespace": "default"},
            }
        ],
        "current-context": "devstack",
        "preferences": {},
    }
    target = Path(path)
    target.write_text(json.dumps(config, indent=2) + "\n")
    return target


class KubeApiServerThread:
    """A KubeApiServer in its own thread and event loop (for a service run as a subprocess).

    Touch the server only through `call`, which runs a coroutine function in its loop."""

    def __init__(self, *, controllers: bool = True, tick: float = 0.05) -> None:
        self.server = KubeApiServer(controllers=controllers, tick=tick)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kube-api-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the Kubernetes API server did not start") from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def call(
        self, coro_fn: Callable[..., Awaitable[T]], *args: Any, timeout: float = 30.0, **kwargs: Any
    ) -> T:
        if self._loop is None:
            raise RuntimeError("not started")

        async def run() -> T:
            return await coro_fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def write_kubeconfig(self, path: str | Path) -> Path:
        return write_kubeconfig(self.url, path)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self.call(self.server.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> KubeApiServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
