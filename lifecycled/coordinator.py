"""The coordinator decides; platforms act.

One Drain per instance. A notice either opens a drain (its intent recorded on the machine
before `submit` returns, so the message may then be deleted), merges into the open one,
ends it as a forced termination, or is recorded and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from lifecycled.drain import Drain, utcnow
from lifecycled.errors import NotFoundError
from lifecycled.events import default_action
from lifecycled.events.actions import CHOOSABLE
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.model import (
    TERMINATED_STATES,
    Action,
    Disposition,
    InstanceId,
    Notice,
    NoticeKind,
)
from lifecycled.observe import Metrics, fields
from lifecycled.ownership import Ownership
from lifecycled.platforms import Platform, Previewer
from lifecycled.record import DrainRecord, HookRef, Outcome, Phase
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

# Outcomes of a rebalance drain that a timeout may undo (the node is still cordoned).
UNDOABLE = frozenset({Outcome.CORDONED, Outcome.DRAINED})


def action_table(settings: Settings) -> dict[NoticeKind, Action]:
    """Each choosable kind's action from `LIFECYCLED_<KIND>_ACTION`."""
    return {kind: Action(getattr(settings, f"{kind.value}_action")) for kind in CHOOSABLE}


class Coordinator:
    def __init__(
        self,
        platform: Platform,
        hooks: LifecycleHooks,
        settings: Settings,
        metrics: Metrics,
        *,
        ownership: Ownership | None = None,
    ) -> None:
        self._platform = platform
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._ownership = ownership
        self._actions = action_table(settings)
        self._foreign: dict[tuple[str, InstanceId], float] = {}  # judged not ours -> expiry
        self._threatened: set[InstanceId] = set()  # got a notice that the machine goes
        self._timers: set[asyncio.Task[None]] = set()  # rebalance uncordons to come
        self._drains: dict[InstanceId, tuple[Drain, asyncio.Task[object]]] = {}
        self._finished: dict[InstanceId, float] = {}  # instance -> monotonic time it finished
        self._seen: dict[tuple[str, InstanceId], float] = {}  # (event id, instance) -> expiry
        self._locks: dict[InstanceId, asyncio.Lock] = {}
        self._tg: asyncio.TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Coordinator]:
        """Own every drain task; on exit, cancel the open ones (their intent is on the machine)."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self.resume()
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
            if record.phase is Phase.DONE and record.outcome in UNDOABLE:
                self._schedule_uncordon(target, record)
            if record.phase is Phase.OPEN and self._settings.dry_run:
                log.info(
                    "dry run: open drain found on the machine, not resumed",
                    extra=fields(node=target, instance=record.instance_id, kind=record.kind),
                )
                continue
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
            async with self._lock(instance_id):
                results.append(await self._submit_once(notice, instance_id))
        return results

    async def _submit_once(self, notice: Notice, instance_id: InstanceId) -> Disposition:
        """A notice counts as seen only once it was handled: its intent is on the machine, or
        it was decided to be nothing to do. A failed first attempt (an API error) raises, and
        its redelivery is a first attempt again, not a duplicate."""
        if self._known_foreign(notice, instance_id):
            return Disposition.NOT_OURS
        if self._is_duplicate(notice, instance_id):
            self._metrics.duplicates.labels(notice.kind).inc()
            return Disposition.DUPLICATE
        disposition = await self._submit_one(notice, instance_id)
        if disposition is not Disposition.NOT_OURS:  # not ours may be ours later
            self._mark_seen(notice, instance_id)
        return disposition

    async def _complete_launch(self, notice: Notice, instance_id: InstanceId) -> Disposition:
        if notice.lifecycle is None:
            return self._recorded(notice, instance_id, "launch notice without a hook")
        # Before the node registers only the tag can tell whose instance this is; never
        # complete (or abandon) another cluster's launch.
        why = await self._ownership.why_not_ours(instance_id) if self._ownership else None
        if why is not None:
            return self._not_ours(notice, instance_id, why)
        hook = HookRef.of(notice.lifecycle)
        if self._settings.dry_run:
            return self._hook_left_alone(notice, instance_id, hook, "launch")
        loop = asyncio.get_running_loop()
        end = loop.time() + self._settings.launch_ready_timeout_seconds
        while loop.time() < end:
            target = await self._platform.resolve(instance_id)
            if target is not None and await self._platform.ready(target):
                await self._hooks.complete(hook, instance_id, "CONTINUE")
                self._metrics.launch_hooks.labels("CONTINUE").inc()
                return Disposition.RECORDED
            await asyncio.sleep(self._settings.drain_poll_seconds)
        log.error(
            "instance did not become ready in time; abandoning its launch",
            extra=fields(
                instance=instance_id,
                hook=hook.name,
                seconds=self._settings.launch_ready_timeout_seconds,
            ),
        )
        await self._hooks.complete(hook, instance_id, "ABANDON")
        self._metrics.launch_hooks.labels("ABANDON").inc()
        return Disposition.RECORDED

    def _lock(self, instance_id: InstanceId) -> asyncio.Lock:
        return self._locks.setdefault(instance_id, asyncio.Lock())

    async def _submit_one(self, notice: Notice, instance_id: InstanceId) -> Disposition:
        target: str | None = None
        if instance_id not in self._drains and instance_id not in self._finished:
            # Ours only if tagged as ours (when a tag is required) and on our platform.
            target, why = await self._owner_check(instance_id)
            if why is not None:
                return self._not_ours(notice, instance_id, why)
        self._note_threat(notice, instance_id)
        if notice.cancelled:
            return await self._cancel(notice, instance_id)
        open_drain = self._drains.get(instance_id)
        if notice.kind is NoticeKind.INSTANCE_STATE_CHANGE and notice.state in TERMINATED_STATES:
            if open_drain is not None and not open_drain[0].work_done:
                await self._force_end(instance_id)
                return Disposition.FORCED
            if open_drain is not None or instance_id in self._finished:
                return self._recorded(notice, instance_id, "instance went after its drain")
        action = default_action(notice, actions=self._actions)
        hook = HookRef.of(notice.lifecycle) if notice.lifecycle else None
        if action not in (Action.DRAIN, Action.CORDON):
            if hook is None:
                return self._recorded(notice, instance_id, f"action {action}")
            # Never leave a hook to time out silently: a drain under way holds and releases
            # it; otherwise it is released at once.
            if open_drain is not None and await open_drain[0].merge(None, hook) is not None:
                return Disposition.MERGED
            return await self._release_without_drain(notice, instance_id, hook, action)
        if open_drain is not None:
            if await open_drain[0].merge(notice.deadline, hook) is not None:
                return Disposition.MERGED
            await asyncio.wait([open_drain[1]])  # it is finishing; this notice opens a new one
        target = target or await self._platform.resolve(instance_id)
        if target is None:
            return self._not_ours(notice, instance_id, "instance is not in this cluster")
        record = DrainRecord(
            instance_id=instance_id,
            kind=notice.kind,
            action=action,
            event_id=notice.event_id,
            event_time=notice.event_time,
            deadline=await self._deadline(notice, hook),
            hook=hook,
        )
        if self._settings.dry_run:
            return await self._dry_run(target, record)
        try:
            await self._platform.write_record(target, record, cordon=True)
        except NotFoundError:
            return await self._target_gone(notice, target, record)
        since_event = (utcnow() - notice.event_time).total_seconds()
        self._metrics.notice_to_cordon.observe(max(0.0, since_event))
        log.info(
            "node cordoned",
            extra=fields(
                node=target,
                instance=instance_id,
                kind=notice.kind,
                action=action,
                deadline=record.deadline.isoformat(),
                seconds=round(since_event, 3),
            ),
        )
        self._start(target, record)
        return Disposition.OPENED

    async def _target_gone(self, notice: Notice, target: str, record: DrainRecord) -> Disposition:
        """The node (container instance) went between resolving and cordoning: nothing left
        to drain. Its hook is released at once rather than left to time out."""
        log.info(
            "target already gone; nothing to drain",
            extra=fields(node=target, instance=record.instance_id, kind=notice.kind),
        )
        if record.hook is not None:
            await self._hooks.complete(record.hook, record.instance_id, "CONTINUE")
        return Disposition.RECORDED

    async def _owner_check(self, instance_id: InstanceId) -> tuple[str | None, str | None]:
        """(target, None) when the instance is ours, else (None, why not)."""
        if self._ownership is not None:
            why = await self._ownership.why_not_ours(instance_id)
            if why is not None:
                return None, why
        target = await self._platform.resolve(instance_id)
        if target is None:
            return None, "instance is not in this cluster"
        return target, None

    def _not_ours(self, notice: Notice, instance_id: InstanceId, why: str) -> Disposition:
        self._metrics.unknown_instances.labels(notice.kind).inc()
        log.info(
            "instance is not ours; notice left alone",
            extra=fields(instance=instance_id, kind=notice.kind, event_id=notice.event_id, why=why),
        )
        key = (notice.event_id, instance_id)
        self._foreign[key] = time.monotonic() + max(self._settings.node_cache_seconds, 1.0)
        return Disposition.NOT_OURS

    def _known_foreign(self, notice: Notice, instance_id: InstanceId) -> bool:
        """Judged not ours moments ago (a released message back again): no second look."""
        now = time.monotonic()
        if len(self._foreign) > 10_000:
            self._foreign = {k: v for k, v in self._foreign.items() if v > now}
        return self._foreign.get((notice.event_id, instance_id), 0.0) > now

    def _note_threat(self, notice: Notice, instance_id: InstanceId) -> None:
        """Remember instances told they will go: a rebalance timeout never uncordons those."""
        if notice.kind in (NoticeKind.REBALANCE_RECOMMENDATION, NoticeKind.TEST_NOTIFICATION):
            return
        if notice.cancelled:
            return
        if len(self._threatened) > 10_000:
            self._threatened.clear()
        self._threatened.add(instance_id)

    def _is_duplicate(self, notice: Notice, instance_id: InstanceId) -> bool:
        return self._seen.get((notice.event_id, instance_id), 0.0) > time.monotonic()

    def _mark_seen(self, notice: Notice, instance_id: InstanceId) -> None:
        now = time.monotonic()
        if len(self._seen) > 10_000:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        self._seen[(notice.event_id, instance_id)] = now + self._settings.dedupe_seconds

    def _recorded(self, notice: Notice, instance_id: InstanceId, why: str) -> Disposition:
        log.info(
            "notice recorded; nothing to do",
            extra=fields(instance=instance_id, kind=notice.kind, state=notice.state, why=why),
        )
        return Disposition.RECORDED

    async def _release_without_drain(
        self, notice: Notice, instance_id: InstanceId, hook: HookRef, action: Action
    ) -> Disposition:
        """A hooked notice whose action is `none`: complete the hook at once, drain nothing."""
        if self._settings.dry_run:
            return self._hook_left_alone(notice, instance_id, hook, str(action))
        await self._hooks.complete(hook, instance_id, "CONTINUE")
        log.info(
            "lifecycle hook completed without a drain",
            extra=fields(instance=instance_id, kind=notice.kind, action=action, hook=hook.name),
        )
        return Disposition.RECORDED

    # --- dry run ----------------------------------------------------------------------------

    async def _dry_run(self, target: str, record: DrainRecord) -> Disposition:
        """Everything a live run would do, logged and counted; nothing done."""
        self._metrics.dry_run_actions.labels(record.kind, record.action).inc()
        plan: object = None
        if record.action is Action.DRAIN and isinstance(self._platform, Previewer):
            plan = await self._platform.preview(target, record)
        log.info(
            "dry run: would %s",
            record.action,
            extra=fields(
                node=target,
                instance=record.instance_id,
                kind=record.kind,
                action=record.action,
                deadline=record.deadline.isoformat(),
                hook=record.hook.name if record.hook else None,
                plan=plan,
            ),
        )
        if record.hook is not None:
            info = await self._hooks.info(record.hook)
            log.info(
                "dry run: lifecycle hook left to its default result",
                extra=fields(
                    instance=record.instance_id,
                    hook=record.hook.name,
                    default_result=info.default_result,
                    heartbeat_timeout=info.heartbeat_timeout,
                ),
            )
        return Disposition.DRY_RUN

    def _hook_left_alone(
        self, notice: Notice, instance_id: InstanceId, hook: HookRef, would: str
    ) -> Disposition:
        self._metrics.dry_run_actions.labels(notice.kind, "complete-hook").inc()
        log.info(
            "dry run: lifecycle hook left to its default result",
            extra=fields(instance=instance_id, kind=notice.kind, hook=hook.name, action=would),
        )
        return Disposition.DRY_RUN

    async def _deadline(self, notice: Notice, hook: HookRef | None) -> datetime:
        hold = timedelta(seconds=self._settings.lifecycle_max_hold_seconds)
        if hook is not None:
            info = await self._hooks.info(hook)
            # Never hold past the hook's global timeout: AWS would apply its default result.
            hold = min(hold, timedelta(seconds=info.global_timeout))
            return notice.event_time + hold
        if notice.deadline is not None:
            return notice.deadline
        if notice.kind is NoticeKind.INSTANCE_STATE_CHANGE:
            return notice.event_time + timedelta(seconds=self._settings.spot_notice_seconds)
        return notice.event_time + hold

    def _start(self, target: str, record: DrainRecord) -> None:
        assert self._tg is not None, "Coordinator.running() is not entered"
        drain = Drain(
            target,
            record,
            platform=self._platform,
            hooks=self._hooks,
            settings=self._settings,
            metrics=self._metrics,
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
                self._finished[instance_id] = time.monotonic()

    # --- cancelled scheduled changes ------------------------------------------------------

    async def _cancel(self, notice: Notice, instance_id: InstanceId) -> Disposition:
        """AWS cancelled a scheduled change (or it is over): end its drain, give the node back."""
        found = await self._scheduled_drain(notice, instance_id)
        if found is None:
            return self._recorded(notice, instance_id, "no drain of this change to undo")
        target, record = found
        if self._settings.dry_run:
            self._metrics.dry_run_actions.labels(record.kind, "uncordon").inc()
            log.info(
                "dry run: would give the node back (scheduled change cancelled)",
                extra=fields(node=target, instance=instance_id, event_id=notice.event_id),
            )
            return Disposition.DRY_RUN
        entry = self._drains.pop(instance_id, None)
        if entry is not None:
            entry[1].cancel()
            await asyncio.wait([entry[1]])
            self._finished[instance_id] = time.monotonic()
        await self._platform.uncordon(target, record.closed(Outcome.CANCELLED))
        self._metrics.drains_cancelled.labels(record.kind).inc()
        log.info(
            "scheduled change cancelled; node uncordoned",
            extra=fields(node=target, instance=instance_id, event_id=notice.event_id),
        )
        return Disposition.CANCELLED

    async def _scheduled_drain(
        self, notice: Notice, instance_id: InstanceId
    ) -> tuple[str, DrainRecord] | None:
        """The drain this cancellation undoes: open, or closed but still holding the node."""
        entry = self._drains.get(instance_id)
        if entry is not None:
            found: tuple[str, DrainRecord] | None = (entry[0].target, entry[0].record)
        else:
            # A drain for a change days away is over long before AWS cancels the change; the
            # record on the node says what we did.
            records = await self._platform.open_records()
            found = next(((t, r) for t, r in records if r.instance_id == instance_id), None)
        if found is None:
            return None
        record = found[1]
        # A different window, or a tighter notice (a Spot warning) merged in: not ours to undo.
        same_window = notice.deadline is None or record.deadline == notice.deadline
        undoable = record.outcome not in (Outcome.CANCELLED, Outcome.FORCED)
        if record.kind is NoticeKind.SCHEDULED_CHANGE and same_window and undoable:
            return found
        return None

    async def _force_end(self, instance_id: InstanceId) -> None:
        drain, task = self._drains.pop(instance_id)
        task.cancel()
        await asyncio.wait([task])
        self._finished[instance_id] = time.monotonic()
        await drain.end_forced()

    # --- rebalance recommendations that never became interruptions -------------------------

    def _schedule_uncordon(self, target: str, record: DrainRecord) -> None:
        after = self._settings.rebalance_uncordon_after_seconds
        if after is None or self._settings.dry_run or self._tg is None:
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
            async with self._lock(instance_id):
                if instance_id in self._drains or instance_id in self._threatened:
                    return
                current = next(
                    (r for t, r in await self._platform.open_records() if t == target), None
                )
                if current is None or not _still_this_rebalance(current, record):
                    return  # a later notice rewrote the record, or the node is gone
                await self._platform.uncordon(target, current.closed(Outcome.UNCORDONED))
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
