"""Replacement first, for Auto Scaling groups (LIFECYCLED_REPLACE_AHEAD, Kubernetes).

On a Spot warning or rebalance recommendation (drain action, no lifecycle hook: a scale-in
shrinks the group on purpose) for an instance of a group tagged `replace_ahead_tag=true`,
the group's desired capacity goes up by one at once (never above MaxSize; a storm's raises
for one group are coalesced into one SetDesiredCapacity per interval), so the replacement
boots while the node drains; the first eviction waits a little for its node to be Ready.
When the drain ends the instance is terminated with ShouldDecrementDesiredCapacity, so the
group ends the size it was.

Idempotent across restarts: the intent is on the drain record, written before each step
(planned -> requested -> settled); a resumed drain never raises twice once `requested` is
recorded. A crash between the raise and that write raises again (the one window left).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Protocol

from lifecycled.clients.aws import AwsClients
from lifecycled.errors import LifecycledError, PermanentError
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import Platform
from lifecycled.record import DrainRecord, Outcome, Replacement, ReplacementState
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

KINDS = frozenset({NoticeKind.SPOT_INTERRUPTION, NoticeKind.REBALANCE_RECOMMENDATION})
READY_POLL_SECONDS = 1.0
# A drain's work is over with these; FORCED: the machine went on its own.
SETTLE_AFTER = frozenset({Outcome.DRAINED, Outcome.DEADLINE_MISSED, Outcome.FAILED})


class Recorder(Protocol):
    async def __call__(self, replacement: Replacement) -> None:
        """Persist the drain's record with `replacement` on the drain's target."""


class ReplaceAhead:
    def __init__(self, aws: AwsClients, platform: Platform, settings: Settings, metrics: Metrics):
        self._aws = aws
        self._platform = platform
        self._settings = settings.replace
        self._metrics = metrics
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}  # group -> raises asked
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._last_raise: dict[str, float] = {}  # group -> loop time of its last raise
        self._requested_at: dict[str, float] = {}  # group -> loop time, for time to Ready

    def applies(self, record: DrainRecord) -> bool:
        return (
            self._settings.ahead
            and record.kind in KINDS
            and record.action is Action.DRAIN
            and record.hook is None
        )

    async def ahead(self, record: DrainRecord, save: Recorder) -> None:
        """Raise the group's capacity for this drain (once, recorded), then wait a little for
        the replacement's node. Never raises: a failed step is logged and counted, and the
        drain goes on as it would have without."""
        if not self.applies(record):
            return
        if record.replacement is not None and record.replacement.state is not (
            ReplacementState.PLANNED
        ):
            return  # raised before a restart: never twice
        try:
            group = await self._aws.autoscaling.group_of(record.instance_id)
            info = await self._aws.autoscaling.describe_group(group) if group else None
            if info is None or info.tags.get(self._settings.tag, "").lower() != "true":
                return
            await save(Replacement(info.name, ReplacementState.PLANNED))
            before = set(info.instances)
            raised = await self._raise(info.name)
            await save(Replacement(info.name, ReplacementState.REQUESTED, raised=raised))
        except LifecycledError as exc:
            self._metrics.replacements.labels("error").inc()
            log.error(
                "replace-ahead failed; draining without a replacement first",
                extra=fields(instance=record.instance_id, error=str(exc)),
            )
            return
        if raised:
            await self._wait_ready(info.name, before, record)

    async def settle(self, record: DrainRecord, outcome: Outcome) -> DrainRecord:
        """Terminate the instance, decrementing the group's capacity (what the raise added).
        Returns the record with the replacement settled (the drain's close writes it)."""
        done = record.replacement
        if done is None or done.state is not ReplacementState.REQUESTED:
            return record
        if not done.raised:
            return replace(record, replacement=replace(done, state=ReplacementState.SETTLED))
        try:
            if outcome in SETTLE_AFTER:
                await self._aws.autoscaling.terminate_in_group(record.instance_id)
                self._metrics.replacements.labels("terminated").inc()
            else:
                await self._decrement(done.group, record.instance_id)
        except PermanentError as exc:
            # Already out of the group (Spot took it): the group would replace it on top of
            # the raise, so give the raise back.
            log.info(
                "instance no longer terminable in its group; lowering the capacity instead",
                extra=fields(instance=record.instance_id, group=done.group, error=str(exc)),
            )
            try:
                await self._decrement(done.group, record.instance_id)
            except LifecycledError as again:
                return self._settle_failed(record, again)
        except LifecycledError as exc:
            return self._settle_failed(record, exc)
        log.info(
            "replace-ahead settled",
            extra=fields(instance=record.instance_id, group=done.group, outcome=outcome),
        )
        return replace(record, replacement=replace(done, state=ReplacementState.SETTLED))

    def _settle_failed(self, record: DrainRecord, exc: LifecycledError) -> DrainRecord:
        # The record keeps `requested`: the next start tries again.
        self._metrics.replacements.labels("error").inc()
        log.error(
            "replace-ahead could not give the capacity back",
            extra=fields(instance=record.instance_id, error=str(exc)),
        )
        return record

    async def _decrement(self, group: str, instance_id: InstanceId) -> None:
        info = await self._aws.autoscaling.describe_group(group)
        if info is None or instance_id in info.instances:
            return  # the group's own termination of it decrements (or it is gone)
        if info.desired > info.min_size:
            await self._aws.autoscaling.set_desired_capacity(group, info.desired - 1)
            self._metrics.replacements.labels("decremented").inc()

    # --- coalesced raises ------------------------------------------------------------------

    async def _raise(self, group: str) -> bool:
        """One more instance for `group`: True when granted, False at MaxSize."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(group, []).append(future)
        if group not in self._flushers:
            self._flushers[group] = asyncio.create_task(self._flush(group), name=f"raise-{group}")
        return await future

    async def _flush(self, group: str) -> None:
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[bool]] = []
        try:
            interval = self._settings.interval_seconds
            since = loop.time() - self._last_raise.get(group, float("-inf"))
            # After a quiet spell the first raise waits a quarter of the interval (a storm's
            # warnings arrive over a few receives); later ones wait for the interval's end.
            await asyncio.sleep(max(interval / 4, interval - since))
            waiters = self._waiting.pop(group, [])
            info = await self._aws.autoscaling.describe_group(group)
            if info is None:
                raise PermanentError(f"Auto Scaling group {group} not found")
            target = min(info.max_size, info.desired + len(waiters))
            granted = target - info.desired
            if granted > 0:
                await self._aws.autoscaling.set_desired_capacity(group, target)
                self._last_raise[group] = self._requested_at[group] = loop.time()
                self._metrics.replacements.labels("requested").inc(granted)
            if granted < len(waiters):
                self._metrics.replacements.labels("at_max_size").inc(len(waiters) - granted)
            log.info(
                "replace-ahead: desired capacity raised",
                extra=fields(group=group, desired=target, asked=len(waiters), granted=granted),
            )
            for i, future in enumerate(waiters):
                if not future.done():
                    future.set_result(i < granted)
        except (LifecycledError, asyncio.CancelledError) as exc:
            for future in waiters:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, LifecycledError) else PermanentError("cancelled")
                    )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            del self._flushers[group]
            if self._waiting.get(group) and not _cancelling():
                self._flushers[group] = asyncio.create_task(
                    self._flush(group), name=f"raise-{group}"
                )

    async def _wait_ready(self, group: str, before: set[str], record: DrainRecord) -> None:
        """Until a new instance of the group is a Ready node, at most `replace_ahead_wait_
        seconds` and a quarter of the time left."""
        loop = asyncio.get_running_loop()
        from_now = max(0.0, (record.deadline.timestamp() - _now()) / 4)
        until = loop.time() + min(self._settings.wait_seconds, from_now)
        while loop.time() < until:
            try:
                info = await self._aws.autoscaling.describe_group(group)
                for instance in set(info.instances if info else ()) - before:
                    node = await self._platform.resolve(InstanceId(instance))
                    if node and await self._platform.ready(node):
                        took = loop.time() - self._requested_at.get(group, loop.time())
                        self._metrics.replacement_ready.observe(took)
                        log.info(
                            "replacement node ready; draining",
                            extra=fields(
                                instance=record.instance_id,
                                replacement=instance,
                                node=node,
                                seconds=round(took, 3),
                            ),
                        )
                        return
            except LifecycledError as exc:
                log.warning("replacement check failed", extra=fields(group=group, error=str(exc)))
            await asyncio.sleep(min(READY_POLL_SECONDS, max(0.0, until - loop.time())))
        log.warning(
            "replacement not ready in time; draining anyway",
            extra=fields(instance=record.instance_id, group=group),
        )


def _now() -> float:
    return time.time()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
