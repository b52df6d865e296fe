"""Workload controllers: Deployment -> ReplicaSet -> pods, DaemonSet, Job.

Each controller keeps the keys of the objects that need a look, fed by `observe(event)` for
every store write (its own objects, and pods/ReplicaSets through their controller reference),
and `sync(now)` reconciles only those. The DaemonSet controller works per (DaemonSet, node).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from .errors import JSON, ApiError
from .nodes import NODES, PODS
from .objects import (
    clone,
    condition_true,
    controller_ref,
    evolve,
    int_or_percent,
    is_terminal,
    is_terminating,
    meta,
    name_of,
    namespace_of,
    owner_ref,
    pod_phase,
    pod_ready,
    set_condition,
    spec,
    status,
    timestamp,
    uid_of,
)
from .pacing import Pacer
from .registry import JOB_TRACKING, DeleteOptions, Registry
from .resources import BY_KEY
from .selectors import node_affinity_matches, untolerated_taints
from .store import Store, WatchEvent

log = logging.getLogger(__name__)
DEPLOYMENTS = BY_KEY["deployments.apps"]
REPLICASETS = BY_KEY["replicasets.apps"]
DAEMONSETS = BY_KEY["daemonsets.apps"]
JOBS = BY_KEY["jobs.batch"]
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
Key = tuple[str, str]  # (namespace, name)


def key_of(obj: JSON) -> Key:
    return namespace_of(obj), name_of(obj)


def controlled_by(event: WatchEvent, kind: str) -> set[Key]:
    """(namespace, name) of the `kind` controllers of the object, before and after."""
    out = set()
    for obj in (event.obj, event.old):
        ref = controller_ref(obj) if obj is not None else None
        if ref is not None and ref.get("kind") == kind:
            out.add((namespace_of(obj or {}), str(ref.get("name"))))
    return out


def _lookup(store: Store, res_key: str, keys: set[Key]) -> list[JSON]:
    res = BY_KEY[res_key]
    return [o for k in sorted(keys) if (o := store.get_ref(res, k[0], k[1])) is not None]


def owned_pods(store: Store, owner: JSON) -> list[JSON]:
    uid = uid_of(owner)
    return [
        obj
        for res, obj in store.dependents(uid)
        if res is PODS and (controller_ref(obj) or {}).get("uid") == uid
    ]


def is_active(pod: JSON) -> bool:
    return not is_terminating(pod) and not is_terminal(pod)


def create_pod(
    registry: Registry,
    owner: JSON,
    template: JSON,
    *,
    spec_extra: JSON | None = None,
    finalizers: list[str] | None = None,
) -> JSON | None:
    """A pod from `owner`'s template, named `<owner>-<5 chars>` like upstream controllers."""
    tm = template.get("metadata") or {}
    m: JSON = {"generateName": f"{name_of(owner)}-", "ownerReferences": [owner_ref(owner)]}
    for key in ("labels", "annotations"):
        if tm.get(key):
            m[key] = dict(tm[key])
    if finalizers:
        m["finalizers"] = list(finalizers)
    pod: JSON = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": m,
        "spec": clone(template.get("spec") or {}),
    }
    pod["spec"].update(spec_extra or {})
    try:
        return registry.create(PODS, pod, namespace_of(owner))
    except ApiError as exc:
        log.warning("cannot create a pod for %s: %s", name_of(owner), exc.message)
        return None


def delete_pods(registry: Registry, pods: Iterable[JSON]) -> None:
    for pod in pods:
        try:
            registry.delete(PODS, namespace_of(pod), name_of(pod), DeleteOptions())
        except ApiError as exc:
            log.debug("cannot delete %s: %s", name_of(pod), exc.message)


def write_status(registry: Registry, res_key: str, obj: JSON, new_status: JSON) -> None:
    if new_status == obj.get("status"):
        return
    new = evolve(obj)
    new["status"] = new_status
    registry.commit(BY_KEY[res_key], obj, new)


def _nonzero(**counts: int) -> JSON:
    return {k: v for k, v in counts.items() if v}


# ---- ReplicaSet ---------------------------------------------------------------------------


def _deletion_rank(pod: JSON) -> tuple[int, str]:
    """Scale-down order, as upstream: unscheduled, pending, not ready, then newest first."""
    if not spec(pod).get("nodeName"):
        state = 0
    elif pod_phase(pod) == "Pending":
        state = 1
    elif not pod_ready(pod):
        state = 2
    else:
        state = 3
    created = str(meta(pod).get("creationTimestamp"))
    return state, "".join(chr(255 - ord(c)) for c in created)


