"""One Drain per instance: a small state machine run as one task.

open (intent recorded, cordoned) -> evicting -> drained | deadline missed -> hook released
-> record closed. Later notices merge into it; a forced termination cancels it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

from lifecycled.events.model import Action
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import Platform
from lifecycled.record import DrainRecord, HookRef, Outcome
from lifecycled.settings import Settings

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Drain:
    def __init__(
        self,
        target: str,
        record: DrainRecord,
        *,
        platform: Platform,
        hooks: LifecycleHooks,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.target = target
        self.record = record
        self._platform = platform
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._done = asyncio.Event()  # stops heartbeats
        self._holding: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self.outcome: Outcome | None = None
        self.work_done = False  # from here on the machine may go: that is not a forced end
        self._merging = asyncio.Lock()  # a merge and the end of the work never interleave

    def remaining(self) -> float:
        return (self.record.deadline - utcnow()).total_seconds()

    def cutoff(self) -> float:
        """Loop time after which no new eviction starts: the deadline minus the margin."""
        left = self.remaining() - self._settings.deadline_margin_seconds
        return asyncio.get_running_loop().time() + left

    async def run(self) -> Outcome:
        self._metrics.drains_in_progress.inc()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._start_holding()
                outcome = await self._work()
                async with self._merging:
                    self.work_done = True
                await self._release_hook()
                await self._close(outcome)
            return outcome
        finally:
            self._done.set()
            self._metrics.drains_in_progress.dec()

    async def _work(self) -> Outcome:
        if self.record.action is Action.CORDON:
            return Outcome.CORDONED
        drained = await self._platform.vacate(self.target, self)
        if drained:
            return Outcome.DRAINED
        self._metrics.deadlines_missed.labels(self.record.kind).inc()
        log.error(
            "drain missed its deadline",
            extra=fields(
                node=self.target,
                instance=self.record.instance_id,
                kind=self.record.kind,
                deadline=self.record.deadline.isoformat(),
            ),
        )
        return Outcome.DEADLINE_MISSED

    def _start_holding(self) -> None:
        hook = self.record.hook
        if hook is None or self._holding is not None or self._tg is None:
            return
        self._holding = self._tg.create_task(
            self._hooks.hold(hook, self.record.instance_id, self._done),
            name=f"heartbeat-{self.record.instance_id}",
        )

    async def _release_hook(self) -> None:
        self._done.set()
        if self._holding is not None:
            await self._holding
        if self.record.hook is not None:
            await self._hooks.complete(self.record.hook, self.record.instance_id, "CONTINUE")

    async def _close(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.record = self.record.closed(outcome)
        await self._platform.write_record(self.target, self.record, cordon=False)
        took = (utcnow() - self.record.event_time).total_seconds()
        self._metrics.drain_duration.labels(self.record.kind, outcome).observe(took)
        log.info(
            "drain finished",
            extra=fields(
                node=self.target,
                instance=self.record.instance_id,
                kind=self.record.kind,
                outcome=outcome,
                seconds=round(took, 3),
            ),
        )

    async def merge(self, deadline: datetime | None, hook: HookRef | None) -> bool | None:
        """Tighten the deadline and/or attach a lifecycle hook.

        True when the record changed, False when there was nothing to change, None when the
        drain's work is already done (too late to merge: the caller opens a new drain).
        """
        async with self._merging:
            if self.work_done:
                return None
            updated = self.record
            if deadline is not None and deadline < updated.deadline:
                updated = replace(updated, deadline=deadline)
            if hook is not None and updated.hook is None:
                updated = replace(updated, hook=hook)
            if updated == self.record:
                return False
            await self._platform.write_record(self.target, updated, cordon=False)
            self.record = updated
        self._start_holding()
        log.info(
            "drain updated by a later notice",
            extra=fields(
                node=self.target,
                instance=updated.instance_id,
                deadline=updated.deadline.isoformat(),
                hook=bool(updated.hook),
            ),
        )
        return True

    async def end_forced(self) -> None:
        """The machine went while we were draining (its task is already cancelled): record it."""
        self._metrics.forced_terminations.labels(self.record.kind).inc()
        log.error(
            "instance terminated before its drain finished",
            extra=fields(node=self.target, instance=self.record.instance_id, kind=self.record.kind),
        )
        try:
            await self._close(Outcome.FORCED)
        except Exception as exc:  # the node object may be gone with the machine
            log.info(
                "could not close the drain record", extra=fields(node=self.target, error=str(exc))
            )
