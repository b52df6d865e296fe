"""A "controller-manager lite": every `tick` seconds, in the server's loop, run each controller
once over the store. Controllers write only when something changed."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable

from .errors import JSON, ApiError
from .nodes import Kubelet, TaintManager, collect_orphan_pods, schedule, sync_node_taints
from .objects import is_terminating, meta, name_of, namespace_of, uid_of
from .pdb import PDBS, PodIndex, refresh_pdb
from .registry import FOREGROUND, DeleteOptions, Registry
from .resources import BY_KEY, RESOURCES
from .workloads import JobController, sync_daemonsets, sync_deployments, sync_replicasets

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


def collect_garbage(registry: Registry) -> None:
    """Dependents whose owners are all gone are deleted (background propagation); dangling
    owner references next to live ones are dropped."""
    store = registry.store
    for owner_uid in store.owner_uids():
        if store.exists_uid(owner_uid):
            continue
        for res, dep in store.dependents(owner_uid):
            refs = meta(dep).get("ownerReferences") or []
            live = [r for r in refs if store.exists_uid(str(r.get("uid")))]
            if live:
                new = copy.deepcopy(dep)
                meta(new)["ownerReferences"] = live
                registry.commit(res, dep, new)
            elif not is_terminating(dep):
                _delete(registry, res.key, dep, None)


def finish_foreground(registry: Registry) -> None:
    """Owners deleted with propagationPolicy=Foreground go once their dependents are gone."""
    store = registry.store
    for key in OWNER_KINDS:
        res = BY_KEY[key]
        for owner in list(store.iter_refs(res)):
            if FOREGROUND not in (meta(owner).get("finalizers") or []):
                continue
            dependents = store.dependents(uid_of(owner))
            for dep_res, dep in dependents:
                if not is_terminating(dep):
                    _delete(registry, dep_res.key, dep, "Foreground")
            if not dependents:
                registry.remove_finalizer(res, owner, FOREGROUND)


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


def finalize_namespaces(registry: Registry) -> None:
    """A terminating namespace: delete everything in it; remove it once it is empty."""
    store = registry.store
    for ns in list(store.iter_refs(NAMESPACES)):
        if not is_terminating(ns):
            continue
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


def refresh_pdbs(registry: Registry) -> None:
    pdbs = list(registry.store.iter_refs(PDBS))
    if pdbs:
        index = PodIndex(registry.store)
        for pdb in pdbs:
            refresh_pdb(registry, pdb, index)


class ControllerManager:
    """Runs the controllers in order. Controllers that only react to state are skipped while
    the store has not changed; the time-driven ones (kubelet, taint manager) always run."""

    def __init__(self, registry: Registry, tick: float) -> None:
        self.registry = registry
        self.tick = tick
        self.kubelet = Kubelet(registry)
        self.taint_manager = TaintManager(registry)
        self.jobs = JobController(registry)
        self._seen_version = -1
        self.steps: list[tuple[str, bool, Callable[[], None]]] = [
            ("node-lifecycle", False, lambda: sync_node_taints(registry)),
            ("namespace", False, lambda: finalize_namespaces(registry)),
            ("garbage-collector", False, lambda: collect_garbage(registry)),
            ("foreground-deletion", False, lambda: finish_foreground(registry)),
            ("pod-gc", False, lambda: collect_orphan_pods(registry)),
            ("taint-manager", True, self.taint_manager.sync),
            ("deployment", False, lambda: sync_deployments(registry)),
            ("replicaset", False, lambda: sync_replicasets(registry)),
            ("daemonset", False, lambda: sync_daemonsets(registry)),
            ("job", False, self.jobs.sync),
            ("scheduler", False, lambda: schedule(registry)),
            ("kubelet", True, self.kubelet.sync),
            ("disruption", False, lambda: refresh_pdbs(registry)),
        ]

    def run_once(self) -> None:
        changed = self.registry.store.resource_version != self._seen_version
        self._seen_version = self.registry.store.resource_version
        for name, timed, step in self.steps:
            if not (timed or changed):
                continue
            try:
                step()
            except Exception:  # one broken controller must not stop the others
                log.exception("controller %s failed", name)

    async def run(self) -> None:
        while True:
            self.run_once()
            await asyncio.sleep(self.tick)