class ReplicaSetController:
    """Keeps, per ReplicaSet uid, its pods' (active, ready) from the pod events it observes,
    so a sync is O(1) in the ReplicaSet's size unless it has to scale down."""

    watches = ("replicasets.apps", "pods")

    def __init__(self, registry: Registry, status_interval: float = 0.0) -> None:
        self.registry = registry
        self.dirty: set[Key] = set()
        self.pods: dict[str, dict[Key, tuple[bool, bool]]] = {}  # uid -> pod -> (active, ready)
        self.counts: dict[str, list[int]] = {}  # uid -> [active, ready]
        self.pacer = Pacer(status_interval)

    def observe(self, event: WatchEvent) -> None:
        obj = event.obj
        if event.resource == REPLICASETS.key:
            if event.type == "DELETED":
                self.pacer.forget(key_of(obj))
            else:
                self.dirty.add(key_of(obj))
            return
        key = key_of(obj)
        before = self._part(event.old)
        after = self._part(obj) if event.type != "DELETED" else None
        if before == after:
            return  # e.g. a bind or a condition write: nothing the ReplicaSet counts
        if before is not None:
            self._count(before, key, -1)
        if after is not None:
            self._count(after, key, 1)
        for part in (before, after):
            if part is not None and part[2]:  # an inactive pod coming or going changes nothing
                self.dirty.add((key[0], part[1]))

    def _count(self, part: tuple[str, str, bool, bool], key: Key, delta: int) -> None:
        uid, _, active, ready = part
        owned = self.pods.setdefault(uid, {})
        counts = self.counts.setdefault(uid, [0, 0])
        if delta > 0:
            owned[key] = (active, ready)
        else:
            owned.pop(key, None)
        counts[0] += delta * active
        counts[1] += delta * ready
        if not owned:
            self.pods.pop(uid, None)
            self.counts.pop(uid, None)

    @staticmethod
    def _part(pod: JSON | None) -> tuple[str, str, bool, bool] | None:
        """(ReplicaSet uid, name, active, ready) of a pod a ReplicaSet controls."""
        ref = controller_ref(pod) if pod is not None else None
        if pod is None or ref is None or ref.get("kind") != "ReplicaSet":
            return None
        active = is_active(pod)
        return str(ref.get("uid")), str(ref.get("name")), active, active and pod_ready(pod)

    def sync(self, now: float) -> None:
        dirty, self.dirty = self.dirty, set()
        dirty.update(self.pacer.due(now))
        for rs in _lookup(self.registry.store, REPLICASETS.key, dirty):
            if not is_terminating(rs):
                self._sync(rs, now)

    def _active(self, rs: JSON) -> list[Key]:
        return [k for k, (active, _) in self.pods.get(uid_of(rs), {}).items() if active]

    def _sync(self, rs: JSON, now: float) -> None:
        store = self.registry.store
        uid = uid_of(rs)
        want = int(spec(rs).get("replicas", 1))
        for _ in range(want - self.counts.get(uid, [0, 0])[0]):
            create_pod(self.registry, rs, spec(rs).get("template") or {})
        counts = self.counts.get(uid, [0, 0])  # the creations were observed already
        if counts[0] > want:
            pods = [p for k in self._active(rs) if (p := store.get_ref(PODS, k[0], k[1]))]
            delete_pods(self.registry, sorted(pods, key=_deletion_rank)[: counts[0] - want])
            counts = self.counts.get(uid, [0, 0])
        active, ready = counts
        new_status = {
            "replicas": active,
            "fullyLabeledReplicas": active,
            **_nonzero(readyReplicas=ready, availableReplicas=ready),
            "observedGeneration": meta(rs).get("generation", 1),
        }
        current = store.get_ref(REPLICASETS, namespace_of(rs), name_of(rs))
        if (
            current is not None
            and new_status != current.get("status")
            and self.pacer.allow(key_of(rs), now)
        ):
            write_status(self.registry, "replicasets.apps", current, new_status)


# ---- Deployment ---------------------------------------------------------------------------


def template_hash(template: JSON) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(HASH_ALPHABET))
        chars.append(HASH_ALPHABET[rest])
    return "".join(chars)


def _new_replicaset(deploy: JSON, pod_hash: str) -> JSON:
    template = clone(spec(deploy).get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
    selector = clone(spec(deploy).get("selector") or {})
    selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name_of(deploy)}-{pod_hash}",
            "namespace": namespace_of(deploy),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [owner_ref(deploy)],
        },
        "spec": {
            "replicas": spec(deploy).get("replicas", 1),
            "selector": selector,
            "template": template,
        },
    }


