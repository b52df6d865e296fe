"""Node-side behaviour: node lifecycle taints, the scheduler, a scripted kubelet, the NoExecute
taint manager and pod garbage collection. Pod timings come from annotations (see README).

Each controller is incremental: `observe(event)` is called synchronously for every store write
and records what needs a look (a pod key, a node name); `sync(now)` then works only on that,
plus timers for what is due later (a pod's start, exit or toleration expiry).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import JSON, ApiError
from .objects import (
    annotations_of,
    clone,
    condition,
    condition_true,
    controller_ref,
    evolve,
    is_terminal,
    is_terminating,
    meta,
    name_of,
    namespace_of,
    pod_phase,
    set_condition,
    spec,
    status,
    timestamp,
    uid_of,
)
from .pacing import Timers
from .registry import DeleteOptions, Registry
from .resources import BY_KEY
from .selectors import node_affinity_matches, tolerates, untolerated_taints
from .store import WatchEvent

log = logging.getLogger(__name__)
NODES = BY_KEY["nodes"]
PODS = BY_KEY["pods"]
ANNOTATION_PREFIX = "devstack.lifecycled.io/"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def scripted_seconds(pod: JSON, name: str, default: float | None) -> float | None:
    raw = annotations_of(pod).get(ANNOTATION_PREFIX + name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        return default


def node_ready(node: JSON) -> bool:
    return condition_true(node, "Ready")


def is_daemon_pod(pod: JSON) -> bool:
    ref = controller_ref(pod)
    return ref is not None and ref.get("kind") == "DaemonSet"


Key = tuple[str, str]  # (namespace, name)


def key_of(obj: JSON) -> Key:
    return namespace_of(obj), name_of(obj)


# ---- node lifecycle controller ------------------------------------------------------------


def _wanted_taints(node: JSON) -> list[JSON]:
    """Keep the unschedulable / not-ready NoSchedule taints in step with the node, as the
    node lifecycle controller does; every other taint is left alone and in place."""
    taints = list(spec(node).get("taints") or [])
    wants = {
        UNSCHEDULABLE_TAINT: bool(spec(node).get("unschedulable")),
        NOT_READY_TAINT: not node_ready(node),
    }
    kept = [
        t
        for t in taints
        if not (t.get("key") in wants and t.get("effect") == "NoSchedule" and not wants[t["key"]])
    ]
    for key, wanted in wants.items():
        present = any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in kept)
        if wanted and not present:
            kept.append({"key": key, "effect": "NoSchedule", "timeAdded": timestamp()})
    return kept


def sync_node_taints(registry: Registry, names: Iterable[str] | None = None) -> None:
    """Nodes `names` (default: all of them)."""
    store = registry.store
    if names is None:
        nodes = list(store.iter_refs(NODES))
    else:
        nodes = [n for name in names if (n := store.get_ref(NODES, None, name)) is not None]
    for node in nodes:
        wanted = _wanted_taints(node)
        if wanted == (spec(node).get("taints") or []):
            continue
        new = evolve(node, shallow=("spec",))
        if wanted:
            new.setdefault("spec", {})["taints"] = wanted
        else:
            new.setdefault("spec", {}).pop("taints", None)
        registry.commit(NODES, node, new)


class NodeLifecycle:
    watches = ("nodes",)

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.dirty: set[str] = set()

    def observe(self, event: WatchEvent) -> None:
        if event.type != "DELETED":
            self.dirty.add(name_of(event.obj))

    def sync(self, now: float) -> None:
        dirty, self.dirty = self.dirty, set()
        sync_node_taints(self.registry, sorted(dirty))


# ---- scheduler ----------------------------------------------------------------------------


def _fit_failure(pod: JSON, node: JSON) -> str | None:
    """Why `pod` cannot go to `node`, or None when it fits."""
    tolerations = spec(pod).get("tolerations") or []
    if is_terminating(node):
        return "node(s) were being deleted"
    if (
        spec(node).get("unschedulable")
        and tolerates(tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}) is None
    ):
        return "node(s) were unschedulable"
    if not node_ready(node):
        return "node(s) were not ready"
    if untolerated_taints(tolerations, spec(node).get("taints") or [], {"NoSchedule", "NoExecute"}):
        return "node(s) had untolerated taint(s)"
    if not node_affinity_matches(spec(pod), node):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def wants_scheduling(pod: JSON) -> bool:
    return (
        not spec(pod).get("nodeName")
        and not is_terminating(pod)
        and not is_terminal(pod)
        and not is_daemon_pod(pod)
        and spec(pod).get("schedulerName", "default-scheduler") == "default-scheduler"
    )


_FIT_FIELDS = ("tolerations", "nodeSelector", "affinity")


def signature(pod: JSON) -> str:
    """What node fit depends on: pods with the same signature fit the same nodes."""
    s = spec(pod)
    return json.dumps([s.get(f) for f in _FIT_FIELDS], sort_keys=True, separators=(",", ":"))


@dataclass
class Fits:
    """For one signature: every node's fit failure (None: fits), kept up to date per node."""

    probe: JSON
    failures: dict[str, str | None] = field(default_factory=dict)
    fit: set[str] = field(default_factory=set)
    message: str | None = None  # the Unschedulable message, cached until a node changes

    def update(self, name: str, node: JSON | None) -> None:
        self.message = None
        if node is None:
            self.failures.pop(name, None)
            self.fit.discard(name)
            return
        failure = _fit_failure(self.probe, node)
        self.failures[name] = failure
        if failure is None:
            self.fit.add(name)
        else:
            self.fit.discard(name)

    def unschedulable_message(self) -> str:
        if self.message is None:
            counts: dict[str, int] = {}
            for reason in self.failures.values():
                if reason:
                    counts[reason] = counts.get(reason, 0) + 1
            detail = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
            total = len(self.failures)
            self.message = (
                f"0/{total} nodes are available: {detail}."
                if detail
                else "0/0 nodes are available."
            )
        return self.message


