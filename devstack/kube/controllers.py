"""A "controller-manager lite": every `tick` seconds, in the server's loop, run each controller
once. Controllers are incremental: the store calls `observe(event)` on each of them (routed by
resource) synchronously for every write, each records what needs a look, and `sync(now)` works
only on that. Controllers write only when something changed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .errors import JSON, ApiError
from .nodes import Kubelet, NodeLifecycle, PodGC, Scheduler, TaintManager
from .objects import evolve, is_terminating, meta, name_of, namespace_of, spec, uid_of
from .pacing import Pacer
from .pdb import PDBS, refresh_pdb
from .registry import FOREGROUND, DeleteOptions, Registry
from .resources import BY_KEY, RESOURCES
from .store import WatchEvent
from .workloads import (
    DaemonSetController,
    DeploymentController,
    JobController,
    ReplicaSetController,
)

log = logging.getLogger(__name__)
NAMESPACES = BY_KEY["namespaces"]
# Kinds that own other objects here; only they are checked for foreground deletion.
OWNER_KINDS = (
    "deployments.apps",
    "replicasets.apps",
    "daemonsets.apps",
    "statefulsets.apps",
    "jobs.batch",
)
# Kinds whose spec.replicas is a budget's expected count.
SCALED_KINDS = ("deployments.apps", "replicasets.apps", "statefulsets.apps")
EVERYTHING: tuple[str, ...] = tuple(r.key for r in RESOURCES)
Key = tuple[str, str]


class Controller(Protocol):
    @property
    def watches(self) -> tuple[str, ...]:  # resource keys whose events `observe` wants
        ...

    def observe(self, event: WatchEvent) -> None: ...

    def sync(self, now: float) -> None: ...


# ---- garbage collector -------------------------------------------------------------------


class GarbageCollector:
    """Dependents whose owners are all gone are deleted (background propagation); dangling
    owner references next to live ones are dropped. Looks at an owner uid when its object is
    deleted, or when something is written with a reference to a uid that does not exist."""

    watches = EVERYTHING

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.dirty: set[str] = set()

    def observe(self, event: WatchEvent) -> None:
        store = self.registry.store
        if event.type == "DELETED":
            self.dirty.add(uid_of(event.obj))
            return
        for ref in meta(event.obj).get("ownerReferences") or []:
            uid = str(ref.get("uid"))
            if not store.exists_uid(uid):
                self.dirty.add(uid)

    def sync(self, now: float) -> None:
        dirty, self.dirty = self.dirty, set()
        collect_garbage(self.registry, sorted(dirty))


def collect_garbage(registry: Registry, owner_uids: list[str] | None = None) -> None:
    store = registry.store
    for owner_uid in store.owner_uids() if owner_uids is None else owner_uids:
        if store.exists_uid(owner_uid):
            continue
        for res, dep in store.dependents(owner_uid):
            refs = meta(dep).get("ownerReferences") or []
            live = [r for r in refs if store.exists_uid(str(r.get("uid")))]
            if live:
                new = evolve(dep)
                meta(new)["ownerReferences"] = live
                registry.commit(res, dep, new)
            elif not is_terminating(dep):
                _delete(registry, res.key, dep, None)


class ForegroundDeletion:
    """Owners deleted with propagationPolicy=Foreground go once their dependents are gone.
    Only owners holding the `foregroundDeletion` finalizer are looked at."""

    watches = OWNER_KINDS

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.owners: set[tuple[str, str, str]] = set()  # (resource key, namespace, name)

    def observe(self, event: WatchEvent) -> None:
        key = (event.resource, namespace_of(event.obj), name_of(event.obj))
        if event.type != "DELETED" and FOREGROUND in (meta(event.obj).get("finalizers") or []):
            self.owners.add(key)
        else:
            self.owners.discard(key)

    def sync(self, now: float) -> None:
        store = self.registry.store
        for res_key, ns, name in sorted(self.owners):
            res = BY_KEY[res_key]
            owner = store.get_ref(res, ns or None, name)
            if owner is None or FOREGROUND not in (meta(owner).get("finalizers") or []):
                continue
            dependents = store.dependents(uid_of(owner))
            for dep_res, dep in dependents:
                if not is_terminating(dep):
                    _delete(self.registry, dep_res.key, dep, "Foreground")
            if not dependents:
                self.registry.remove_finalizer(res, owner, FOREGROUND)


def _delete(registry: Registry, key: str, obj: JSON, propagation: str | None) -> None:
    try:
        registry.delete(
            BY_KEY[key],
            namespace_of(obj) or None,
            name_of(obj),
            DeleteOptions(propagation=propagation),
        )
    except ApiError as exc:
        log.debug("gc: cannot delete %s: %s", name_of(obj), exc.message)


# ---- namespaces ----------------------------------------------------------------------------


class NamespaceFinalizer:
    """A terminating namespace: delete everything in it; remove it once it is empty. Looked at
    when it starts terminating and whenever something in it changes."""

    watches = EVERYTHING

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.terminating: set[str] = set()
        self.dirty: set[str] = set()

    def observe(self, event: WatchEvent) -> None:
        if event.resource == NAMESPACES.key:
            name = name_of(event.obj)
            if event.type != "DELETED" and is_terminating(event.obj):
                self.terminating.add(name)
                self.dirty.add(name)
            else:
                self.terminating.discard(name)
            return
        ns = namespace_of(event.obj)
        if ns in self.terminating:
            self.dirty.add(ns)

    def sync(self, now: float) -> None:
        dirty, self.dirty = self.dirty & self.terminating, set()
        for name in sorted(dirty):
            ns = self.registry.store.get_ref(NAMESPACES, None, name)
            if ns is not None and is_terminating(ns):
                finalize_namespace(self.registry, ns)


def finalize_namespace(registry: Registry, ns: JSON) -> None:
    store = registry.store
    empty = True
    for res in RESOURCES:
        if not res.namespaced:
            continue
        for obj in list(store.iter_refs(res, name_of(ns))):
            empty = False
            if not is_terminating(obj):
                _delete(registry, res.key, obj, "Background")
    if empty:
        store.remove(NAMESPACES, ns)


# ---- disruption controller -----------------------------------------------------------------


class DisruptionController:
    """PDB status. A budget is refreshed when it is written, when the store reports that its
    members or their health changed, and when a controller's replicas in its namespace
    change (its expected count)."""

    watches = (PDBS.key, *SCALED_KINDS)

    def __init__(self, registry: Registry, status_interval: float = 0.0) -> None:
        self.registry = registry
        self.dirty: set[Key] = set()
        self.namespaces: set[str] = set()
        self.pacer = Pacer(status_interval)

    def observe(self, event: WatchEvent) -> None:
        if event.resource == PDBS.key:
            key = (namespace_of(event.obj), name_of(event.obj))
            if event.type == "DELETED":
                self.pacer.forget(key)
            else:
                self.dirty.add(key)
            return
        before = spec(event.old).get("replicas") if event.old is not None else None
        if event.type != "MODIFIED" or before != spec(event.obj).get("replicas"):
            self.namespaces.add(namespace_of(event.obj))

    def sync(self, now: float) -> None:
        store = self.registry.store
        dirty, self.dirty = self.dirty | store.take_budget_changes(), set()
        dirty.update(self.pacer.due(now))
        namespaces, self.namespaces = self.namespaces, set()
        for ns in namespaces:
            dirty.update((ns, name_of(p)) for p in store.iter_refs(PDBS, ns))
        for ns, name in sorted(dirty):
            pdb = store.get_ref(PDBS, ns, name)
            if pdb is not None:
                refresh_pdb(self.registry, pdb, self.pacer, now)


# ---- the manager ---------------------------------------------------------------------------


class ControllerManager:
    """Runs the controllers in order, each on what changed since its last pass (plus what
    fell due: the kubelet's and the taint manager's timers)."""

    def __init__(self, registry: Registry, tick: float, status_interval: float = 0.5) -> None:
        self.registry = registry
        self.tick = tick
        self.node_lifecycle = NodeLifecycle(registry)
        self.namespaces = NamespaceFinalizer(registry)
        self.garbage_collector = GarbageCollector(registry)
        self.foreground = ForegroundDeletion(registry)
        self.pod_gc = PodGC(registry)
        self.taint_manager = TaintManager(registry)
        self.deployments = DeploymentController(registry, status_interval)
        self.replicasets = ReplicaSetController(registry, status_interval)
        self.daemonsets = DaemonSetController(registry)
        self.jobs = JobController(registry)
        self.scheduler = Scheduler(registry)
        self.kubelet = Kubelet(registry)
        # Budget statuses are never paced: a stale currentHealthy reads as a broken budget.
        self.disruption = DisruptionController(registry)
        self.steps: list[tuple[str, Controller]] = [
            ("node-lifecycle", self.node_lifecycle),
            ("namespace", self.namespaces),
            ("garbage-collector", self.garbage_collector),
            ("foreground-deletion", self.foreground),
            ("pod-gc", self.pod_gc),
            ("taint-manager", self.taint_manager),
            ("deployment", self.deployments),
            ("replicaset", self.replicasets),
            ("daemonset", self.daemonsets),
            ("job", self.jobs),
            ("scheduler", self.scheduler),
            ("kubelet", self.kubelet),
            ("disruption", self.disruption),
        ]
        self._routes: dict[str, list[Callable[[WatchEvent], None]]] = {}
        for _, controller in self.steps:
            for resource in controller.watches:
                self._routes.setdefault(resource, []).append(controller.observe)
        self.passes = 0
        self.busy_seconds = 0.0  # time spent in controller passes (loop time not serving)
        self.slowest_pass = 0.0
        self.step_seconds: dict[str, float] = {name: 0.0 for name, _ in self.steps}
        registry.store.listen(self._observe)

    def _observe(self, event: WatchEvent) -> None:
        for observe in self._routes.get(event.resource, ()):
            observe(event)

    def run_once(self) -> None:
        started = now = time.monotonic()
        for name, controller in self.steps:
            try:
                controller.sync(now)
            except Exception:  # one broken controller must not stop the others
                log.exception("controller %s failed", name)
            done = time.monotonic()
            self.step_seconds[name] += done - now
            now = done
        took = now - started
        self.passes += 1
        self.busy_seconds += took
        self.slowest_pass = max(self.slowest_pass, took)

    async def run(self) -> None:
        while True:
            self.run_once()
            await asyncio.sleep(self.tick)