def _scale(registry: Registry, rs: JSON, replicas: int) -> None:
    if spec(rs).get("replicas") == replicas:
        return
    new = evolve(rs, shallow=("spec",))
    new["spec"]["replicas"] = replicas
    registry.commit(REPLICASETS, rs, new)


class DeploymentController:
    watches = ("deployments.apps", "replicasets.apps")

    def __init__(self, registry: Registry, status_interval: float = 0.0) -> None:
        self.registry = registry
        self.dirty: set[Key] = set()
        self.hashes: dict[str, tuple[Any, str]] = {}
        self.pacer = Pacer(status_interval)

    def observe(self, event: WatchEvent) -> None:
        if event.resource == REPLICASETS.key:
            self.dirty.update(controlled_by(event, "Deployment"))
        elif event.type == "DELETED":
            self.hashes.pop(uid_of(event.obj), None)
            self.pacer.forget(key_of(event.obj))
        else:
            self.dirty.add(key_of(event.obj))

    def sync(self, now: float) -> None:
        dirty, self.dirty = self.dirty, set()
        dirty.update(self.pacer.due(now))
        deployments = _lookup(self.registry.store, DEPLOYMENTS.key, dirty)
        sync_deployments(self.registry, deployments, self.hashes, self.pacer, now)


def sync_deployments(
    registry: Registry,
    deployments: list[JSON] | None = None,
    hashes: dict[str, tuple[Any, str]] | None = None,
    pacer: Pacer | None = None,
    now: float = 0.0,
) -> None:
    """`hashes`: a cache of template hashes, uid -> (generation, hash); `pacer` spaces out
    status writes."""
    store = registry.store
    cache = {} if hashes is None else hashes
    for deploy in list(store.iter_refs(DEPLOYMENTS)) if deployments is None else deployments:
        if is_terminating(deploy):
            cache.pop(uid_of(deploy), None)
            continue
        generation = meta(deploy).get("generation")
        cached = cache.get(uid_of(deploy))
        if cached is None or cached[0] != generation:
            cached = (generation, template_hash(spec(deploy).get("template") or {}))
            cache[uid_of(deploy)] = cached
        pod_hash = cached[1]
        owned = [
            o
            for r, o in store.dependents(uid_of(deploy))
            if r is REPLICASETS and (controller_ref(o) or {}).get("uid") == uid_of(deploy)
        ]
        current = next((o for o in owned if name_of(o) == f"{name_of(deploy)}-{pod_hash}"), None)
        want = int(spec(deploy).get("replicas", 1))
        if current is None:
            try:
                current = registry.create(
                    REPLICASETS, _new_replicaset(deploy, pod_hash), namespace_of(deploy)
                )
            except ApiError as exc:
                log.warning("deployment %s: %s", name_of(deploy), exc.message)
                continue
        else:
            _scale(registry, current, want)
        for old in owned:
            if name_of(old) != name_of(current):
                _scale(registry, old, 0)
        _deployment_status(registry, deploy, current, owned, pacer, now)


def _deployment_status(
    registry: Registry,
    deploy: JSON,
    current: JSON,
    owned: list[JSON],
    pacer: Pacer | None,
    now: float,
) -> None:
    sets = {name_of(o): o for o in [*owned, current]}
    fresh = [registry.store.get_ref(REPLICASETS, namespace_of(deploy), n) for n in sets]
    live = [s for s in fresh if s is not None]
    total = sum(int(status(s).get("replicas", 0)) for s in live)
    ready = sum(int(status(s).get("readyReplicas", 0)) for s in live)
    updated = int(status(current).get("replicas", 0))
    want = int(spec(deploy).get("replicas", 1))
    max_unavailable = ((spec(deploy).get("strategy") or {}).get("rollingUpdate") or {}).get(
        "maxUnavailable", "25%"
    )
    available = ready >= want - int_or_percent(max_unavailable, want, round_up=False)
    new = {"status": clone(status(deploy))}
    new["status"].update(
        observedGeneration=meta(deploy).get("generation", 1),
        **_nonzero(
            replicas=total,
            updatedReplicas=updated,
            readyReplicas=ready,
            availableReplicas=ready,
            unavailableReplicas=max(0, want - ready),
        ),
    )
    for key in (
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ):
        if not new["status"].get(key):
            new["status"].pop(key, None)
    set_condition(
        new,
        "Available",
        "True" if available else "False",
        "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
    )
    set_condition(new, "Progressing", "True", "NewReplicaSetAvailable")
    if new["status"] != deploy.get("status") and (
        pacer is None or pacer.allow(key_of(deploy), now)
    ):
        write_status(registry, "deployments.apps", deploy, new["status"])