class Scheduler:
    """Binds pending pods to the least-loaded fitting node.

    Work is driven by changes: a pod that needs scheduling is queued when it is written; node
    fit is computed once per pod signature (tolerations, nodeSelector, affinity) and kept up to
    date node by node; pods that fit nowhere are parked by signature and come back when a node
    change makes their signature fit somewhere. Their Unschedulable message is refreshed at
    most every REFRESH seconds."""

    watches = ("nodes", "pods")
    REFRESH = 5.0
    MAX_SIGNATURES = 256

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.queue: set[Key] = set()
        self.parked: dict[str, set[Key]] = {}  # signature -> pods that fit nowhere
        self._parked_sig: dict[Key, str] = {}
        self.signatures: dict[str, Fits] = {}
        self.dirty_nodes: set[str] = set()
        self._stale_messages = False
        self._refresh_at = 0.0
        self.attempts = 0  # scheduling attempts (pods looked at), for tests and stats

    def observe(self, event: WatchEvent) -> None:
        if event.resource == "nodes":
            self.dirty_nodes.add(name_of(event.obj))
            return
        key = key_of(event.obj)
        if event.type != "DELETED" and wants_scheduling(event.obj):
            parked = key in self._parked_sig and event.old is not None
            if parked and spec(event.old or {}) == spec(event.obj):
                return  # e.g. its own Unschedulable condition: nothing new to try
            self.queue.add(key)
        else:
            self.queue.discard(key)
            self._unpark(key)

    def _unpark(self, key: Key) -> None:
        sig = self._parked_sig.pop(key, None)
        if sig is not None:
            parked = self.parked.get(sig)
            if parked is not None:
                parked.discard(key)
                if not parked:
                    del self.parked[sig]

    def _park(self, key: Key, sig: str) -> None:
        self._unpark(key)
        self._parked_sig[key] = sig
        self.parked.setdefault(sig, set()).add(key)

    def _fits(self, sig: str, pod: JSON) -> Fits:
        fits = self.signatures.get(sig)
        if fits is None:
            if len(self.signatures) >= self.MAX_SIGNATURES:
                self.signatures = {s: f for s, f in self.signatures.items() if s in self.parked}
            s = spec(pod)
            fits = Fits({"spec": {f: s[f] for f in _FIT_FIELDS if f in s}})
            for node in self.registry.store.iter_refs(NODES):
                fits.update(name_of(node), node)
            self.signatures[sig] = fits
        return fits

    def _apply_node_changes(self) -> None:
        store = self.registry.store
        dirty, self.dirty_nodes = self.dirty_nodes, set()
        for name in dirty:
            node = store.get_ref(NODES, None, name)
            for fits in self.signatures.values():
                fits.update(name, node)
        self._stale_messages = True
        for sig in [s for s in self.parked if (f := self.signatures.get(s)) and f.fit]:
            for key in self.parked.pop(sig):
                self._parked_sig.pop(key, None)
                self.queue.add(key)

    def sync(self, now: float) -> None:
        if self.dirty_nodes:
            self._apply_node_changes()
        if self._stale_messages and self.parked and now >= self._refresh_at:
            self._stale_messages = False
            self._refresh_at = now + self.REFRESH
            for keys in self.parked.values():
                self.queue.update(keys)
        if not self.queue:
            return
        store = self.registry.store
        keys, self.queue = self.queue, set()
        pods = [
            p
            for k in keys
            if (p := store.get_ref(PODS, k[0], k[1])) is not None and wants_scheduling(p)
        ]
        pods.sort(key=lambda p: (str(meta(p).get("creationTimestamp")), name_of(p)))
        heaps: dict[str, list[tuple[int, str]]] = {}
        for pod in pods:
            self.attempts += 1
            sig = signature(pod)
            fits = self._fits(sig, pod)
            if not fits.fit:
                self._park(key_of(pod), sig)
                if self._refresh_at <= now:  # its message is fresh: refresh it later
                    self._refresh_at = now + self.REFRESH
                _mark_unschedulable(self.registry, pod, fits.unschedulable_message())
                continue
            self._unpark(key_of(pod))
            heap = heaps.get(sig)
            if heap is None:
                heap = [(store.node_load(n), n) for n in fits.fit]
                heapq.heapify(heap)
                heaps[sig] = heap
            while True:  # lazy: loads only grow during a pass, so a stale entry is too low
                load, best = heap[0]
                current = store.node_load(best)
                if current == load:
                    break
                heapq.heapreplace(heap, (current, best))
            bind(self.registry, pod, best)
            heapq.heapreplace(heap, (store.node_load(best), best))


