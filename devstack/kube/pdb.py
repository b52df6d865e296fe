"""PodDisruptionBudget arithmetic (the disruption controller) and the eviction subresource.

Eviction follows pkg/registry/core/pod/storage/eviction.go. One deliberate difference: the
budget is computed from the store at the moment of the eviction instead of read from the PDB's
possibly stale status. The check and the graceful delete run without yielding to the event
loop, so parallel evictions can never take a budget below its minimum. The arithmetic reads the
store's membership index (members, healthy count, pods per controller), so its cost does not
grow with the namespace; `scanned_budget` is the same arithmetic over a scan, for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import JSON, ApiError
from .objects import (
    clone,
    controller_ref,
    evolve,
    int_or_percent,
    is_terminal,
    is_terminating,
    meta,
    name_of,
    pod_phase,
    pod_ready,
    set_condition,
    spec,
)
from .pacing import Pacer
from .registry import DeleteOptions, Registry
from .resources import BY_KEY
from .selectors import from_label_selector, label_selector_matches, labels_of, matches_all
from .store import Store

PODS = BY_KEY["pods"]
PDBS = BY_KEY["poddisruptionbudgets.policy"]
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


@dataclass(frozen=True)
class Budget:
    current_healthy: int
    desired_healthy: int
    expected_pods: int

    @property
    def disruptions_allowed(self) -> int:
        return max(0, self.current_healthy - self.desired_healthy)


def selects(pdb: JSON, pod: JSON) -> bool:
    # policy/v1: an empty selector selects every pod of the namespace; a missing one none.
    selector = spec(pdb).get("selector")
    return selector is not None and label_selector_matches(selector, labels_of(pod))


def selected_pods(store: Store, pdb: JSON) -> list[JSON]:
    """The pods the budget selects, from the store's membership index."""
    ns, name = str(meta(pdb).get("namespace")), name_of(pdb)
    members = store.budget_members(ns, name)
    if members is None:
        return scanned_pods(store, pdb)
    return [p for n in sorted(members.pods) if (p := store.get_ref(PODS, ns, n)) is not None]


def scanned_pods(store: Store, pdb: JSON) -> list[JSON]:
    """The same, by scanning the namespace (the reference the index is tested against)."""
    reqs = from_label_selector(spec(pdb).get("selector"))
    if reqs is None:
        return []
    ns = str(meta(pdb).get("namespace"))
    return [p for p in store.iter_refs(PODS, ns) if matches_all(reqs, labels_of(p))]


def matching_pdbs(store: Store, pod: JSON) -> list[JSON]:
    """Budgets whose selector matches the pod's labels (candidates from the PDB index)."""
    return store.pdbs_matching(str(meta(pod).get("namespace")), labels_of(pod))


def _controller_scale(store: Store, ns: str, ref: JSON) -> tuple[str, int] | None:
    """(uid, desired replicas) of the pod's controller, following ReplicaSet -> Deployment."""
    kinds = {
        "ReplicaSet": "replicasets.apps",
        "StatefulSet": "statefulsets.apps",
        "Deployment": "deployments.apps",
    }
    key = kinds.get(str(ref.get("kind")))
    if key is None:
        return None
    owner = store.get_ref(BY_KEY[key], ns, str(ref.get("name")))
    if owner is None or meta(owner).get("uid") != ref.get("uid"):
        return None
    parent = controller_ref(owner)
    if key == "replicasets.apps" and parent is not None and parent.get("kind") == "Deployment":
        found = _controller_scale(store, ns, parent)
        if found is not None:
            return found
    return str(ref.get("uid")), int(spec(owner).get("replicas", 1))


def expected_count(store: Store, pods: list[JSON]) -> int:
    """Sum of the desired replicas of the pods' controllers; a pod without one counts as 1."""
    scales: dict[str, int] = {}
    looked_up: dict[str, tuple[str, int] | None] = {}  # pods mostly share one controller
    loose = 0
    for pod in pods:
        ref = controller_ref(pod)
        if ref is None:
            loose += 1
            continue
        key = str(ref.get("uid"))
        if key not in looked_up:
            looked_up[key] = _controller_scale(store, str(meta(pod).get("namespace")), ref)
        found = looked_up[key]
        if found is None:
            loose += 1
        else:
            scales[found[0]] = found[1]
    return sum(scales.values()) + loose


def budget(store: Store, pdb: JSON) -> Budget:
    """The budget's arithmetic from the membership index: O(controllers), not O(pods)."""
    ns, name = str(meta(pdb).get("namespace")), name_of(pdb)
    members = store.budget_members(ns, name)
    if members is None:
        return scanned_budget(store, pdb)
    count = len(members.pods)

    def expected() -> int:
        scales: dict[str, int] = {}
        loose = members.loose
        for uid, pods in members.controllers.items():
            found = _controller_scale(store, ns, members.refs[uid])
            if found is None:
                loose += pods
            else:
                scales[found[0]] = found[1]
        return sum(scales.values()) + loose

    return _arithmetic(pdb, members.healthy, count, expected)


