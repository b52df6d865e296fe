"""Which pods a drain moves, and how a pod is named: shared by the drain (kubernetes.py) and
its preview (kube_preview.py), so neither imports the other."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lifecycled.clients.kube import JsonDict

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Large and never read by a drain (kubectl apply's copy of the manifest).
UNREAD_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def slim_pod(pod: JsonDict) -> JsonDict:
    """What a drain reads of a pod (who owns it, its annotations, whether it is going, its
    grace period): a storm's drains keep tens of thousands of these between passes, not
    tens of thousands of full pods. A requeue reads the whole pod afresh."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    annotations = meta.get("annotations") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **{k: meta[k] for k in ("name", "namespace", "uid", "deletionTimestamp") if k in meta},
            "labels": dict(meta.get("labels") or {}),
            "annotations": {k: v for k, v in annotations.items() if k not in UNREAD_ANNOTATIONS},
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
        "spec": {k: spec[k] for k in ("nodeName", "terminationGracePeriodSeconds") if k in spec},
        "status": {"phase": pod.get("status", {}).get("phase")},
    }


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