def schedule(registry: Registry) -> None:
    """One full scheduling pass over every pending pod (the scheduler, without its queue)."""
    scheduler = Scheduler(registry)
    scheduler.queue = {key_of(p) for p in registry.store.iter_refs(PODS) if wants_scheduling(p)}
    scheduler.sync(0.0)


def bind(registry: Registry, pod: JSON, node_name: str) -> None:
    new = evolve(pod, "status", shallow=("spec",))
    new["spec"]["nodeName"] = node_name
    set_condition(new, "PodScheduled", "True")
    registry.commit(PODS, pod, new)


def _mark_unschedulable(registry: Registry, pod: JSON, message: str) -> None:
    current = condition(pod, "PodScheduled")
    if current and current.get("status") == "False" and current.get("message") == message:
        return
    new = evolve(pod, "status")
    set_condition(new, "PodScheduled", "False", "Unschedulable", message)
    registry.commit(PODS, pod, new)


# ---- kubelet ------------------------------------------------------------------------------


def _pod_ip(uid: str) -> str:
    digest = hashlib.sha256(uid.encode()).digest()
    return f"10.244.{digest[0]}.{max(1, digest[1] % 255)}"


def _host_ip(node: JSON) -> str:
    for address in status(node).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return ""


def _container_statuses(pod: JSON, state: JSON, ready: bool) -> list[JSON]:
    return [
        {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": "",
            "containerID": f"containerd://{uid_of(pod).replace('-', '')}{i}",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }
        for i, c in enumerate(spec(pod).get("containers") or [])
    ]


