"""The object store: one global resourceVersion counter, indexes, watch history and watchers.

Indexes, all kept on every put/remove: objects by uid, by owner uid and by label pair (every
resource); pods by node, with each node's count of unfinished pods; PodDisruptionBudgets by
the first label pair of their selector, and each budget's members (healthy count, pods per
controller), so an eviction or the disruption controller never scans the namespace.
Listeners registered with `listen` see every write as it happens (the controllers' feed).

Stored dicts are never mutated in place: every write stores a new dict. That lets watch events
and list responses share them without copying. Callers outside the package get copies.
Everything here runs in the server's event loop only.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import errors, resources
from .errors import JSON
from .objects import clone, controller_ref, pod_ready
from .resources import Resource
from .selectors import (
    FieldRequirement,
    Requirement,
    from_label_selector,
    matches_all,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger(__name__)
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


@dataclass
class BudgetMembers:
    """The pods a PodDisruptionBudget selects, kept up to date on every pod write, with what
    its arithmetic needs: how many are healthy, and how many each controller owns."""

    pods: set[str] = field(default_factory=set)
    healthy: int = 0
    loose: int = 0  # pods without a controller reference
    controllers: dict[str, int] = field(default_factory=dict)  # controller uid -> pods
    refs: dict[str, JSON] = field(default_factory=dict)  # controller uid -> its reference

    def add(self, name: str, part: _PodPart) -> None:
        self.pods.add(name)
        self.healthy += part.healthy
        if part.controller is None:
            self.loose += 1
            return
        uid = str(part.controller.get("uid"))
        self.controllers[uid] = self.controllers.get(uid, 0) + 1
        self.refs[uid] = part.controller

    def discard(self, name: str, part: _PodPart) -> None:
        if name not in self.pods:
            return
        self.pods.discard(name)
        self.healthy -= part.healthy
        if part.controller is None:
            self.loose -= 1
            return
        uid = str(part.controller.get("uid"))
        left = self.controllers.get(uid, 0) - 1
        if left > 0:
            self.controllers[uid] = left
        else:
            self.controllers.pop(uid, None)
            self.refs.pop(uid, None)


@dataclass(frozen=True)
class _PodPart:
    """What one pod contributes to a budget."""

    healthy: bool
    controller: JSON | None

    @staticmethod
    def of(pod: JSON) -> _PodPart:
        m = meta(pod)
        healthy = not m.get("deletionTimestamp") and pod_ready(pod)
        return _PodPart(bool(healthy), controller_ref(pod))


def _labels(obj: JSON | None) -> dict[str, str]:
    if obj is None:
        return {}
    value = meta(obj).get("labels")
    return value if isinstance(value, dict) else {}


def _pdb_selector(pdb: JSON) -> list[Requirement] | None:
    return from_label_selector((pdb.get("spec") or {}).get("selector"))


_TERMINAL = ("Succeeded", "Failed")
Listener = Callable[[WatchEvent], None]


def namespace_key(res: Resource, obj: JSON) -> str:
    return str(meta(obj).get("namespace") or "") if res.namespaced else ""


def _nonempty(value: Any) -> Any:
    """An index without its empty leaves, for comparison (empty sets may linger)."""
    if isinstance(value, dict):
        out = {k: _nonempty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, set(), 0, None)}
    if isinstance(value, BudgetMembers):
        return (
            value.pods,
            value.healthy,
            value.loose,
            value.controllers,
            {k: r.get("uid") for k, r in value.refs.items()},
        )
    return value


class Store:
    def __init__(self) -> None:
        self._rv = 1
        self._objects: dict[str, dict[str, dict[str, JSON]]] = {
            r.key: {} for r in resources.RESOURCES
        }
        self._by_uid: dict[str, tuple[str, str, str]] = {}
        self._pods_by_node: dict[str, set[tuple[str, str]]] = {}
        self._load: dict[str, int] = {}  # node -> pods bound to it that have not finished
        self._by_owner: dict[str, set[tuple[str, str, str]]] = {}
        # resource key -> (label key, value) -> namespace -> names
        self._labels: dict[str, dict[tuple[str, str], dict[str, set[str]]]] = {
            r.key: {} for r in resources.RESOURCES
        }
        # PodDisruptionBudgets: parsed selectors, where to find candidates, members.
        self._pdb_selectors: dict[tuple[str, str], list[Requirement] | None] = {}
        self._pdb_pair: dict[tuple[str, str], tuple[str, str, str]] = {}  # where registered
        self._pdb_by_pair: dict[tuple[str, str, str], set[str]] = {}
        self._pdb_loose: dict[str, set[str]] = {}  # namespace -> PDBs without matchLabels
        self._members: dict[tuple[str, str], BudgetMembers] = {}
        self._pod_pdbs: dict[tuple[str, str], set[str]] = {}
        self._budget_changes: set[tuple[str, str]] = set()
        self.pod_counts: dict[str, int] = {}  # total, phases, ready, terminating, unbound
        self._json_cache: dict[str, tuple[str, bytes]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=HISTORY)
        self._watchers: set[Watcher] = set()
        self._listeners: list[Listener] = []
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

    def count(self, res: Resource, namespace: str | None = None) -> int:
        table = self._objects[res.key]
        if namespace is not None:
            return len(table.get(namespace, {}))
        return sum(len(objs) for objs in table.values())

    def sorted_refs(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        """In etcd key order: namespace, then name."""
        table = self._objects[res.key]
        spaces = [namespace] if namespace is not None else sorted(table)
        out: list[JSON] = []
        for ns in spaces:
            objs = table.get(ns or "", {})
            out.extend(objs[n] for n in sorted(objs))
        return out

    def select_refs(
        self, res: Resource, namespace: str | None, reqs: builtins.list[Requirement]
    ) -> builtins.list[JSON]:
        """Objects matching label requirements, in key order; an `=`/`in` requirement is
        served from the label index instead of a scan."""
        keys = self._label_candidates(res, namespace, reqs)
        if keys is None:
            return [o for o in self.sorted_refs(res, namespace) if matches_all(reqs, _labels(o))]
        table = self._objects[res.key]
        out = []
        for ns, name in sorted(keys):
            obj = table.get(ns, {}).get(name)
            if obj is not None and matches_all(reqs, _labels(obj)):
                out.append(obj)
        return out

    def _label_candidates(
        self, res: Resource, namespace: str | None, reqs: builtins.list[Requirement]
    ) -> builtins.list[tuple[str, str]] | None:
        index = self._labels[res.key]
        best: builtins.list[tuple[str, str]] | None = None
        for req in reqs:
            if req.op not in ("=", "in"):
                continue
            pool: builtins.list[tuple[str, str]] = []
            for value in req.values:
                spaces = index.get((req.key, value), {})
                if namespace is not None:
                    pool.extend((namespace, n) for n in spaces.get(namespace or "", ()))
                else:
                    pool.extend((ns, n) for ns, names in spaces.items() for n in names)
            if best is None or len(pool) < len(best):
                best = pool
        return best

    def pods_on_node(self, node: str) -> list[JSON]:
        table = self._objects["pods"]
        refs = (table.get(ns, {}).get(name) for ns, name in self._pods_by_node.get(node, ()))
        return [p for p in refs if p is not None]

    def nodes_with_pods(self) -> list[str]:
        return [n for n, pods in self._pods_by_node.items() if pods]

    def node_load(self, node: str) -> int:
        """Pods bound to `node` that have not finished (the scheduler's spreading measure)."""
        return self._load.get(node, 0)

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

    # ---- PodDisruptionBudget membership ------------------------------------------------------

    def pdbs_of_pod(self, namespace: str, name: str) -> list[JSON]:
        """The budgets selecting the pod, from the index (no scan)."""
        table = self._objects["poddisruptionbudgets.policy"].get(namespace, {})
        names = self._pod_pdbs.get((namespace, name), ())
        return [table[n] for n in sorted(names) if n in table]

    def pdbs_matching(self, namespace: str, labels: dict[str, str]) -> list[JSON]:
        """Budgets whose selector matches `labels` (candidates from the selector index)."""
        table = self._objects["poddisruptionbudgets.policy"].get(namespace, {})
        names = self._matching_pdbs(namespace, labels)
        return [table[n] for n in sorted(names) if n in table]

    def budget_members(self, namespace: str, pdb_name: str) -> BudgetMembers | None:
        return self._members.get((namespace, pdb_name))

    def take_budget_changes(self) -> set[tuple[str, str]]:
        """(namespace, name) of every budget whose members or their health changed since the
        last call (for the disruption controller)."""
        changes, self._budget_changes = self._budget_changes, set()
        return changes

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
        return clone(obj) if obj is not None else None

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
        ns = namespace if res.namespaced else None
        return [
            clone(obj)
            for obj in self.candidates(res, ns, labels, fields)
            if matches_all(labels, _labels(obj)) and all(f.matches(res, obj) for f in fields)
        ]

    def candidates(
        self,
        res: Resource,
        namespace: str | None,
        labels: builtins.list[Requirement],
        fields: builtins.list[FieldRequirement],
    ) -> builtins.list[JSON]:
        """Objects in key order that may match the selectors (the caller still filters):
        pods by `spec.nodeName=` from the node index, `=`/`in` labels from the label index."""
        node = next((f.value for f in fields if f.field == "spec.nodeName" and f.op == "="), None)
        if res.key == "pods" and node is not None:
            pods = [
                p
                for p in self.pods_on_node(node)
                if namespace is None or meta(p).get("namespace") == namespace
            ]
            return sorted(pods, key=lambda p: (meta(p).get("namespace"), meta(p).get("name")))
        if labels:
            return self.select_refs(res, namespace, labels)
        return self.sorted_refs(res, namespace)

    # ---- writing (registry.py decides *what* to write) ------------------------------------

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def listen(self, listener: Listener) -> None:
        """Call `listener(event)` synchronously after every write (the controllers' feed)."""
        self._listeners.append(listener)

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
        old_labels, new_labels = _labels(old), _labels(new)
        if old is None or new is None or old_labels != new_labels:
            self._reindex_labels(res.key, ns, name, old_labels, new_labels)
        if res.key == "pods":
            self._reindex_node(old, new, (ns, name))
            self._count_pod(old, -1)
            self._count_pod(new, 1)
            self._reindex_budgets(ns, name, old, new, old_labels != new_labels)
        elif res.key == "poddisruptionbudgets.policy":
            self._reindex_pdb(ns, name, old, new)
        if (
            old is None
            or new is None
            or meta(old).get("ownerReferences") != m.get("ownerReferences")
        ):
            self._reindex_owners(old, new, (res.key, ns, name))

    def _reindex_labels(
        self, key: str, ns: str, name: str, before: dict[str, str], after: dict[str, str]
    ) -> None:
        index = self._labels[key]
        gone = {(k, str(v)) for k, v in before.items()} - {(k, str(v)) for k, v in after.items()}
        added = {(k, str(v)) for k, v in after.items()} - {(k, str(v)) for k, v in before.items()}
        for pair in gone:
            spaces = index.get(pair)
            names = spaces.get(ns) if spaces is not None else None
            if spaces is None or names is None:
                continue
            names.discard(name)
            if not names:
                del spaces[ns]
                if not spaces:
                    del index[pair]
        for pair in added:
            index.setdefault(pair, {}).setdefault(ns, set()).add(name)

    def _reindex_node(self, old: JSON | None, new: JSON | None, key: tuple[str, str]) -> None:
        before = ((old or {}).get("spec") or {}).get("nodeName")
        after = ((new or {}).get("spec") or {}).get("nodeName")
        was = before is not None and ((old or {}).get("status") or {}).get("phase") not in _TERMINAL
        now = after is not None and ((new or {}).get("status") or {}).get("phase") not in _TERMINAL
        if before and was:
            left = self._load.get(before, 0) - 1
            if left > 0:
                self._load[before] = left
            else:
                self._load.pop(before, None)
        if after and now:
            self._load[after] = self._load.get(after, 0) + 1
        if before == after:
            return
        if before:
            pods = self._pods_by_node.get(before)
            if pods is not None:
                pods.discard(key)
                if not pods:
                    del self._pods_by_node[before]
        if after:
            self._pods_by_node.setdefault(after, set()).add(key)

    def _count_pod(self, pod: JSON | None, delta: int) -> None:
        if pod is None:
            return
        counts = self.pod_counts
        keys = ["total", str((pod.get("status") or {}).get("phase") or "Pending")]
        if pod_ready(pod):
            keys.append("ready")
        if meta(pod).get("deletionTimestamp"):
            keys.append("terminating")
        if not (pod.get("spec") or {}).get("nodeName"):
            keys.append("unbound")
        for key in keys:
            counts[key] = counts.get(key, 0) + delta

    def _reindex_budgets(
        self, ns: str, name: str, old: JSON | None, new: JSON | None, relabelled: bool
    ) -> None:
        key = (ns, name)
        before = self._pod_pdbs.get(key, set())
        if new is None:
            after: set[str] = set()
        elif old is None or relabelled:
            after = self._matching_pdbs(ns, _labels(new))
        else:
            after = before
        old_part = _PodPart.of(old) if old is not None else None
        new_part = _PodPart.of(new) if new is not None else None
        if after is before and old_part == new_part:
            return
        for pdb in before:
            members = self._members.get((ns, pdb))
            if members is not None and old_part is not None:
                members.discard(name, old_part)
                self._budget_changes.add((ns, pdb))
        for pdb in after:
            members = self._members.get((ns, pdb))
            if members is not None and new_part is not None:
                members.add(name, new_part)
                self._budget_changes.add((ns, pdb))
        if after:
            self._pod_pdbs[key] = after
        else:
            self._pod_pdbs.pop(key, None)

    def _matching_pdbs(self, ns: str, labels: dict[str, str]) -> set[str]:
        names = set(self._pdb_loose.get(ns, ()))
        for k, v in labels.items():
            names.update(self._pdb_by_pair.get((ns, k, str(v)), ()))
        return {
            n
            for n in names
            if (reqs := self._pdb_selectors.get((ns, n))) is not None and matches_all(reqs, labels)
        }

    def _reindex_pdb(self, ns: str, name: str, old: JSON | None, new: JSON | None) -> None:
        before = _pdb_selector(old) if old is not None else None
        after = _pdb_selector(new) if new is not None else None
        if old is not None and new is not None and before == after:
            return
        key = (ns, name)
        self._budget_changes.add(key)
        # Unregister the old selector and membership.
        self._pdb_selectors.pop(key, None)
        self._pdb_loose.get(ns, set()).discard(name)
        pair = self._pdb_pair.pop(key, None)
        if pair is not None:
            registered = self._pdb_by_pair.get(pair, set())
            registered.discard(name)
            if not registered:
                self._pdb_by_pair.pop(pair, None)
        members = self._members.pop(key, None)
        for member in members.pods if members is not None else ():
            pdbs = self._pod_pdbs.get((ns, member))
            if pdbs is not None:
                pdbs.discard(name)
                if not pdbs:
                    del self._pod_pdbs[(ns, member)]
        if new is None:
            return
        fresh = BudgetMembers()
        self._members[key] = fresh
        self._pdb_selectors[key] = after
        if after is None:
            return  # a missing selector selects nothing
        first = next((r for r in after if r.op == "="), None)
        if first is None:
            self._pdb_loose.setdefault(ns, set()).add(name)
        else:
            pair = (ns, first.key, first.values[0])
            self._pdb_pair[key] = pair
            self._pdb_by_pair.setdefault(pair, set()).add(name)
        pods = resources.BY_KEY["pods"]
        for pod in self.select_refs(pods, ns, after):
            pod_name = str(meta(pod).get("name"))
            fresh.add(pod_name, _PodPart.of(pod))
            self._pod_pdbs.setdefault((ns, pod_name), set()).add(name)

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

    # ---- checking ------------------------------------------------------------------------

    def verify(self) -> builtins.list[str]:
        """Rebuild every index from the stored objects and list what differs from the live
        ones (empty: all consistent). For tests; O(store)."""
        fresh = Store()
        fresh._rv = self._rv
        for res in resources.RESOURCES:  # pods before budgets: a new budget selects its pods
            for obj in self.iter_refs(res):
                fresh._objects[res.key].setdefault(namespace_key(res, obj), {})[
                    str(meta(obj)["name"])
                ] = obj
                fresh._index(res, None, obj)
        problems = []
        for name in (
            "_by_uid",
            "_pods_by_node",
            "_load",
            "_by_owner",
            "_labels",
            "_pdb_selectors",
            "_pdb_pair",
            "_pdb_by_pair",
            "_members",
            "_pod_pdbs",
        ):
            mine, theirs = _nonempty(getattr(self, name)), _nonempty(getattr(fresh, name))
            if mine != theirs:
                problems.append(f"{name}: live {mine!r} != rebuilt {theirs!r}")
        if _nonempty(self._pdb_loose) != _nonempty(fresh._pdb_loose):
            problems.append(f"_pdb_loose: {self._pdb_loose!r} != {fresh._pdb_loose!r}")
        counts = {k: v for k, v in self.pod_counts.items() if v}
        expected = {k: v for k, v in fresh.pod_counts.items() if v}
        if counts != expected:
            problems.append(f"pod_counts: live {counts!r} != rebuilt {expected!r}")
        return problems

    # ---- watch ---------------------------------------------------------------------------

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.resource == event.resource:
                watcher.queue.put_nowait(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not fail the write
                log.exception("store listener failed on %s", event.resource)

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