# ---- DaemonSet ----------------------------------------------------------------------------

DAEMON_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)


def daemon_tolerations(pod_spec: JSON) -> list[JSON]:
    tolerations = list(pod_spec.get("tolerations") or [])
    for key, effect in DAEMON_TOLERATIONS:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return tolerations


def daemon_fits(pod_spec: JSON, node: JSON) -> tuple[bool, bool]:
    """(should run, should keep running) for a DaemonSet pod on `node`."""
    if not node_affinity_matches(pod_spec, node) or is_terminating(node):
        return False, False
    tolerations = daemon_tolerations(pod_spec)
    taints = spec(node).get("taints") or []
    keep = not untolerated_taints(tolerations, taints, {"NoExecute"})
    run = keep and not untolerated_taints(tolerations, taints, {"NoSchedule"})
    return run, keep


def _daemon_pod_extra(ds: JSON, node_name: str) -> JSON:
    pod_spec = clone((spec(ds).get("template") or {}).get("spec") or {})
    affinity = pod_spec.setdefault("affinity", {})
    affinity["nodeAffinity"] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
            ]
        }
    }
    return {
        "affinity": affinity,
        "tolerations": daemon_tolerations(pod_spec),
        "nodeName": node_name,
    }


class DaemonSetController:
    """One pod per eligible node. Works per (DaemonSet, node): a node write re-checks that
    node for every DaemonSet, a DaemonSet pod write its own node, a DaemonSet write all nodes.
    Each DaemonSet's per-node counts are kept, so its status is summed, not recomputed."""

    watches = ("daemonsets.apps", "nodes", "pods")

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.full: set[Key] = set()  # DaemonSets to check on every node
        self.nodes: set[str] = set()  # nodes to check for every DaemonSet
        self.pairs: set[tuple[Key, str]] = set()  # (DaemonSet, node)
        # DaemonSet uid -> node -> (desired, scheduled, ready)
        self.counts: dict[str, dict[str, tuple[int, int, int]]] = {}

    def observe(self, event: WatchEvent) -> None:
        obj = event.obj
        if event.resource == "nodes":
            self.nodes.add(name_of(obj))
        elif event.resource == "pods":
            for owner in controlled_by(event, "DaemonSet"):
                node = spec(obj).get("nodeName") or spec(event.old or {}).get("nodeName")
                if node:
                    self.pairs.add((owner, str(node)))
        elif event.type == "DELETED":
            self.counts.pop(uid_of(obj), None)
        else:
            self.full.add(key_of(obj))

    def sync(self, now: float) -> None:
        full, self.full = self.full, set()
        nodes, self.nodes = self.nodes, set()
        pairs, self.pairs = self.pairs, set()
        if not (full or nodes or pairs):
            return
        store = self.registry.store
        for ds in list(store.iter_refs(DAEMONSETS)):
            key = key_of(ds)
            if key in full:
                self._sync(ds, None)
                continue
            todo = nodes | {n for k, n in pairs if k == key}
            if todo:
                self._sync(ds, todo)

    def _sync(self, ds: JSON, node_names: set[str] | None) -> None:
        if is_terminating(ds):
            return
        store = self.registry.store
        template = spec(ds).get("template") or {}
        uid = uid_of(ds)
        counts = self.counts.setdefault(uid, {})
        if node_names is None:
            counts.clear()
            by_node: dict[str, list[JSON]] = {}
            for pod in owned_pods(store, ds):
                if is_active(pod):
                    by_node.setdefault(str(spec(pod).get("nodeName")), []).append(pod)
            work = [(n, by_node.get(name_of(n), [])) for n in store.sorted_refs(NODES)]
        else:
            work = []
            for name in sorted(node_names):
                node = store.get_ref(NODES, None, name)
                if node is None:
                    counts.pop(name, None)
                    continue
                have = [
                    p
                    for p in store.pods_on_node(name)
                    if (controller_ref(p) or {}).get("uid") == uid and is_active(p)
                ]
                work.append((node, have))
        for node, have in work:
            run, keep = daemon_fits(template.get("spec") or {}, node)
            if run and not have:
                create_pod(
                    self.registry, ds, template, spec_extra=_daemon_pod_extra(ds, name_of(node))
                )
            elif have and not keep:
                delete_pods(self.registry, have)
                have = []
            counts[name_of(node)] = (
                int(run or bool(have)),
                int(bool(have)),
                sum(1 for p in have[:1] if pod_ready(p)),
            )
        desired = sum(c[0] for c in counts.values())
        scheduled = sum(c[1] for c in counts.values())
        ready = sum(c[2] for c in counts.values())
        new_status = {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": scheduled,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": scheduled,
            "numberMisscheduled": 0,
            "observedGeneration": meta(ds).get("generation", 1),
        }
        if ready < desired:
            new_status["numberUnavailable"] = desired - ready
        current = store.get_ref(DAEMONSETS, namespace_of(ds), name_of(ds))
        if current is not None:
            write_status(self.registry, "daemonsets.apps", current, new_status)


