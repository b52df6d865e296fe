"""Node-side behaviour: node lifecycle taints, the scheduler, a scripted kubelet, the NoExecute
taint manager and pod garbage collection. Pod timings come from annotations (see README)."""

from __future__ import annotations

import copy
import hashlib
import logging
import time

from .errors import JSON, ApiError
from .objects import (
    annotations_of,
    condition,
    condition_true,
    controller_ref,
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
from .registry import DeleteOptions, Registry
from .resources import BY_KEY
from .selectors import node_affinity_matches, tolerates, untolerated_taints

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


def sync_node_taints(registry: Registry) -> None:
    for node in list(registry.store.iter_refs(NODES)):
        wanted = _wanted_taints(node)
        if wanted == (spec(node).get("taints") or []):
            continue
        new = copy.deepcopy(node)
        if wanted:
            new.setdefault("spec", {})["taints"] = wanted
        else:
            new.setdefault("spec", {}).pop("taints", None)
        registry.commit(NODES, node, new)


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


def schedule(registry: Registry) -> None:
    store = registry.store
    pending = [
        p
        for p in store.iter_refs(PODS)
        if not spec(p).get("nodeName")
        and not is_terminating(p)
        and not is_terminal(p)
        and not is_daemon_pod(p)
        and spec(p).get("schedulerName", "default-scheduler") == "default-scheduler"
    ]
    if not pending:
        return
    nodes = sorted(store.iter_refs(NODES), key=name_of)
    load = {
        name_of(n): sum(1 for p in store.pods_on_node(name_of(n)) if not is_terminal(p))
        for n in nodes
    }
    pending.sort(key=lambda p: (str(meta(p).get("creationTimestamp")), name_of(p)))
    for pod in pending:
        failures = {name_of(n): _fit_failure(pod, n) for n in nodes}
        fits = [n for n in nodes if failures[name_of(n)] is None]
        if not fits:
            _mark_unschedulable(registry, pod, list(failures.values()))
            continue
        best = min(fits, key=lambda n: (load[name_of(n)], name_of(n)))
        load[name_of(best)] += 1
        bind(registry, pod, name_of(best))


def bind(registry: Registry, pod: JSON, node_name: str) -> None:
    new = copy.deepcopy(pod)
    new["spec"]["nodeName"] = node_name
    set_condition(new, "PodScheduled", "True")
    registry.commit(PODS, pod, new)


def _mark_unschedulable(registry: Registry, pod: JSON, failures: list[str | None]) -> None:
    counts: dict[str, int] = {}
    for reason in failures:
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    detail = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    message = (
        f"0/{len(failures)} nodes are available: {detail}."
        if detail
        else ("0/0 nodes are available.")
    )
    current = condition(pod, "PodScheduled")
    if current and current.get("status") == "False" and current.get("message") == message:
        return
    new = copy.deepcopy(pod)
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
    """Runs every node's pods on their scripted timings."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.seen: dict[str, float] = {}  # pod uid -> first seen bound and pending
        self.started: dict[str, float] = {}  # pod uid -> became Running

    def sync(self) -> None:
        store = self.registry.store
        now = time.monotonic()
        for node_name in store.nodes_with_pods():
            node = store.get_ref(NODES, None, node_name)
            if node is None:
                continue  # pod GC's business
            for pod in store.pods_on_node(node_name):
                try:
                    self._sync_pod(pod, node, now)
                except ApiError as exc:
                    log.debug("kubelet: %s/%s: %s", namespace_of(pod), name_of(pod), exc)
        if len(self.seen) + len(self.started) > 4 * 1024:
            self._forget_gone()

    def _forget_gone(self) -> None:
        store = self.registry.store
        self.seen = {u: t for u, t in self.seen.items() if store.exists_uid(u)}
        self.started = {u: t for u, t in self.started.items() if store.exists_uid(u)}

    def _sync_pod(self, pod: JSON, node: JSON, now: float) -> None:
        uid = uid_of(pod)
        if is_terminating(pod):
            self._terminate(pod, now)
            return
        phase = pod_phase(pod)
        if phase == "Pending" and node_ready(node):
            first = self.seen.setdefault(uid, now)
            if now - first >= (scripted_seconds(pod, "start-seconds", 0.2) or 0.0):
                self._start(pod, node)
                self.started[uid] = now
        elif phase == "Running":
            started = self.started.setdefault(uid, now)
            fail = scripted_seconds(pod, "fail-seconds", None)
            run = scripted_seconds(pod, "run-seconds", None)
            if fail is not None and now - started >= fail:
                self._finish(pod, "Failed", 1, "Error")
            elif run is not None and now - started >= run:
                self._finish(pod, "Succeeded", 0, "Completed")

    def _start(self, pod: JSON, node: JSON) -> None:
        new = copy.deepcopy(pod)
        st = new.setdefault("status", {})
        ip = _pod_ip(uid_of(pod))
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
        new = copy.deepcopy(pod)
        terminated = {
            "terminated": {"exitCode": exit_code, "reason": reason, "finishedAt": timestamp()}
        }
        new.setdefault("status", {}).update(
            phase=phase, containerStatuses=_container_statuses(pod, terminated, False)
        )
        for kind in ("Ready", "ContainersReady"):
            set_condition(new, kind, "False", "PodCompleted")
        return self.registry.commit(PODS, pod, new)

    def _terminate(self, pod: JSON, now: float) -> None:
        m = meta(pod)
        if m.get("deletionGracePeriodSeconds") == 0:
            # Deleted for good but held by finalizers: the containers are stopped.
            if not is_terminal(pod):
                self._finish(pod, "Failed", 137, "Error")
            return
        store = self.registry.store
        grace = float(m.get("deletionGracePeriodSeconds") or 0)
        term, kill = store.deleted_at.setdefault(uid_of(pod), (now, now + grace))
        exit_after = scripted_seconds(pod, "exit-seconds", 1.0) or 0.0
        if now < min(term + exit_after, kill):
            return
        killed = now >= kill and term + exit_after > kill
        if not is_terminal(pod):
            pod = self._finish(pod, "Failed", 137 if killed else 143, "Error")
        final = self.registry.finish_pod(pod)
        if (
            MIRROR_ANNOTATION in annotations_of(pod)
            and store.get_ref(PODS, namespace_of(pod), name_of(pod)) is None
        ):
            self._recreate_mirror(final)

    def _recreate_mirror(self, pod: JSON) -> None:
        """A static pod keeps running; the kubelet re-creates its mirror pod at once."""
        m = meta(pod)
        fresh = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                k: copy.deepcopy(m[k])
                for k in ("name", "namespace", "labels", "annotations", "ownerReferences")
                if k in m
            },
            "spec": copy.deepcopy(spec(pod)),
        }
        self.registry.create(PODS, fresh, namespace_of(pod))


# ---- taint manager (NoExecute) -----------------------------------------------------------


class TaintManager:
    """Deletes pods that do not tolerate a NoExecute taint (after tolerationSeconds)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.first_seen: dict[tuple[str, str], float] = {}

    def sync(self) -> None:
        store = self.registry.store
        now = time.monotonic()
        for node in list(store.iter_refs(NODES)):
            taints = [t for t in spec(node).get("taints") or [] if t.get("effect") == "NoExecute"]
            if not taints:
                continue
            for pod in store.pods_on_node(name_of(node)):
                if not is_terminating(pod) and not is_terminal(pod) and self._due(pod, taints, now):
                    self._delete(pod)

    def _due(self, pod: JSON, taints: list[JSON], now: float) -> bool:
        tolerations = spec(pod).get("tolerations") or []
        limits: list[float] = []
        for taint in taints:
            toleration = tolerates(tolerations, taint)
            if toleration is None:
                return True
            if toleration.get("tolerationSeconds") is not None:
                key = (uid_of(pod), str(taint.get("key")))
                since = self.first_seen.setdefault(key, now)
                limits.append(since + float(toleration["tolerationSeconds"]))
        return bool(limits) and now >= min(limits)

    def _delete(self, pod: JSON) -> None:
        marked = copy.deepcopy(pod)
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


def collect_orphan_pods(registry: Registry) -> None:
    """Pods bound to a node that no longer exists are failed and deleted at once."""
    store = registry.store
    for node_name in store.nodes_with_pods():
        if store.get_ref(NODES, None, node_name) is not None:
            continue
        for pod in store.pods_on_node(node_name):
            if meta(pod).get("deletionGracePeriodSeconds") == 0:
                continue  # already deleted, waiting for finalizers
            marked = copy.deepcopy(pod)
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
