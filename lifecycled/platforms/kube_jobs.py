"""Kubernetes jobs: classify job pods, and requeue non-idempotent ones exactly once.

Requeue = record the intent on the original (annotation, resourceVersion-guarded), create
the copy under a deterministic name (AlreadyExists is success), stop the original, mark the
record done. A crash, a duplicate notice or a second handler at any point converges on one
copy: they all find the same record and the same name.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import json
import logging
import time

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.kube import JsonDict, KubeClient
from lifecycled.errors import AlreadyExistsError, ConflictError, NotFoundError
from lifecycled.jobs import (
    ATTEMPT_ANNOTATION,
    CHECKPOINT_KEYS_ANNOTATION,
    IDEMPOTENT_ANNOTATION,
    JOB_ANNOTATION,
    REASON_ANNOTATION,
    REQUEUE_ANNOTATION,
    REQUEUE_OF_ANNOTATION,
    RequeueRecord,
    Workload,
    parse_flag,
    requeue_name,
)
from lifecycled.kube_events import EventRecorder
from lifecycled.observe import Metrics, fields
from lifecycled.record import PREFIX
from lifecycled.retry import retry
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

CHECKPOINT_ANNOTATION = PREFIX + "checkpoint"
JOB_CACHE_SECONDS = 30.0
# Labels and fields the API server generates for a Job: a copy carrying them is refused (422).
GENERATED_LABELS = frozenset(
    {
        "controller-uid",
        "job-name",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
    }
)
RECORD_ANNOTATIONS = frozenset(
    {
        REQUEUE_ANNOTATION,
        REQUEUE_OF_ANNOTATION,
        ATTEMPT_ANNOTATION,
        REASON_ANNOTATION,
        CHECKPOINT_ANNOTATION,
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)


def controller_of(obj: JsonDict) -> JsonDict | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def annotations_of(obj: JsonDict) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def is_job_pod(pod: JsonDict) -> bool:
    owner = controller_of(pod)
    if owner is not None and owner.get("kind") == "Job":
        return True
    return parse_flag(annotations_of(pod).get(JOB_ANNOTATION), False)


def checkpoint_of(obj: JsonDict, template: JsonDict) -> dict[str, str]:
    """Values of the keys named in lifecycled.io/checkpoint-keys (env, annotations, labels)."""
    names = [k.strip() for k in annotations_of(obj).get(CHECKPOINT_KEYS_ANNOTATION, "").split(",")]
    wanted = [n for n in names if n]
    found: dict[str, str] = {}
    meta = template.get("metadata", {})
    for container in template.get("spec", {}).get("containers", []):
        for env in container.get("env") or []:
            if env.get("name") in wanted and "value" in env:
                found[env["name"]] = str(env["value"])
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}, annotations_of(obj)):
        for key in wanted:
            if key in source and key not in found:
                found[key] = str(source[key])
    return found


def exclude_node(pod_spec: JsonDict, node: str) -> None:
    """Required node affinity that keeps the copy off the draining node (every term, ANDed)."""
    affinity = pod_spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = affinity.setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": []}
    )
    terms = required.setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({})
    away = {"key": "metadata.name", "operator": "NotIn", "values": [node]}
    for term in terms:
        term.setdefault("matchFields", []).append(away)


def copy_metadata(obj: JsonDict, record: RequeueRecord, checkpoint: dict[str, str]) -> JsonDict:
    meta = obj["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in GENERATED_LABELS}
    kept = {k: v for k, v in annotations_of(obj).items() if k not in RECORD_ANNOTATIONS}
    kept.update(
        {
            REQUEUE_OF_ANNOTATION: str(meta["name"]),
            ATTEMPT_ANNOTATION: str(record.attempt),
            REASON_ANNOTATION: record.reason,
        }
    )
    if checkpoint:
        kept[CHECKPOINT_ANNOTATION] = json.dumps(checkpoint, sort_keys=True)
    return {
        "name": record.copy,
        "namespace": meta.get("namespace", "default"),
        "labels": labels,
        "annotations": kept,
    }


def job_copy(job: JsonDict, record: RequeueRecord, checkpoint: dict[str, str]) -> JsonDict:
    spec: JsonDict = copy.deepcopy(job["spec"])
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    spec["suspend"] = False
    template = spec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {
        k: v for k, v in (tmeta.get("labels") or {}).items() if k not in GENERATED_LABELS
    }
    exclude_node(template.setdefault("spec", {}), record.node)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": copy_metadata(job, record, checkpoint),
        "spec": spec,
    }


def pod_copy(pod: JsonDict, record: RequeueRecord, checkpoint: dict[str, str]) -> JsonDict:
    spec: JsonDict = copy.deepcopy(pod["spec"])
    spec.pop("nodeName", None)
    exclude_node(spec, record.node)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": copy_metadata(pod, record, checkpoint),
        "spec": spec,
    }


class JobRequeuer:
    def __init__(
        self,
        kube: KubeClient,
        aws: AwsClients,
        settings: Settings,
        metrics: Metrics,
        events: EventRecorder,
    ) -> None:
        self._kube = kube
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._events = events
        # Job objects for the idempotency lookup: short-lived, so the cache cannot grow
        # with every job the service ever saw, nor serve an annotation changed since.
        self._jobs: dict[tuple[str, str], tuple[float, JsonDict | None]] = {}

    async def workload(self, pod: JsonDict) -> Workload:
        if not is_job_pod(pod):
            return Workload(is_job=False, idempotent=True)
        declared = annotations_of(pod).get(IDEMPOTENT_ANNOTATION)
        owner = controller_of(pod)
        if declared is None and owner is not None and owner.get("kind") == "Job":
            job = await self._job(str(pod["metadata"].get("namespace")), str(owner["name"]))
            declared = annotations_of(job).get(IDEMPOTENT_ANNOTATION) if job else None
        jobs = self._settings.jobs
        namespace = str(pod["metadata"].get("namespace", "default"))
        requeue = jobs.requeue_enabled and (
            not jobs.requeue_namespaces or namespace in jobs.requeue_namespaces
        )
        return Workload(
            is_job=True, idempotent=parse_flag(declared, jobs.idempotent_default), requeue=requeue
        )

    async def _job(self, namespace: str, name: str) -> JsonDict | None:
        now = time.monotonic()
        key = (namespace, name)
        cached = self._jobs.get(key)
        if cached is not None and now - cached[0] < JOB_CACHE_SECONDS:
            return cached[1]
        try:
            job: JsonDict | None = await self._kube.get_job(namespace, name)
        except NotFoundError:
            job = None
        for stale in [k for k, (at, _) in self._jobs.items() if now - at >= JOB_CACHE_SECONDS]:
            del self._jobs[stale]
        self._jobs[key] = (now, job)
        return job

    async def requeue(self, pod: JsonDict, node: str, reason: str) -> bool:
        """True when the job was requeued (or already was); False: the caller evicts it."""
        namespace = str(pod["metadata"].get("namespace", "default"))
        owner = controller_of(pod)
        target: _Target
        if owner is not None and owner.get("kind") == "Job":
            target = _JobTarget(self._kube, namespace, str(owner["name"]))
        elif owner is None:
            target = _PodTarget(self._kube, namespace, str(pod["metadata"]["name"]))
        else:
            log.warning(
                "cannot requeue a job pod owned by this controller; evicting it",
                extra=fields(pod=f"{namespace}/{pod['metadata']['name']}", owner=owner.get("kind")),
            )
            return False
        return await retry(
            lambda: self._requeue(target, node, reason),
            delays=self._settings.calls.retry_delays,
            what=f"requeue {target.describe()}",
            on=ConflictError,  # a concurrent writer: read again; the client retries the rest
        )

    async def _requeue(self, target: _Target, node: str, reason: str) -> bool:
        try:
            original = await target.get()
        except NotFoundError:
            return True  # gone already: nothing left to save
        text = annotations_of(original).get(REQUEUE_ANNOTATION)
        record = RequeueRecord.from_json(text) if text else None
        if record is None:
            attempt = int(annotations_of(original).get(ATTEMPT_ANNOTATION, "0") or 0) + 1
            if attempt > self._settings.jobs.requeue_max_attempts:
                await self._limit_reached(original, attempt)
                return False
            name = str(original["metadata"]["name"])
            record = RequeueRecord(requeue_name(name, attempt), attempt, reason, node)
            # The intent goes first, guarded: a concurrent writer gets 409 and re-reads.
            await target.annotate(original, record)
            log.info("requeue recorded", extra=fields(job=target.describe(), copy=record.copy))
        if record.done:
            return True
        await self._start_copy(target, original, record)
        await target.stop()
        done = RequeueRecord(record.copy, record.attempt, record.reason, record.node, done=True)
        with contextlib.suppress(NotFoundError):  # a stopped bare pod may be gone already
            await target.annotate(await target.get(), done)
        self._metrics.jobs_requeued.labels(record.reason).inc()
        log.info(
            "job requeued",
            extra=fields(
                job=target.describe(),
                copy=record.copy,
                attempt=record.attempt,
                reason=record.reason,
            ),
        )
        await self._events.emit(
            original,
            "Requeued",
            f"interrupted ({record.reason}); requeued as {record.copy}, attempt {record.attempt}",
        )
        return True

    async def _start_copy(self, target: _Target, original: JsonDict, record: RequeueRecord) -> None:
        body = target.copy(original, record)
        if self._settings.jobs.requeue_queue_url:
            await self._hand_off(original, body, record)
            return
        # AlreadyExists: an earlier attempt (or another handler) created it. Exactly once.
        with contextlib.suppress(AlreadyExistsError):
            await target.create(body)
        log.info("requeue copy created", extra=fields(job=target.describe(), copy=record.copy))

    async def _hand_off(self, original: JsonDict, body: JsonDict, record: RequeueRecord) -> None:
        assert self._settings.jobs.requeue_queue_url
        meta = original["metadata"]
        message = {
            "kind": "lifecycled.requeue",
            "original": {
                "namespace": meta.get("namespace"),
                "name": meta["name"],
                "uid": meta.get("uid"),
            },
            "attempt": record.attempt,
            "reason": record.reason,
            "checkpoint": json.loads(
                body["metadata"]["annotations"].get(CHECKPOINT_ANNOTATION, "{}")
            ),
            "manifest": body,
        }
        await self._aws.sqs.send_message(
            self._settings.jobs.requeue_queue_url,
            json.dumps(message, sort_keys=True),
            deduplication_id=f"{meta.get('uid', meta['name'])}-{record.attempt}",
            group_id=f"{meta.get('namespace')}/{meta['name']}",
        )

    async def _limit_reached(self, original: JsonDict, attempt: int) -> None:
        self._metrics.requeue_limit.inc()
        name = original["metadata"]["name"]
        log.error(
            "job reached its requeue limit; not requeued",
            extra=fields(job=name, attempt=attempt, limit=self._settings.jobs.requeue_max_attempts),
        )
        await self._events.emit(
            original,
            "RequeueLimitReached",
            f"attempt {attempt} exceeds the limit of "
            f"{self._settings.jobs.requeue_max_attempts}; not requeued",
            warning=True,
        )


class _Target(abc.ABC):
    """One kind of original (a Job, or a bare pod): how to read, mark, copy and stop it."""

    def __init__(self, kube: KubeClient, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    @abc.abstractmethod
    async def get(self) -> JsonDict: ...

    @abc.abstractmethod
    async def patch(self, patch: JsonDict) -> None: ...

    @abc.abstractmethod
    def copy(self, original: JsonDict, record: RequeueRecord) -> JsonDict: ...

    @abc.abstractmethod
    async def create(self, body: JsonDict) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def annotate(self, current: JsonDict, record: RequeueRecord) -> None:
        await self.patch(
            {
                "metadata": {
                    "resourceVersion": current["metadata"].get("resourceVersion"),
                    "annotations": {REQUEUE_ANNOTATION: record.to_json()},
                }
            }
        )


class _JobTarget(_Target):
    async def get(self) -> JsonDict:
        return await self.kube.get_job(self.namespace, self.name)

    async def patch(self, patch: JsonDict) -> None:
        await self.kube.patch_job(self.namespace, self.name, patch)

    def copy(self, original: JsonDict, record: RequeueRecord) -> JsonDict:
        return job_copy(original, record, checkpoint_of(original, original["spec"]["template"]))

    async def create(self, body: JsonDict) -> None:
        await self.kube.create_job(self.namespace, body)

    async def stop(self) -> None:
        # Suspending terminates the Job's pods gracefully and keeps the Job (and its record).
        await self.patch({"spec": {"suspend": True}})


class _PodTarget(_Target):
    async def get(self) -> JsonDict:
        return await self.kube.get_pod(self.namespace, self.name)

    async def patch(self, patch: JsonDict) -> None:
        await self.kube.patch_pod(self.namespace, self.name, patch)

    def copy(self, original: JsonDict, record: RequeueRecord) -> JsonDict:
        return pod_copy(original, record, checkpoint_of(original, original))

    async def create(self, body: JsonDict) -> None:
        await self.kube.create_pod(self.namespace, body)

    async def stop(self) -> None:
        with contextlib.suppress(NotFoundError):
            await self.kube.delete_pod(self.namespace, self.name)
