"""Jobs: what to do with work that must not die half-done. Platform-neutral and pure.

A *job* is a pod owned by a batch/v1 Job (or marked `lifecycled.io/job: "true"`), or an ECS
task started by RunTask. Its idempotency is declared with `lifecycled.io/idempotent`.

- Long deadline (a hook held by heartbeats, a scheduled change days away): wait for jobs.
- Short deadline (a Spot warning), or a long one running out: idempotent jobs are evicted
  (their controller retries them); non-idempotent ones are requeued exactly once.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass

from lifecycled.record import PREFIX

JOB_ANNOTATION = PREFIX + "job"
IDEMPOTENT_ANNOTATION = PREFIX + "idempotent"
CHECKPOINT_KEYS_ANNOTATION = PREFIX + "checkpoint-keys"
REQUEUE_ANNOTATION = PREFIX + "requeue"  # the exactly-once record, on the original
REQUEUE_OF_ANNOTATION = PREFIX + "requeue-of"
ATTEMPT_ANNOTATION = PREFIX + "attempt"
REASON_ANNOTATION = PREFIX + "reason"
MAX_NAME = 63


class Decision(enum.StrEnum):
    EVICT = "evict"  # stop it now; its controller (or nobody) retries it
    WAIT = "wait"  # let it finish; the drain waits
    REQUEUE = "requeue"  # stop it and start it again elsewhere, exactly once


@dataclass(frozen=True, slots=True)
class Workload:
    is_job: bool
    idempotent: bool
    # False: requeueing is off for it (LIFECYCLED_REQUEUE_ENABLED / _NAMESPACES); a
    # non-idempotent job is then treated as an idempotent one.
    requeue: bool = True


def parse_flag(value: object, default: bool) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return default


def decide(workload: Workload, *, remaining: float, stop_lead: float) -> Decision:
    """`remaining`: seconds to the drain's deadline; jobs are stopped `stop_lead` before it."""
    if not workload.is_job:
        return Decision.EVICT
    if remaining > stop_lead:
        return Decision.WAIT
    if workload.idempotent or not workload.requeue:
        return Decision.EVICT
    return Decision.REQUEUE


def requeue_name(original: str, attempt: int) -> str:
    """A deterministic name, so a retried or duplicated requeue can never make two copies."""
    base = original
    if REQUEUE_SUFFIX_SEP in original:  # a requeue of a requeue keeps the first name's stem
        base = original.rsplit(REQUEUE_SUFFIX_SEP, 1)[0]
    suffix = f"{REQUEUE_SUFFIX_SEP}{attempt}"
    if len(base) + len(suffix) > MAX_NAME:
        digest = hashlib.sha256(base.encode()).hexdigest()[:6]
        base = base[: MAX_NAME - len(suffix) - 7] + "-" + digest
    return base + suffix


REQUEUE_SUFFIX_SEP = "-requeue-"


@dataclass(frozen=True, slots=True)
class RequeueRecord:
    """Written on the original before anything is created or stopped."""

    copy: str  # the deterministic name of the new job (or the SQS deduplication id)
    attempt: int
    reason: str
    node: str
    done: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RequeueRecord:
        data = json.loads(text)
        return cls(
            copy=str(data["copy"]),
            attempt=int(data["attempt"]),
            reason=str(data["reason"]),
            node=str(data["node"]),
            done=bool(data.get("done", False)),
        )
