"""Which pods a drain moves, and how a pod is named: shared by the drain (kubernetes.py) and
its preview (kube_preview.py), so neither imports the other."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from lifecycled.clients.kube import JsonDict

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
READ_ANNOTATIONS = ("lifecycled.io/", MIRROR_ANNOTATION)  # the only ones a drain reads
CHECKPOINT_PORT_ANNOTATION = "lifecycled.io/checkpoint-port"  # kube_notice.py


def slim_pod(pod: JsonDict) -> JsonDict:
    """What a drain reads of a pod: its name and uid, whether it is going, its controller,
    our annotations, its grace period and phase. A storm's drains keep tens of thousands of
    these between passes (18,900 at 1,000 warnings), so nothing else is kept: no labels, no
    foreign annotations, no second owner; and only new small dicts, so none of the listing's
    parse stays alive behind them. The parts most pods have alike (our annotations, the
    controller, the grace period, the phase) are one shared object each (`_shared`): nothing
    writes to a slim pod.
    A requeue reads the whole pod afresh."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    slim_meta = {k: meta[k] for k in ("name", "uid", "deletionTimestamp") if k in meta}
    if "namespace" in meta:
        slim_meta["namespace"] = sys.intern(str(meta["namespace"]))  # a few, shared by all
    annotations = meta.get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if k.startswith(READ_ANNOTATIONS)}
    if kept:  # after the deadline annotation, a drain's pods all carry the same two
        slim_meta["annotations"] = _shared(("annotations", *sorted(kept.items())), kept)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            owner = {"kind": ref.get("kind"), "name": ref.get("name"), "controller": True}
            slim_meta["ownerReferences"] = _shared(("owner", owner["kind"], owner["name"]), [owner])
            break
    slim: JsonDict = {"apiVersion": "v1", "kind": "Pod", "metadata": slim_meta}
    if "terminationGracePeriodSeconds" in spec:
        grace = spec["terminationGracePeriodSeconds"]
        slim["spec"] = _shared(("spec", grace), {"terminationGracePeriodSeconds": grace})
    status = pod.get("status", {})
    phase = status.get("phase")
    if CHECKPOINT_PORT_ANNOTATION in kept and status.get("podIP"):
        slim["status"] = {"phase": phase, "podIP": status["podIP"]}  # the checkpoint call
    else:
        slim["status"] = _shared(("status", phase), {"phase": phase})
    return slim


_SHARED: dict[tuple[object, ...], Any] = {}
_SHARED_LIMIT = 4096  # distinct controllers x grace periods x phases: a bound, not a cache


def _shared(key: tuple[object, ...], part: Any) -> Any:
    """One object for every slim pod with this part alike (a storm's 19,000 pods hold a few
    hundred of them, not 19,000 each)."""
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        found = _SHARED[key] = part
    return found


def is_skipped(pod: JsonDict) -> str | None:
    """Why a drain leaves this pod alone, or None when it must go."""
    meta = pod.get("metadata", {})
    if MIRROR_ANNOTATION in meta.get("annotations", {}):
        return "mirror"
    if any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences", [])):
        return "daemonset"
    if is_own_pod(meta):
        return "self"
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return "finished"
    return None


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    terminating: bool

    @classmethod
    def of(cls, pod: JsonDict) -> PodRef:
        meta = pod["metadata"]
        return cls(
            namespace=str(meta.get("namespace", "default")),
            name=str(meta["name"]),
            uid=str(meta.get("uid", meta["name"])),
            terminating=bool(meta.get("deletionTimestamp")),
        )

    def involved(self) -> JsonDict:
        """The pod as a Kubernetes Event's object."""
        meta = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta}

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def is_own_pod(meta: JsonDict) -> bool:
    """This handler's own pod (downward API POD_NAME / POD_NAMESPACE). In DaemonSet mode it
    must be the last thing standing: it finishes the drain and serves metrics until the end."""
    name = os.environ.get("POD_NAME")
    if not name or meta.get("name") != name:
        return False
    namespace = os.environ.get("POD_NAMESPACE")
    return namespace is None or meta.get("namespace", "default") == namespace