def sync_daemonsets(registry: Registry) -> None:
    """Every DaemonSet on every node, once."""
    controller = DaemonSetController(registry)
    for ds in list(registry.store.iter_refs(DAEMONSETS)):
        controller._sync(ds, None)


# ---- Job ------------------------------------------------------------------------------------


def _rule_matches(rule: JSON, pod: JSON) -> bool:
    exit_codes = rule.get("onExitCodes")
    if exit_codes:
        wanted = set(exit_codes.get("values") or [])
        codes = [
            ((c.get("state") or {}).get("terminated") or {}).get("exitCode")
            for c in status(pod).get("containerStatuses") or []
            if not exit_codes.get("containerName") or c.get("name") == exit_codes["containerName"]
        ]
        codes = [c for c in codes if c not in (None, 0)]
        if exit_codes.get("operator") == "NotIn":
            return any(c not in wanted for c in codes)
        return any(c in wanted for c in codes)
    for pattern in rule.get("onPodConditions") or []:
        for cond in status(pod).get("conditions") or []:
            if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get(
                "status", "True"
            ):
                return True
    return False


def failure_action(job: JSON, pod: JSON) -> str:
    """What the Job's podFailurePolicy says about a failed pod: Count, Ignore or FailJob."""
    for rule in (spec(job).get("podFailurePolicy") or {}).get("rules") or []:
        if _rule_matches(rule, pod):
            return str(rule.get("action", "Count"))
    return "Count"