class Kubelet:
    """Runs every node's pods on their scripted timings: a pod is looked at when it is written,
    when its node's readiness changes, and when its next step falls due."""

    watches = ("nodes", "pods")

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.seen: dict[str, float] = {}  # pod uid -> first seen bound and pending
        self.started: dict[str, float] = {}  # pod uid -> became Running
        self.dirty: set[Key] = set()
        self.timers = Timers()

    def observe(self, event: WatchEvent) -> None:
        obj = event.obj
        if event.resource == "nodes":
            if event.type == "DELETED":
                return
            if event.old is None or node_ready(event.old) != node_ready(obj):
                self.dirty.update(key_of(p) for p in self.registry.store.pods_on_node(name_of(obj)))
            return
        key = key_of(obj)
        if event.type == "DELETED":
            self.dirty.discard(key)
            self.timers.cancel(key)
            self.seen.pop(uid_of(obj), None)
            self.started.pop(uid_of(obj), None)
        elif spec(obj).get("nodeName"):
            self.dirty.add(key)

    def sync(self, now: float) -> None:
        self.dirty.update(self.timers.due(now))
        if not self.dirty:
            return
        store = self.registry.store
        work, self.dirty = sorted(self.dirty), set()
        for key in work:
            pod = store.get_ref(PODS, key[0], key[1])
            node_name = spec(pod).get("nodeName") if pod is not None else None
            node = store.get_ref(NODES, None, str(node_name)) if node_name else None
            if pod is None or node is None:
                continue  # gone, or pod GC's business
            try:
                due = self._sync_pod(pod, node, now)
            except ApiError as exc:
                log.debug("kubelet: %s/%s: %s", key[0], key[1], exc)
                continue
            if due is not None:
                self.timers.at(key, due)

    def _sync_pod(self, pod: JSON, node: JSON, now: float) -> float | None:
        """Take the pod's next step if it is due; otherwise return when it will be."""
        uid = uid_of(pod)
        if is_terminating(pod):
            return self._terminate(pod, now)
        phase = pod_phase(pod)
        if phase == "Pending" and node_ready(node):
            first = self.seen.setdefault(uid, now)
            wait = scripted_seconds(pod, "start-seconds", 0.2) or 0.0
            if now - first >= wait:
                self._start(pod, node)
                self.started[uid] = now
                return None
            return first + wait
        if phase == "Running":
            started = self.started.setdefault(uid, now)
            fail = scripted_seconds(pod, "fail-seconds", None)
            run = scripted_seconds(pod, "run-seconds", None)
            if fail is not None and now - started >= fail:
                self._finish(pod, "Failed", 1, "Error")
            elif run is not None and now - started >= run:
                self._finish(pod, "Succeeded", 0, "Completed")
            else:
                dues = [started + s for s in (fail, run) if s is not None]
                return min(dues) if dues else None
        return None

    def _start(self, pod: JSON, node: JSON) -> None:
        new = evolve(pod, "status")
        st = new.setdefault("status", {})
        # Scripted: a test's pod may be served by a process on this machine (a checkpoint).
        ip = str(annotations_of(pod).get(ANNOTATION_PREFIX + "pod-ip") or _pod_ip(uid_of(pod)))
        st.update(
            phase="Running",
            startTime=timestamp(),
            hostIP=_host_ip(node),
            hostIPs=[{"ip": _host_ip(node)}],
            podIP=ip,
            podIPs=[{"ip": ip}],
            containerStatuses=_container_statuses(
                pod, {"running": {"startedAt": timestamp()}}, True
            ),
        )
        for kind in (
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
            "PodScheduled",
        ):
            set_condition(new, kind, "True")
        self.registry.commit(PODS, pod, new)

    def _finish(self, pod: JSON, phase: str, exit_code: int, reason: str) -> JSON:
        new = evolve(pod, "status")
        terminated = {
            "terminated": {"exitCode": exit_code, "reason": reason, "finishedAt": timestamp()}
        }
        new.setdefault("status", {}).update(
            phase=phase, containerStatuses=_container_statuses(pod, terminated, False)
        )
        for kind in ("Ready", "ContainersReady"):
            set_condition(new, kind, "False", "PodCompleted")
        return self.registry.commit(PODS, pod, new)

    def _terminate(self, pod: JSON, now: float) -> float | None:
        m = meta(pod)
        if m.get("deletionGracePeriodSeconds") == 0:
            # Deleted for good but held by finalizers: the containers are stopped.
            if not is_terminal(pod):
                self._finish(pod, "Failed", 137, "Error")
            return None
        store = self.registry.store
        grace = float(m.get("deletionGracePeriodSeconds") or 0)
        term, kill = store.deleted_at.setdefault(uid_of(pod), (now, now + grace))
        exit_after = scripted_seconds(pod, "exit-seconds", 1.0) or 0.0
        due = min(term + exit_after, kill)
        if now < due:
            return due
        killed = now >= kill and term + exit_after > kill
        if not is_terminal(pod):
            pod = self._finish(pod, "Failed", 137 if killed else 143, "Error")
        final = self.registry.finish_pod(pod)
        if (
            MIRROR_ANNOTATION in annotations_of(pod)
            and store.get_ref(PODS, namespace_of(pod), name_of(pod)) is None
        ):
            self._recreate_mirror(final)
        return None

    def _recreate_mirror(self, pod: JSON) -> None:
        """A static pod keeps running; the kubelet re-creates its mirror pod at once."""
        m = meta(pod)
        fresh = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                k: clone(m[k])
                for k in ("name", "namespace", "labels", "annotations", "ownerReferences")
                if k in m
            },
            "spec": clone(spec(pod)),
        }
        self.registry.create(PODS, fresh, namespace_of(pod))


# ---- taint manager (NoExecute) -----------------------------------------------------------


def no_execute_taints(node: JSON | None) -> list[JSON]:
    if node is None:
        return []
    return [t for t in spec(node).get("taints") or [] if t.get("effect") == "NoExecute"]


