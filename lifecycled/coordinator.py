"""The coordinator: one lock, one loop of facts -> planner -> executor per notice.

For each instance of a notice it gathers what it knows (seen before? a drain under way?),
asks `plan.decide` for the next step, gathers a fact the decision needs (`LookUp`) or has
the step carried out: its own bookkeeping here (the drains it runs, what was seen), writes
by the executor (`execute.Live`, or `execute.DryRun` for a trial). A drain's intent is on
the machine before `submit` returns, so the message may then be deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta

from lifecycled.bounded import Expiring
from lifecycled.drain import Drain, utcnow
from lifecycled.execute import Executor, executor_for
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.model import Disposition, InstanceId, Notice, NoticeKind
from lifecycled.observe import Metrics, fields
from lifecycled.ownership import Ownership
from lifecycled.plan import (
    NOT_IN_CLUSTER,
    Cancel,
    DrainStage,
    Duplicate,
    Facts,
    Forced,
    LookUp,
    Merge,
    Need,
    NotOurs,
    Open,
    Recorded,
    Release,
    Rules,
    Step,
    decide,
    ours,
)
from lifecycled.platforms import Platform
from lifecycled.record import DrainRecord, HookRef, Outcome, Phase
from lifecycled.replace import ReplaceAhead
from lifecycled.report import Reporter
from lifecycled.retry import keep_trying
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

# Outcomes of a rebalance drain that a timeout may undo (the node is still cordoned).
UNDOABLE = frozenset({Outcome.CORDONED, Outcome.DRAINED})


class Coordinator:
    def __init__(
        self,
        platform: Platform,
        hooks: LifecycleHooks,
        settings: Settings,
        metrics: Metrics,
        *,
        ownership: Ownership | None = None,
        executor: Executor | None = None,
        reporter: Reporter | None = None,
        replacer: ReplaceAhead | None = None,
    ) -> None:
        self._platform = platform
        self._replacer = replacer  # LIFECYCLED_REPLACE_AHEAD (replace.py)
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._ownership = ownership
        self._reporter = reporter or Reporter(metrics)  # Events, notifications, drain_info
        self._executor = executor or executor_for(settings, platform, hooks, metrics)
        self._rules = Rules.of(settings)
        # What the coordinator remembers expires and is capped (bounded.py): a handler that
        # runs for months hears of every instance its clusters ever had.
        self._foreign: Expiring[tuple[str, InstanceId]] = Expiring()  # judged not ours
        self._threatened: Expiring[InstanceId] = Expiring()  # told that the machine goes
        self._timers: set[asyncio.Task[None]] = set()  # rebalance uncordons to come
        self._drains: dict[InstanceId, tuple[Drain, asyncio.Task[object]]] = {}
        self._finished: Expiring[InstanceId] = Expiring()  # its drain ended
        self._seen: Expiring[tuple[str, InstanceId]] = Expiring()  # (event id, instance) handled
        self._locks: dict[InstanceId, tuple[asyncio.Lock, int]] = {}  # lock, users
        self._tg: asyncio.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Coordinator]:
        """Own every drain task; on exit, cancel the open ones (their intent is on the machine)."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await keep_trying(
                    self.resume, delays=self._settings.calls.retry_delays, what="resume"
                )
                try:
                    yield self
                finally:
                    for _drain, task in list(self._drains.values()):
                        task.cancel()
                    for timer in list(self._timers):  # the next start schedules them again
                        timer.cancel()
        finally:
            self._tg = None

    @property
    def open_drains(self) -> int:
        return len(self._drains)

    async def resume(self) -> None:
        for target, record in await self._platform.open_records():
            if not self._executor.takes_over(target, record):
                continue
            if record.phase is Phase.DONE and record.outcome in UNDOABLE:
                self._schedule_uncordon(target, record)
            if record.phase is Phase.OPEN and record.instance_id not in self._drains:
                log.info(
                    "resuming open drain",
                    extra=fields(node=target, instance=record.instance_id, kind=record.kind),
                )
                self._start(target, record)

    async def submit(self, notice: Notice) -> list[Disposition]:
        results = []
        for instance_id in notice.instance_ids:
            if notice.kind is NoticeKind.LIFECYCLE_LAUNCH:
                # Held (and the message with it) until the node is Ready: a crash redelivers it.
                results.append(await self._complete_launch(notice, instance_id))
                continue
            async with self._locked(instance_id):
                results.append(await self._submit_once(notice, instance_id))
        return results

    async def _submit_once(self, notice: Notice, instance_id: InstanceId) -> Disposition:
        """A notice counts as seen only once it was handled: its intent is on the machine, or
        it was decided to be nothing to do. A failed first attempt (an API error) raises, and
        its redelivery is a first attempt again, not a duplicate."""
        facts = Facts(
            notice,
            instance_id,
            seen=self._is_duplicate(notice, instance_id),
            foreign=self._known_foreign(notice, instance_id),
        )
        while True:
            facts = replace(facts, drain=self._stage(instance_id))  # a drain may end meanwhile
            step = decide(facts, self._rules)
            if ours(step):  # remembered as soon as it is ours, even if a later call fails
                self._note_threat(notice, instance_id)
            if isinstance(step, LookUp):
                facts = await self._look_up(facts, step.need)
                continue
            disposition = await self._execute(facts, step)
            if disposition is None:
                continue  # too late to merge: the drain's work is done
            if disposition not in (Disposition.NOT_OURS, Disposition.DUPLICATE):
                self._mark_seen(notice, instance_id)  # not ours may be ours later
            return disposition

    def _stage(self, instance_id: InstanceId) -> DrainStage:
        entry = self._drains.get(instance_id)
        if entry is not None:
            return DrainStage.WORK_DONE if entry[0].work_done else DrainStage.WORKING
        return DrainStage.ENDED if instance_id in self._finished else DrainStage.NONE

    async def _look_up(self, facts: Facts, need: Need) -> Facts:
        facts = replace(facts, looked_up=facts.looked_up | {need})
        match need:
            case Need.OWNER:
                target, why = await self._owner_check(facts.instance_id)
                return replace(facts, target=target, why_not_ours=why)
            case Need.TARGET:
                return replace(facts, target=await self._platform.resolve(facts.instance_id))
            case Need.HOOK:
                action = facts.notice.lifecycle
                info = await self._hooks.info(HookRef.of(action)) if action else None
                return replace(facts, hook_info=info)
            case Need.UNDO:
                return replace(facts, undo=await self._drain_on(facts.instance_id))
            case Need.DRAIN_END:
                entry = self._drains.get(facts.instance_id)
                if entry is not None:
                    await asyncio.wait([entry[1]])
                return facts

    async def _execute(self, facts: Facts, step: Step) -> Disposition | None:
        """Carry the step out; None when the drain it merges into finished its work first."""
        notice, instance_id = facts.notice, facts.instance_id
        match step:
            case Duplicate():
                self._metrics.duplicates.labels(notice.kind).inc()
                return Disposition.DUPLICATE
            case NotOurs(why=why):  # no why: judged so moments ago, nothing more to say
                return self._not_ours(notice, instance_id, why) if why else Disposition.NOT_OURS
            case Recorded(why=why):
                return self._recorded(notice, instance_id, why)
            case Forced():
                await self._force_end(instance_id)
                return Disposition.FORCED
            case Merge(deadline=deadline, hook=hook):
                merged = await self._drains[instance_id][0].merge(deadline, hook)
                return None if merged is None else Disposition.MERGED
            case Cancel():
                await self._stop(instance_id)
                return await self._executor.give_back(notice, step)
            case Release():
                return await self._executor.release(notice, step)
            case Open(target=target, record=record):
                disposition = await self._executor.open(notice, step)
                if disposition is Disposition.OPENED:
                    self._start(target, record)
                return disposition

    async def _complete_launch(self, notice: Notice, instance_id: InstanceId) -> Disposition:
        if notice.lifecycle is None:
            return self._recorded(notice, instance_id, "launch notice without a hook")
        # Before the node registers only the tag can tell whose instance this is; never
        # complete (or abandon) another cluster's launch.
        why = await self._ownership.why_not_ours(instance_id) if self._ownership else None
        if why is not None:
            return self._not_ours(notice, instance_id, why)
        return await self._executor.launch(notice, instance_id, HookRef.of(notice.lifecycle))

    @asynccontextmanager
    async def _locked(self, instance_id: InstanceId) -> AsyncIterator[None]:
        """The instance's lock, kept only while someone holds or awaits it."""
        lock, users = self._locks.get(instance_id, (asyncio.Lock(), 0))
        self._locks[instance_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[instance_id]
            if users == 1:
                del self._locks[instance_id]
            else:
                self._locks[instance_id] = (lock, users - 1)

    async def _owner_check(self, instance_id: InstanceId) -> tuple[str | None, str | None]:
        """(target, None) when the instance is ours, else (None, why not)."""
        if self._ownership is not None:
            why = await self._ownership.why_not_ours(instance_id)
            if why is not None:
                return None, why
        target = await self._platform.resolve(instance_id)
        if target is None:
            return None, NOT_IN_CLUSTER
        return target, None

    async def _drain_on(self, instance_id: InstanceId) -> tuple[str, DrainRecord] | None:
        """The drain on this instance: the one under way, else the record on the machine."""
        entry = self._drains.get(instance_id)
        if entry is not None:
            return entry[0].target, entry[0].record
        # A drain for a change days away is over long before AWS cancels the change; the
        # record on the node says what we did.
        records = await self._platform.open_records()
        return next(((t, r) for t, r in records if r.instance_id == instance_id), None)

    def _not_ours(self, notice: Notice, instance_id: InstanceId, why: str) -> Disposition:
        self._metrics.unknown_instances.labels(notice.kind).inc()
        log.info(
            "instance is not ours; notice left alone",
            extra=fields(instance=instance_id, kind=notice.kind, event_id=notice.event_id, why=why),
        )
        key = (notice.event_id, instance_id)
        self._foreign.add(key, max(self._settings.drain.node_cache_seconds, 1.0))
        return Disposition.NOT_OURS

    def _known_foreign(self, notice: Notice, instance_id: InstanceId) -> bool:
        """Judged not ours moments ago (a released message back again): no second look."""
        return (notice.event_id, instance_id) in self._foreign

    def _note_threat(self, notice: Notice, instance_id: InstanceId) -> None:
        """Remember instances told they will go: a rebalance timeout never uncordons those."""
        if notice.kind in (NoticeKind.REBALANCE_RECOMMENDATION, NoticeKind.TEST_NOTIFICATION):
            return
        if notice.cancelled:
            return
        # Kept past any give-back timer that could still fire for it.
        after = self._settings.drain.rebalance_uncordon_after_seconds or 0.0
        self._threatened.add(instance_id, max(self._settings.drain.dedupe_seconds, after) + 3600.0)

    def _is_duplicate(self, notice: Notice, instance_id: InstanceId) -> bool:
        return (notice.event_id, instance_id) in self._seen

    def _mark_seen(self, notice: Notice, instance_id: InstanceId) -> None:
        self._seen.add((notice.event_id, instance_id), self._settings.drain.dedupe_seconds)

    def _recorded(self, notice: Notice, instance_id: InstanceId, why: str) -> Disposition:
        log.info(
            "notice recorded; nothing to do",
            extra=fields(instance=instance_id, kind=notice.kind, state=notice.state, why=why),
        )
        return Disposition.RECORDED

    # --- the drains this coordinator runs --------------------------------------------------

    def _start(self, target: str, record: DrainRecord) -> None:
        assert self._tg is not None, "Coordinator.running() is not entered"
        drain = Drain(
            target,
            record,
            platform=self._platform,
            hooks=self._hooks,
            settings=self._settings,
            metrics=self._metrics,
            reporter=self._reporter,
            replacer=self._replacer,
        )
        task = self._tg.create_task(self._run(drain), name=f"drain-{record.instance_id}")
        self._drains[record.instance_id] = (drain, task)

    async def _run(self, drain: Drain) -> object:
        instance_id = drain.record.instance_id
        try:
            outcome = await drain.run()
            if outcome in UNDOABLE:
                self._schedule_uncordon(drain.target, drain.record)
            return outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            # A broken drain must not take the service down; its record stays open and
            # the next start (or notice) resumes it.
            log.exception("drain failed", extra=fields(instance=instance_id, node=drain.target))
            return None
        finally:
            if self._drains.get(instance_id, (None,))[0] is drain:
                del self._drains[instance_id]
                self._finished.add(instance_id, self._settings.drain.dedupe_seconds)

    async def _stop(self, instance_id: InstanceId) -> Drain | None:
        """Cancel the drain under way, if any, and wait until it stopped."""
        entry = self._drains.pop(instance_id, None)
        if entry is None:
            return None
        drain, task = entry
        task.cancel()
        await asyncio.wait([task])
        self._finished.add(instance_id, self._settings.drain.dedupe_seconds)
        return drain

    async def _force_end(self, instance_id: InstanceId) -> None:
        drain = await self._stop(instance_id)
        if drain is not None:
            await drain.end_forced()

    # --- rebalance recommendations that never became interruptions -------------------------

    def _schedule_uncordon(self, target: str, record: DrainRecord) -> None:
        after = self._settings.drain.rebalance_uncordon_after_seconds
        if after is None or self._tg is None:
            return
        if record.kind is not NoticeKind.REBALANCE_RECOMMENDATION:
            return
        timer = self._tg.create_task(
            self._uncordon_later(target, record, record.event_time + timedelta(seconds=after)),
            name=f"uncordon-{record.instance_id}",
        )
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _uncordon_later(self, target: str, record: DrainRecord, at: datetime) -> None:
        """At `at`, give the node back if nothing since said the machine goes."""
        await asyncio.sleep(max(0.0, (at - utcnow()).total_seconds()))
        instance_id = record.instance_id
        try:
            async with self._locked(instance_id):
                if instance_id in self._drains or instance_id in self._threatened:
                    return
                current = next(
                    (r for t, r in await self._platform.open_records() if t == target), None
                )
                if current is None or not _still_this_rebalance(current, record):
                    return  # a later notice rewrote the record, or the node is gone
                await self._platform.uncordon(target, current.closed(Outcome.UNCORDONED))
                self._reporter.given_back(target, current)
        except Exception:
            # A failed give-back leaves the node cordoned (safe); the next start retries it.
            log.exception(
                "could not uncordon after a rebalance recommendation",
                extra=fields(node=target, instance=instance_id),
            )
            return
        self._metrics.drains_cancelled.labels(record.kind).inc()
        log.info(
            "rebalance recommendation did not become an interruption; node uncordoned",
            extra=fields(node=target, instance=instance_id, event_id=record.event_id),
        )


def _still_this_rebalance(current: DrainRecord, record: DrainRecord) -> bool:
    return (
        current.instance_id == record.instance_id
        and current.kind is NoticeKind.REBALANCE_RECOMMENDATION
        and current.event_id == record.event_id
        and current.phase is Phase.DONE
        and current.outcome in UNDOABLE
        and current.hook is None  # a terminate hook merged in: the machine is going
    )