class JobController:
    watches = ("jobs.batch", "pods")

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        # Pods this controller deleted itself (suspend, job failed): never counted as failed.
        self.removed_by_us: set[str] = set()
        self.dirty: set[Key] = set()
        self.tracked: set[Key] = set()  # pods holding the tracking finalizer, to check

    def observe(self, event: WatchEvent) -> None:
        obj = event.obj
        if event.resource == "pods":
            self.dirty.update(controlled_by(event, "Job"))
            if event.type == "DELETED":
                self.removed_by_us.discard(uid_of(obj))
            elif JOB_TRACKING in (meta(obj).get("finalizers") or []):
                self.tracked.add(key_of(obj))
        elif event.type == "DELETED":
            for res, dep in self.registry.store.dependents(uid_of(obj)):
                if res is PODS:
                    self.tracked.add(key_of(dep))
        else:
            self.dirty.add(key_of(obj))

    def sync(self, now: float = 0.0) -> None:
        dirty, self.dirty = self.dirty, set()
        for job in _lookup(self.registry.store, JOBS.key, dirty):
            if not is_terminating(job):
                self._sync(job)
        tracked, self.tracked = self.tracked, set()
        self._release_orphans(_lookup(self.registry.store, PODS.key, tracked))

    def _release_orphans(self, pods: list[JSON]) -> None:
        """Pods whose Job is gone (or that were orphaned) lose the tracking finalizer."""
        store = self.registry.store
        for pod in pods:
            if JOB_TRACKING not in (meta(pod).get("finalizers") or []):
                continue
            ref = controller_ref(pod)
            owner = store.by_uid(str(ref.get("uid"))) if ref else None
            if owner is None or owner.get("kind") != "Job":
                self.registry.remove_finalizer(PODS, pod, JOB_TRACKING)

    def _sync(self, job: JSON) -> None:
        s = spec(job)
        new: JSON = {"status": clone(status(job))}
        st = new["status"]
        pods = owned_pods(self.registry.store, job)
        fail_reason = self._account(job, pods, st)
        pods = owned_pods(self.registry.store, job)
        active = [p for p in pods if is_active(p)]
        finished = condition_true(job, "Complete") or condition_true(job, "Failed")
        if not finished:
            finished = self._maybe_finish(job, new, active, fail_reason)
        if finished:
            self._remove(active)
            active = []
        elif s.get("suspend"):
            self._remove(active)
            active = []
            set_condition(new, "Suspended", "True", "JobSuspended", "Job suspended")
        else:
            if condition_true(job, "Suspended"):
                set_condition(new, "Suspended", "False", "JobResumed", "Job resumed")
            st.setdefault("startTime", timestamp())
            active = self._scale(job, pods, active, int(st.get("succeeded", 0)))
        self._write(job, new, pods, active)

    def _account(self, job: JSON, pods: list[JSON], st: JSON) -> str:
        """Count finished pods still holding the tracking finalizer, then release them."""
        only_failed = spec(job).get("podReplacementPolicy") == "Failed"
        fail_reason = ""
        for pod in pods:
            if JOB_TRACKING not in (meta(pod).get("finalizers") or []):
                continue
            phase = pod_phase(pod)
            failed = phase == "Failed" or (
                is_terminating(pod) and phase != "Succeeded" and not only_failed
            )
            if phase == "Succeeded":
                st["succeeded"] = int(st.get("succeeded", 0)) + 1
            elif failed and uid_of(pod) not in self.removed_by_us:
                action = failure_action(job, pod)
                if action == "FailJob":
                    fail_reason = "PodFailurePolicy"
                if action != "Ignore":
                    st["failed"] = int(st.get("failed", 0)) + 1
            elif not failed:
                continue
            self.registry.remove_finalizer(PODS, pod, JOB_TRACKING)
        return fail_reason

    def _maybe_finish(self, job: JSON, new: JSON, active: list[JSON], fail_reason: str) -> bool:
        s, st = spec(job), new["status"]
        failed, succeeded = int(st.get("failed", 0)), int(st.get("succeeded", 0))
        if not fail_reason and failed > int(s.get("backoffLimit", 6)):
            fail_reason = "BackoffLimitExceeded"
        if fail_reason:
            message = (
                "Job has reached the specified backoff limit"
                if fail_reason == "BackoffLimitExceeded"
                else "Pod failure policy matched"
            )
            set_condition(new, "FailureTarget", "True", fail_reason, message)
            set_condition(new, "Failed", "True", fail_reason, message)
            return True
        completions = s.get("completions")
        done = (
            succeeded >= int(completions)
            if completions is not None
            else succeeded > 0 and not active
        )
        if done:
            set_condition(
                new,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
            set_condition(
                new,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
            st["completionTime"] = timestamp()
        return bool(done)

    def _remove(self, pods: list[JSON]) -> None:
        self.removed_by_us.update(uid_of(p) for p in pods)
        delete_pods(self.registry, pods)

    def _scale(self, job: JSON, pods: list[JSON], active: list[JSON], succeeded: int) -> list[JSON]:
        s = spec(job)
        parallelism, completions = int(s.get("parallelism", 1)), s.get("completions")
        if completions is None:
            want = 0 if succeeded else parallelism
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        # With podReplacementPolicy Failed, a terminating pod is replaced once it has failed.
        waiting = [p for p in pods if is_terminating(p) and not is_terminal(p)]
        in_flight = len(active) + (len(waiting) if s.get("podReplacementPolicy") == "Failed" else 0)
        template = s.get("template") or {}
        for _ in range(want - in_flight):
            pod = create_pod(self.registry, job, template, finalizers=[JOB_TRACKING])
            if pod is not None:
                active.append(pod)
        if len(active) > want:
            extra = sorted(active, key=_deletion_rank)[: len(active) - want]
            self._remove(extra)
            active = [p for p in active if p not in extra]
        return active

    def _write(self, job: JSON, new: JSON, pods: list[JSON], active: list[JSON]) -> None:
        st = new["status"]
        st.pop("active", None)
        for key in ("succeeded", "failed"):
            if not st.get(key):
                st.pop(key, None)
        if active:
            st["active"] = len(active)
        st["ready"] = sum(1 for p in active if pod_ready(p))
        st["terminating"] = sum(1 for p in pods if is_terminating(p) and not is_terminal(p))
        st.setdefault("uncountedTerminatedPods", {})
        current = self.registry.store.get_ref(JOBS, namespace_of(job), name_of(job))
        if current is not None:
            write_status(self.registry, "jobs.batch", current, st)