def scanned_budget(store: Store, pdb: JSON) -> Budget:
    """The same arithmetic over a scan of the namespace (reference for the index)."""
    pods = scanned_pods(store, pdb)
    healthy = sum(1 for p in pods if pod_ready(p) and not is_terminating(p))
    return _arithmetic(pdb, healthy, len(pods), lambda: expected_count(store, pods))


def _arithmetic(pdb: JSON, healthy: int, count: int, expected: Callable[[], int]) -> Budget:
    s = spec(pdb)
    if s.get("maxUnavailable") is not None:
        total = expected()
        unavailable = int_or_percent(s["maxUnavailable"], total, round_up=True)
        return Budget(healthy, max(0, total - unavailable), total)
    min_available = s.get("minAvailable")
    if isinstance(min_available, str) and min_available.endswith("%"):
        total = expected()
        return Budget(healthy, int_or_percent(min_available, total, round_up=True), total)
    if min_available is not None:
        return Budget(healthy, int_or_percent(min_available, count, round_up=True), count)
    return Budget(healthy, 0, count)


def pdb_status(store: Store, pdb: JSON) -> JSON:
    b = budget(store, pdb)
    new: JSON = {"status": clone(pdb.get("status") or {})}
    new["status"].update(
        currentHealthy=b.current_healthy,
        desiredHealthy=b.desired_healthy,
        disruptionsAllowed=b.disruptions_allowed,
        expectedPods=b.expected_pods,
        observedGeneration=meta(pdb).get("generation", 1),
    )
    new["status"].pop("disruptedPods", None)
    allowed = b.disruptions_allowed > 0
    set_condition(
        new,
        "DisruptionAllowed",
        "True" if allowed else "False",
        "SufficientPods" if allowed else "InsufficientPods",
        observed_generation=int(meta(pdb).get("generation", 1)),
    )
    return dict(new["status"])


def refresh_pdb(registry: Registry, pdb: JSON, pacer: Pacer | None = None, now: float = 0) -> None:
    """Write the PDB's status if it changed (the disruption controller's job); `pacer`
    spaces out the writes."""
    status = pdb_status(registry.store, pdb)
    key = (str(meta(pdb).get("namespace")), name_of(pdb))
    if status != pdb.get("status") and (pacer is None or pacer.allow(key, now)):
        new = evolve(pdb)
        new["status"] = status
        registry.commit(PDBS, pdb, new)


def refresh_pdbs_for(registry: Registry, pod: JSON) -> None:
    for pdb in matching_pdbs(registry.store, pod):
        refresh_pdb(registry, pdb)


# ---- eviction ------------------------------------------------------------------------------


def _can_ignore_pdb(pod: JSON) -> bool:
    return is_terminal(pod) or pod_phase(pod) == "Pending" or is_terminating(pod)


def _parse(name: str, body: Any) -> DeleteOptions:
    if not isinstance(body, dict):
        raise errors.bad_request("not a Eviction object")
    if body.get("apiVersion") not in (None, *EVICTION_VERSIONS) or body.get("kind") not in (
        None,
        "Eviction",
    ):
        raise errors.bad_request(
            f"not a Eviction object: {body.get('apiVersion')}/{body.get('kind')}"
        )
    if name_of(body) != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    return DeleteOptions.parse(body.get("deleteOptions"), {})


def _check_budget(store: Store, pod: JSON, pdb: JSON) -> None:
    """Raise a 429 if evicting `pod` would take `pdb` below its minimum."""
    b = budget(store, pdb)
    if not pod_ready(pod):
        policy = spec(pdb).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if policy == "AlwaysAllow":
            return
        if b.current_healthy >= b.desired_healthy and b.desired_healthy > 0:
            return
    if b.disruptions_allowed == 0:
        raise errors.too_many_requests(
            VIOLATION,
            [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {name_of(pdb)} needs {b.desired_healthy} "
                    f"healthy pods and has {b.current_healthy} currently",
                }
            ],
        )


def evict(registry: Registry, namespace: str, name: str, body: Any, *, dry_run: bool) -> JSON:
    """POST pods/{name}/eviction. Returns the Status to answer; raises ApiError otherwise."""
    opts = _parse(name, body)
    opts.dry_run = opts.dry_run or dry_run
    pod = registry.require(PODS, namespace, name)
    if not _can_ignore_pdb(pod):
        pdbs = matching_pdbs(registry.store, pod)
        if len(pdbs) > 1:
            raise ApiError(
                500,
                "",
                "This pod has more than one PodDisruptionBudget, which the "
                "eviction subresource does not support.",
            )
        if pdbs:
            _check_budget(registry.store, pod, pdbs[0])
    if not opts.dry_run:
        _mark_and_delete(registry, pod, opts)
    return errors.success_status()


def _mark_and_delete(registry: Registry, pod: JSON, opts: DeleteOptions) -> None:
    """The DisruptionTarget condition first (a status write), then the graceful delete."""
    name = name_of(pod)
    registry._check_preconditions(PODS, pod, opts.uid, opts.resource_version)
    marked = evolve(pod, "status")
    set_condition(
        marked, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting"
    )
    pod = registry.commit(PODS, pod, marked)
    after = registry.delete(
        PODS, str(meta(pod).get("namespace")), name, DeleteOptions(grace_period=opts.grace_period)
    )
    refresh_pdbs_for(registry, after)
