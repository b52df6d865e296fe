"""One Drain per instance: a small state machine run as one task.

open (intent recorded, cordoned) -> evicting -> drained | deadline missed -> hook released
-> record closed. Later notices merge into it; a forced termination cancels it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

from lifecycled.errors import LifecycledError, NotFoundError, PermanentError, TemporaryError
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.model import Action
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import Platform
from lifecycled.record import DrainRecord, HookRef, Outcome, Replacement
from lifecycled.replace import ReplaceAhead
from lifecycled.report import Progress, Reporter
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
        reporter: Reporter | None = None,
        replacer: ReplaceAhead | None = None,
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
        self._reporter = reporter or Reporter(metrics)
        self.progress = Progress()  # what the platform saw: pods evicted, pods left
        self._replacer = replacer

    def remaining(self) -> float:
        return (self.record.deadline - utcnow()).total_seconds()

    def cutoff(self) -> float:
        """Loop time after which no new eviction starts: the deadline minus the margin."""
        left = self.remaining() - self._settings.drain.deadline_margin_seconds
        return asyncio.get_running_loop().time() + left

    async def run(self) -> Outcome:
        self._metrics.drains_in_progress.inc()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._start_holding()
                if self.record.action is Action.DRAIN:
                    self._reporter.drain_started(self.target, self.record)
                if self._replacer is not None:  # the replacement boots while we drain
                    await self._replacer.ahead(self.record, self._save_replacement)
                    self._reporter.replacement_requested(self.target, self.record)
                outcome = await self._work()
                async with self._merging:
                    self.work_done = True
                self._reporter.drain_ended(self.target, self.record, outcome, self.progress)
                await self._release_hook()
                await self._settle_replacement(outcome)
                await self._close(outcome)
            return outcome
        finally:
            self._done.set()
            self._metrics.drains_in_progress.dec()
            self._reporter.drain_closed(self.target, self.record)

    async def _work(self) -> Outcome:
        """Vacate; a temporary error retries (with back-off) until the cutoff, a permanent one
        ends the drain as `failed`. Either way the hook is released after, never left."""
        if self.record.action is Action.CORDON:
            return Outcome.CORDONED
        loop = asyncio.get_running_loop()
        delays = self._settings.calls.retry_delays or (1.0,)
        failures = 0
        while True:
            try:
                drained = await self._platform.vacate(self.target, self)
                break
            except TemporaryError as exc:
                delay = exc.delay or delays[min(failures, len(delays) - 1)]
                failures += 1
                self._metrics.drain_errors.labels(self.record.kind, "temporary").inc()
                if loop.time() + delay >= self.cutoff():
                    drained = False
                    break
                log.warning(
                    "drain step failed; will retry",
                    extra=fields(node=self.target, attempt=failures, delay=delay, error=str(exc)),
                )
                await asyncio.sleep(delay)
            except PermanentError as exc:
                return self._failed(exc)
            except Exception as exc:  # a bug: still release the hook, and say where it broke
                log.exception("drain broke", extra=fields(node=self.target))
                return self._failed(exc)
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
                pods_left=(self.progress.left or [])[:50],
                pods_left_count=len(self.progress.left or []),
            ),
        )
        return Outcome.DEADLINE_MISSED

    async def _save_replacement(self, replacement: Replacement) -> None:
        """Replace-ahead's intent, on the record (under the merge lock: a merge may have
        tightened the deadline meanwhile)."""
        async with self._merging:
            updated = replace(self.record, replacement=replacement)
            await self._platform.write_record(self.target, updated, cordon=False)
            self.record = updated

    async def _settle_replacement(self, outcome: Outcome) -> None:
        if self._replacer is not None:
            self.record = await self._replacer.settle(self.record, outcome)

    def _failed(self, exc: Exception) -> Outcome:
        self._metrics.drain_errors.labels(self.record.kind, "permanent").inc()
        log.error(
            "drain failed; releasing its hook",
            extra=fields(
                node=self.target,
                instance=self.record.instance_id,
                kind=self.record.kind,
                error=str(exc),
            ),
        )
        return Outcome.FAILED

    def _start_holding(self) -> None:
        hook = self.record.hook
        if hook is None or self._holding is not None or self._tg is None:
            return
        self._holding = self._tg.create_task(
            self._hooks.hold(hook, self.record.instance_id, self._done, self._heartbeat_failed),
            name=f"heartbeat-{self.record.instance_id}",
        )
        self._reporter.hook_held(self.target, self.record)

    def _heartbeat_failed(self, error: str) -> None:
        self._reporter.heartbeat_failed(self.target, self.record, error)

    async def _release_hook(self) -> None:
        self._done.set()
        if self._holding is not None:
            await self._holding
        if self.record.hook is None:
            return
        try:
            done = await self._hooks.complete(self.record.hook, self.record.instance_id, "CONTINUE")
            self._reporter.hook_released(self.target, self.record, "CONTINUE", done)
        except LifecycledError as exc:
            self._reporter.hook_released(self.target, self.record, "CONTINUE", False)
            # Counted by `complete`; the record stays open, so the next start tries again.
            log.error(
                "could not complete the lifecycle hook",
                extra=fields(
                    instance=self.record.instance_id, hook=self.record.hook.name, error=str(exc)
                ),
            )

    async def _close(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.record = self.record.closed(outcome)
        try:
            await self._platform.write_record(self.target, self.record, cordon=False)
        except NotFoundError:
            log.info(
                "target gone before its drain record was closed", extra=fields(node=self.target)
            )
        except LifecycledError as exc:
            # The record stays open on the machine: the next start resumes and closes it.
            log.warning(
                "could not close the drain record", extra=fields(node=self.target, error=str(exc))
            )
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
        self._reporter.forced(self.target, self.record, self.progress)
        log.error(
            "instance terminated before its drain finished",
            extra=fields(node=self.target, instance=self.record.instance_id, kind=self.record.kind),
        )
        await self._settle_replacement(Outcome.FORCED)
        await self._close(Outcome.FORCED)  # the node object may be gone with the machine
