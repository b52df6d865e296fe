"""Ahead of the eviction: tell each pod its deadline, and let it checkpoint.

- Every pod a drain moves (evicted, waited for or requeued) gets the annotations
  lifecycled.io/interruption-deadline (RFC 3339) and lifecycled.io/interruption-kind, and an
  Event. A downward-API volume shows them to the pod's containers, updated in place, with no
  Kubernetes permission of their own. A tighter deadline later (rebalance -> Spot warning)
  rewrites them.
- A pod annotated lifecycled.io/checkpoint-port (and optionally -path) is POSTed its deadline
  as JSON before its eviction or requeue, once; the eviction waits for the reply up to
  LIFECYCLED_CHECKPOINT_WAIT_SECONDS, never past the drain's cutoff.

Neither ever fails a drain: errors are logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from lifecycled import report
from lifecycled.clients.checkpoint import CheckpointClient
from lifecycled.clients.kube import JsonDict, KubeClient
from lifecycled.errors import NotFoundError, PermanentError, TemporaryError
from lifecycled.kube_events import EventRecorder
from lifecycled.observe import Metrics, fields
from lifecycled.pace import in_turn
from lifecycled.platforms import DrainState
from lifecycled.platforms.kube_pods import CHECKPOINT_PORT_ANNOTATION, PodRef
from lifecycled.record import PREFIX, DrainRecord
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

DEADLINE_ANNOTATION = PREFIX + "interruption-deadline"
KIND_ANNOTATION = PREFIX + "interruption-kind"
CHECKPOINT_PATH_ANNOTATION = PREFIX + "checkpoint-path"
DEFAULT_CHECKPOINT_PATH = "/checkpoint"
PATCHES_AT_ONCE = 8  # per drain; the cluster-wide bound is the Kubernetes client's budget
CALLED_MEMORY = 10_000  # pods whose checkpoint was called, remembered so it is called once


def rfc3339(at: datetime) -> str:
    """Whole seconds, rounded down: a deadline read off the pod is never late."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def notice_annotations(record: DrainRecord) -> dict[str, str]:
    return {DEADLINE_ANNOTATION: rfc3339(record.deadline), KIND_ANNOTATION: str(record.kind)}


def needs_notice(pod: JsonDict, wanted: dict[str, str]) -> bool:
    meta = pod.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return False  # already going: nothing it reads now changes that
    annotations = meta.get("annotations") or {}
    return any(annotations.get(k) != v for k, v in wanted.items())


def checkpoint_url(pod: JsonDict) -> str | None:
    """http://<pod IP>:<port><path>, or None when the pod asks for no call (or has no IP)."""
    annotations = pod.get("metadata", {}).get("annotations") or {}
    port = str(annotations.get(CHECKPOINT_PORT_ANNOTATION, "")).strip()
    ip = str(pod.get("status", {}).get("podIP") or "")
    if not port.isdigit() or not 0 < int(port) < 65536 or not ip:
        return None
    path = str(annotations.get(CHECKPOINT_PATH_ANNOTATION) or DEFAULT_CHECKPOINT_PATH)
    if not path.startswith("/"):
        path = "/" + path
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{int(port)}{path}"


class PodNotices:
    def __init__(
        self,
        kube: KubeClient,
        settings: Settings,
        metrics: Metrics,
        events: EventRecorder,
        checkpoints: CheckpointClient | None,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._metrics = metrics
        self._events = events
        self._checkpoints = checkpoints
        self._called: dict[str, float] = {}  # pod uid -> monotonic time of the call

    async def announce(self, node: str, record: DrainRecord, pods: list[JsonDict]) -> None:
        """Annotate the pods that do not carry this drain's deadline yet (a merge patch: the
        pod's other annotations are kept). Called on every listing; cheap once done."""
        if not self._settings.jobs.interruption_annotations:
            return
        wanted = notice_annotations(record)
        todo = [p for p in pods if needs_notice(p, wanted)]
        if not todo:
            return
        await in_turn(todo, lambda pod: self._annotate(node, pod, wanted), PATCHES_AT_ONCE)

    async def _annotate(self, node: str, pod: JsonDict, wanted: dict[str, str]) -> None:
        ref = PodRef.of(pod)
        try:
            await self._kube.patch_pod(
                ref.namespace, ref.name, {"metadata": {"annotations": wanted}}
            )
        except NotFoundError:
            return  # gone already
        except (TemporaryError, PermanentError) as exc:
            self._metrics.pod_notices.labels("error").inc()
            log.warning(
                "could not annotate a pod with its deadline; will retry",
                extra=fields(node=node, pod=str(ref), error=str(exc)),
            )
            return
        # The listing's copy is left alone: each pass lists afresh (and sees the patch), and a
        # storm's 19,000 slim pods would each grow an annotations dict here.
        self._metrics.pod_notices.labels("annotated").inc()
        self._events.post(
            ref.involved(),
            report.INTERRUPTION_DEADLINE,
            f"node {node} is interrupted ({wanted[KIND_ANNOTATION]}); "
            f"deadline {wanted[DEADLINE_ANNOTATION]}",
        )

    async def checkpoint(self, pod: JsonDict, node: str, drain: DrainState) -> None:
        """POST the deadline to the pod's checkpoint endpoint, once per pod, and wait for the
        reply up to the cap (never past the cutoff). Returns however the call went."""
        cap = self._settings.jobs.checkpoint_wait_seconds
        if self._checkpoints is None or cap <= 0:
            return
        url = checkpoint_url(pod)
        ref = PodRef.of(pod)
        if url is None or ref.uid in self._called:
            return
        loop = asyncio.get_running_loop()
        wait = min(cap, drain.cutoff() - loop.time())
        if wait <= 0:
            self._metrics.checkpoints.labels("no_time").inc()
            return
        self._remember(ref.uid)
        record = drain.record
        document = {
            "deadline": rfc3339(record.deadline),
            "kind": str(record.kind),
            "node": node,
            "namespace": ref.namespace,
            "pod": ref.name,
        }
        start = loop.time()
        outcome = "ok"
        try:
            async with asyncio.timeout(wait):
                await self._checkpoints.post(url, document)
        except TimeoutError:
            outcome = "timeout"
        except PermanentError:
            outcome = "http_error"
        except TemporaryError:
            outcome = "error"
        took = loop.time() - start
        self._metrics.checkpoints.labels(outcome).inc()
        self._metrics.checkpoint_duration.observe(took)
        log.log(
            logging.INFO if outcome == "ok" else logging.WARNING,
            "checkpoint call before eviction",
            extra=fields(node=node, pod=str(ref), outcome=outcome, seconds=round(took, 3)),
        )

    def _remember(self, uid: str) -> None:
        if len(self._called) >= CALLED_MEMORY:
            oldest = sorted(self._called, key=self._called.__getitem__)[: CALLED_MEMORY // 2]
            for key in oldest:
                del self._called[key]
        self._called[uid] = time.monotonic()
