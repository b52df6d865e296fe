"""Kubernetes Events (core/v1), recorded the way client-go's recorder does: never in the way.

`post` only puts the event on a bounded queue and returns; workers write it later. A storm
cannot flood etcd:
- per object and reason, a token bucket (`burst` writes, one more each `refill_seconds`)
  drops the rest: a reason repeated without end (eviction refusals) never uses up the budget
  of the others (a missed deadline, a forced termination); kubernetes/kubernetes#124747 put
  the reason in client-go's spam key for the same cause. Reasons are a closed set
  (lifecycled/report.py), so the writes per object stay bounded;
- the same reason on the same object within `aggregate_seconds` PATCHes the Event already
  written (`count` + 1, `lastTimestamp`, the newest message) instead of creating another.
Each object's events go through one worker, so they are written in the order they were posted.
Every outcome is counted in `lifecycled_kube_events_total`; a failed write is logged, never
raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lifecycled.errors import NotFoundError
from lifecycled.observe import Metrics, fields
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Create = Callable[[str, JsonDict], Awaitable[object]]
Patch = Callable[[str, str, JsonDict], Awaitable[object]]

COMPONENT = "lifecycled"
MESSAGE_LIMIT = 1024  # the API server refuses longer messages
MEMORY_CAP = 10_000  # objects remembered for buckets and aggregation


@dataclass(frozen=True, slots=True)
class Limits:
    """client-go's defaults: a burst of 25 per object and reason, one more every 5 minutes;
    the same reason folded into one Event for 10 minutes."""

    queue_size: int = 1000
    workers: int = 4
    burst: int = 25
    refill_seconds: float = 300.0
    aggregate_seconds: float = 600.0


def limits_of(settings: Settings) -> Limits:
    return Limits(
        burst=settings.notify.kube_events_burst,
        refill_seconds=settings.notify.kube_events_refill_seconds,
    )


@dataclass(slots=True)
class _Pending:
    namespace: str
    involved: JsonDict
    reason: str
    message: str
    type: str
    at: datetime


@dataclass(slots=True)
class _Written:
    name: str
    count: int
    since: float  # monotonic time of the first write


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def involved(obj: JsonDict) -> JsonDict:
    meta = obj.get("metadata", {})
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "uid": meta.get("uid", ""),
    }


def node_ref(name: str) -> JsonDict:
    """A Node as an Event's object, without reading it (a node's uid is not needed to be found
    by `kubectl describe node`, which selects on kind and name)."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Events on nodes, pods and jobs: `post` (or `await emit`) and forget."""

    def __init__(
        self,
        create: Create,
        patch: Patch | None = None,
        metrics: Metrics | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._create = create
        self._hold = hold  # awaited before each write: the platform's storm pacing
        self._patch = patch
        self._metrics = metrics or Metrics()
        self._limits = limits or Limits()
        self._clock = clock
        self._queues: list[asyncio.Queue[_Pending]] = [
            asyncio.Queue(self._limits.queue_size) for _ in range(max(1, self._limits.workers))
        ]
        self._buckets: dict[tuple[str, str, str, str], _Bucket] = {}
        self._written: dict[tuple[str, str, str, str], _Written] = {}
        self._serial = 0
        self.running_workers = 0

    # --- posting (never blocks, never raises) --------------------------------------------

    def post(self, obj: JsonDict, reason: str, message: str, *, warning: bool = False) -> None:
        ref = involved(obj)
        namespace = str(ref["namespace"] or "default")
        item = _Pending(
            namespace,
            ref,
            reason,
            message[:MESSAGE_LIMIT],
            "Warning" if warning else "Normal",
            datetime.now(UTC),
        )
        queue = self._queues[zlib.crc32(self._object(ref).__repr__().encode()) % len(self._queues)]
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self._count("dropped_queue_full")

    async def emit(
        self, obj: JsonDict, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """`post`, for callers that await (it returns at once)."""
        self.post(obj, reason, message, warning=warning)

    def node(self, name: str, reason: str, message: str, *, warning: bool = False) -> None:
        self.post(node_ref(name), reason, message, warning=warning)

    # --- writing -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[EventRecorder]:
        """Write events while inside; on exit, what is still queued is dropped (best effort)."""
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._work(queue), name=f"kube-events-{i}")
                for i, queue in enumerate(self._queues)
            ]
            try:
                yield self
            finally:
                for task in tasks:
                    task.cancel()

    async def flush(self) -> None:
        """Until every event posted so far is written (tests, the demo)."""
        for queue in self._queues:
            await queue.join()

    async def _work(self, queue: asyncio.Queue[_Pending]) -> None:
        self.running_workers += 1
        try:
            while True:
                item = await queue.get()
                try:
                    if self._hold is not None:
                        await self._hold()
                    await self._write(item)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # an event is never worth a crash
                    self._count("error")
                    log.info(
                        "could not record a Kubernetes event",
                        extra=fields(reason=item.reason, error=str(exc)),
                    )
                finally:
                    queue.task_done()
        finally:
            self.running_workers -= 1

    async def _write(self, item: _Pending) -> None:
        key = (*self._object(item.involved), item.reason)
        if not self._take_token(key):
            self._count("dropped_rate_limited")
            return
        now = self._clock()
        seen = self._written.get(key)
        fresh = seen is not None and now - seen.since < self._limits.aggregate_seconds
        if fresh and seen is not None and await self._aggregate(item, seen):
            return
        name = self._name(item)
        await self._create(item.namespace, self._event(item, name))
        self._remember(key, _Written(name, 1, now))
        self._count("created")

    async def _aggregate(self, item: _Pending, seen: _Written) -> bool:
        """PATCH the Event already written; False when it is gone (create a new one)."""
        if self._patch is None:
            return False
        body = {
            "count": seen.count + 1,
            "lastTimestamp": _stamp(item.at),
            "message": item.message,
        }
        try:
            await self._patch(item.namespace, seen.name, body)
        except NotFoundError:
            return False
        seen.count += 1
        self._count("aggregated")
        return True

    def _event(self, item: _Pending, name: str) -> JsonDict:
        stamp = _stamp(item.at)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": item.namespace},
            "involvedObject": item.involved,
            "reason": item.reason,
            "message": item.message,
            "type": item.type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": item.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "action": item.reason,
            "count": 1,
        }

    def _name(self, item: _Pending) -> str:
        # As client-go: the object's name and a hex timestamp; the serial keeps the order
        # (and uniqueness) of events posted in the same nanosecond.
        self._serial += 1
        return f"{item.involved['name'] or COMPONENT}.{time.time_ns():x}{self._serial % 4096:03x}"

    @staticmethod
    def _object(ref: JsonDict) -> tuple[str, str, str]:
        return (str(ref["kind"]), str(ref["namespace"]), str(ref["name"]))

    def _take_token(self, key: tuple[str, str, str, str]) -> bool:
        limits, now = self._limits, self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MEMORY_CAP:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[key] = _Bucket(float(limits.burst), now)
        refill = (now - bucket.at) / limits.refill_seconds if limits.refill_seconds else 0.0
        bucket.tokens = min(float(limits.burst), bucket.tokens + refill)
        bucket.at = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _remember(self, key: tuple[str, str, str, str], written: _Written) -> None:
        self._written.pop(key, None)
        self._written[key] = written
        if len(self._written) > MEMORY_CAP:
            self._written.pop(next(iter(self._written)))

    def _count(self, outcome: str) -> None:
        self._metrics.kube_events.labels(outcome).inc()