class TaintManager:
    """Deletes pods that do not tolerate a NoExecute taint (after tolerationSeconds). Looks at
    a node's pods when the node is written with NoExecute taints, at a pod written onto such
    a node, and again when a toleration runs out."""

    watches = ("nodes", "pods")

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.first_seen: dict[str, dict[str, float]] = {}  # pod uid -> taint key -> time
        self.dirty_nodes: set[str] = set()
        self.dirty_pods: set[Key] = set()
        self.timers = Timers()

    def observe(self, event: WatchEvent) -> None:
        obj = event.obj
        if event.type == "DELETED":
            if event.resource == "pods":
                self.timers.cancel(key_of(obj))
                self.first_seen.pop(uid_of(obj), None)
            return
        if event.resource == "nodes":
            if no_execute_taints(obj):
                self.dirty_nodes.add(name_of(obj))
        elif spec(obj).get("nodeName") and not is_terminating(obj) and not is_terminal(obj):
            self.dirty_pods.add(key_of(obj))

    def sync(self, now: float) -> None:
        store = self.registry.store
        self.dirty_pods.update(self.timers.due(now))
        nodes, self.dirty_nodes = sorted(self.dirty_nodes), set()
        keys, self.dirty_pods = sorted(self.dirty_pods), set()
        for name in nodes:
            taints = no_execute_taints(store.get_ref(NODES, None, name))
            for pod in store.pods_on_node(name) if taints else ():
                self._consider(pod, taints, now)
        for key in keys:
            found = store.get_ref(PODS, key[0], key[1])
            node_name = spec(found).get("nodeName") if found is not None else None
            if found is None or not node_name:
                continue
            taints = no_execute_taints(store.get_ref(NODES, None, str(node_name)))
            if taints:
                self._consider(found, taints, now)

    def _consider(self, pod: JSON, taints: list[JSON], now: float) -> None:
        if is_terminating(pod) or is_terminal(pod):
            return
        due = self._due(pod, taints, now)
        if due is not None and now >= due:
            self._delete(pod)
        elif due is not None:
            self.timers.at(key_of(pod), due)

    def _due(self, pod: JSON, taints: list[JSON], now: float) -> float | None:
        """When the pod must go: now for an untolerated taint, at the earliest toleration
        expiry otherwise, None when it may stay."""
        tolerations = spec(pod).get("tolerations") or []
        limits: list[float] = []
        for taint in taints:
            toleration = tolerates(tolerations, taint)
            if toleration is None:
                return now
            if toleration.get("tolerationSeconds") is not None:
                seen = self.first_seen.setdefault(uid_of(pod), {})
                since = seen.setdefault(str(taint.get("key")), now)
                limits.append(since + float(toleration["tolerationSeconds"]))
        return min(limits) if limits else None

    def _delete(self, pod: JSON) -> None:
        marked = evolve(pod, "status")
        set_condition(
            marked,
            "DisruptionTarget",
            "True",
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        )
        pod = self.registry.commit(PODS, pod, marked)
        self.registry.delete(PODS, namespace_of(pod), name_of(pod), DeleteOptions())


# ---- pod garbage collection -------------------------------------------------------------


def collect_orphan_pods(registry: Registry, nodes: Iterable[str] | None = None) -> None:
    """Pods bound to a node that no longer exists are failed and deleted at once. `nodes`:
    the node names to look at (default: every node that has pods)."""
    store = registry.store
    for node_name in list(store.nodes_with_pods() if nodes is None else nodes):
        if store.get_ref(NODES, None, node_name) is not None:
            continue
        for pod in store.pods_on_node(node_name):
            if meta(pod).get("deletionGracePeriodSeconds") == 0:
                continue  # already deleted, waiting for finalizers
            marked = evolve(pod, "status")
            if not is_terminal(marked):
                marked.setdefault("status", {})["phase"] = "Failed"
            set_condition(
                marked,
                "DisruptionTarget",
                "True",
                "DeletionByPodGC",
                "PodGC: node no longer exists",
            )
            pod = registry.commit(PODS, pod, marked)
            registry.delete(PODS, namespace_of(pod), name_of(pod), DeleteOptions(grace_period=0))


class PodGC:
    """Looks at a node name when the node is deleted or a pod is bound to a missing node."""

    watches = ("nodes", "pods")

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.dirty: set[str] = set()

    def observe(self, event: WatchEvent) -> None:
        if event.resource == "nodes":
            if event.type == "DELETED":
                self.dirty.add(name_of(event.obj))
            return
        node_name = spec(event.obj).get("nodeName")
        if (
            event.type != "DELETED"
            and node_name
            and self.registry.store.get_ref(NODES, None, str(node_name)) is None
        ):
            self.dirty.add(str(node_name))

    def sync(self, now: float) -> None:
        dirty, self.dirty = self.dirty, set()
        if dirty:
            collect_orphan_pods(self.registry, sorted(dirty))
