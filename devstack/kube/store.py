"""The object store: one global resourceVersion counter, indexes, watch history and watchers.

Stored dicts are never mutated in place: every write stores a new dict. That lets watch events
and list responses share them without copying. Callers outside the package get copies.
Everything here runs in the server's event loop only.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import errors, resources
from .errors import JSON
from .resources import Resource
from .selectors import parse_field_selector, parse_label_selector

HISTORY = 20_000  # watch events kept for `watch?resourceVersion=N`


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    resource: str  # Resource.key
    type: str  # ADDED | MODIFIED | DELETED
    obj: JSON
    old: JSON | None = None


@dataclass(eq=False)
class Watcher:
    resource: str
    namespace: str | None
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


def meta(obj: JSON) -> JSON:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


def ref_key(ns: str | None, name: str) -> tuple[str, str]:
    return (ns or "", name)


class Store:
    def __init__(self) -> None:
        self._rv = 1
        self._objects: dict[str, dict[str, dict[str, JSON]]] = {
            r.key: {} for r in resources.RESOURCES
        }
        self._by_uid: dict[str, tuple[str, str, str]] = {}
        self._pods_by_node: dict[str, set[tuple[str, str]]] = {}
        self._by_owner: dict[str, set[tuple[str, str, str]]] = {}
        self._json_cache: dict[str, tuple[str, bytes]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=HISTORY)
        self._watchers: set[Watcher] = set()
        # For the kubelet, by pod uid: time.monotonic() of the first graceful deletion request
        # (SIGTERM) and of the grace period's end (SIGKILL).
        self.deleted_at: dict[str, tuple[float, float]] = {}
        self.closed = False

    # ---- reading -------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get_ref(self, res: Resource, namespace: str | None, name: str) -> JSON | None:
        """The stored dict itself: read it, never mutate it."""
        return self._objects[res.key].get(namespace or "", {}).get(name)

    def iter_refs(self, res: Resource, namespace: str | None = None) -> Iterator[JSON]:
        table = self._objects[res.key]
        if namespace is not None:
            yield from table.get(namespace, {}).values()
            return
        for objs in table.values():
            yield from objs.values()

    def sorted_refs(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        """In etcd key order: namespace, then name."""
        table = self._objects[res.key]
        spaces = [namespace] if namespace is not None else sorted(table)
        out: list[JSON] = []
        for ns in spaces:
            objs = table.get(ns or "", {})
            out.extend(objs[n] for n in sorted(objs))
        return out

    def pods_on_node(self, node: str) -> list[JSON]:
        pods = resources.BY_KEY["pods"]
        refs = (self.get_ref(pods, ns, name) for ns, name in self._pods_by_node.get(node, ()))
        return [p for p in refs if p is not None]

    def nodes_with_pods(self) -> list[str]:
        return [n for n, pods in self._pods_by_node.items() if pods]

    def by_uid(self, uid: str) -> JSON | None:
        where = self._by_uid.get(uid)
        if where is None:
            return None
        return self.get_ref(resources.BY_KEY[where[0]], where[1], where[2])

    def exists_uid(self, uid: str) -> bool:
        return uid in self._by_uid

    def dependents(self, owner_uid: str) -> list[tuple[Resource, JSON]]:
        out = []
        for key, ns, name in self._by_owner.get(owner_uid, ()):
            res = resources.BY_KEY[key]
            obj = self.get_ref(res, ns, name)
            if obj is not None:
                out.append((res, obj))
        return out

    def owner_uids(self) -> list[str]:
        return [uid for uid, deps in self._by_owner.items() if deps]

    def item_bytes(self, obj: JSON) -> bytes:
        """An object as a list item (no kind/apiVersion), cached per resourceVersion."""
        m = meta(obj)
        uid, rv = str(m.get("uid", "")), str(m.get("resourceVersion", ""))
        cached = self._json_cache.get(uid)
        if cached is not None and cached[0] == rv:
            return cached[1]
        body = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        data = json.dumps(body, separators=(",", ":")).encode()
        if uid:
            self._json_cache[uid] = (rv, data)
        return data

    # ---- public, copying API for tests and the demo ---------------------------------------

    def get(self, resource: str, name: str, namespace: str | None = None) -> JSON | None:
        res = resources.resolve(resource)
        obj = self.get_ref(res, namespace if res.namespaced else None, name)
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> builtins.list[JSON]:
        res = resources.resolve(resource)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, res)
        out = []
        for obj in self.sorted_refs(res, namespace if res.namespaced else None):
            obj_labels = meta(obj).get("labels") or {}
            if all(r.matches(obj_labels) for r in labels) and all(
                f.matches(res, obj) for f in fields
            ):
                out.append(copy.deepcopy(obj))
        return out

    # ---- writing (registry.py decides *what* to write) ------------------------------------

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def put(self, res: Resource, obj: JSON) -> JSON:
        """Store a new version of an object (created or modified), bumping its resourceVersion."""
        m = meta(obj)
        ns, name = (m.get("namespace") or "") if res.namespaced else "", str(m["name"])
        old = self.get_ref(res, ns, name)
        rv = self.next_rv()
        m["resourceVersion"] = str(rv)
        self._objects[res.key].setdefault(ns, {})[name] = obj
        self._index(res, old, obj)
        self._emit(WatchEvent(rv, res.key, "MODIFIED" if old is not None else "ADDED", obj, old))
        return obj

    def remove(self, res: Resource, obj: JSON, state: JSON | None = None) -> JSON:
        """Delete an object for good; the DELETED event carries `state` (default: the stored
        object) with a new resourceVersion."""
        m = meta(obj)
        ns, name = (m.get("namespace") or "") if res.namespaced else "", str(m["name"])
        old = self._objects[res.key].get(ns, {}).pop(name, None)
        if old is None:
            raise errors.not_found(res.group, res.plural, name)
        rv = self.next_rv()
        final = dict(state if state is not None else old)
        final["metadata"] = dict(meta(final), resourceVersion=str(rv))
        self._index(res, old, None)
        uid = str(meta(old).get("uid", ""))
        self._json_cache.pop(uid, None)
        self.deleted_at.pop(uid, None)
        self._emit(WatchEvent(rv, res.key, "DELETED", final, old))
        return final

    def _index(self, res: Resource, old: JSON | None, new: JSON | None) -> None:
        where = new if new is not None else old
        assert where is not None
        m = meta(where)
        ns, name = str(m.get("namespace") or ""), str(m.get("name"))
        uid = str(m.get("uid", ""))
        if new is None:
            self._by_uid.pop(uid, None)
        else:
            self._by_uid[uid] = (res.key, ns, name)
        if res.key == "pods":
            self._reindex_node(old, new, (ns, name))
        self._reindex_owners(old, new, (res.key, ns, name))

    def _reindex_node(self, old: JSON | None, new: JSON | None, key: tuple[str, str]) -> None:
        before = ((old or {}).get("spec") or {}).get("nodeName")
        after = ((new or {}).get("spec") or {}).get("nodeName")
        if before == after:
            return
        if before:
            self._pods_by_node.get(before, set()).discard(key)
        if after:
            self._pods_by_node.setdefault(after, set()).add(key)

    def _reindex_owners(
        self, old: JSON | None, new: JSON | None, key: tuple[str, str, str]
    ) -> None:
        before = {str(r.get("uid")) for r in meta(old or {}).get("ownerReferences") or []}
        after = {str(r.get("uid")) for r in meta(new or {}).get("ownerReferences") or []}
        for uid in before - after:
            owned = self._by_owner.get(uid)
            if owned is not None:
                owned.discard(key)
                if not owned:
                    del self._by_owner[uid]
        for uid in after - before:
            self._by_owner.setdefault(uid, set()).add(key)

    # ---- watch ---------------------------------------------------------------------------

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.resource == event.resource:
                watcher.queue.put_nowait(event)

    def subscribe(
        self, res: Resource, namespace: str | None, since: int | None
    ) -> tuple[Watcher, builtins.list[WatchEvent]]:
        """Register a watcher; with `since`, also return the events after that version."""
        backlog: builtins.list[WatchEvent] = []
        if since is not None and since < self._rv:
            oldest = self._history[0].rv if self._history else self._rv + 1
            if len(self._history) == self._history.maxlen and since < oldest - 1:
                raise errors.gone(f"too old resource version: {since} ({oldest - 1})")
            backlog = [e for e in self._history if e.rv > since and e.resource == res.key]
        watcher = Watcher(res.key, namespace)
        self._watchers.add(watcher)
        return watcher, backlog

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watchers(self) -> None:
        self.closed = True
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)
