"""Executors: the planner's steps that change the world, done (`Live`) or only told (`DryRun`).

The coordinator keeps its own bookkeeping (which drains run, what was seen) and hands the
steps that write to Kubernetes, ECS or Auto Scaling to one executor, chosen once by
`executor_for`. A dry run is that choice, not a branch: it decides, logs "dry run: would
..." and counts `lifecycled_dry_run_actions_total`, and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from lifecycled.drain import utcnow
from lifecycled.errors import NotFoundError
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.model import Action, Disposition, InstanceId, Notice
from lifecycled.observe import Metrics, fields
from lifecycled.plan import Cancel, Open, Release
from lifecycled.platforms import Platform, Previewer
from lifecycled.record import DrainRecord, HookRef, Outcome, Phase
from lifecycled.report import Reporter
from lifecycled.settings import Settings

log = logging.getLogger(__name__)


class Executor(Protocol):
    def takes_over(self, target: str, record: DrainRecord) -> bool:
        """Whether a record found at start is carried on (its drain resumed, its give-back
        scheduled)."""

    async def open(self, notice: Notice, step: Open) -> Disposition:
        """Record the drain's intent on the target and cordon it; OPENED when the drain is to
        run now."""

    async def release(self, notice: Notice, step: Release) -> Disposition:
        """Complete a hook whose notice drains nothing."""

    async def give_back(self, notice: Notice, step: Cancel) -> Disposition:
        """Uncordon the target of a cancelled scheduled change (its drain already stopped)."""

    async def launch(self, notice: Notice, instance_id: InstanceId, hook: HookRef) -> Disposition:
        """Hold a launch hook until the node is Ready, then complete it."""


def executor_for(
    settings: Settings,
    platform: Platform,
    hooks: LifecycleHooks,
    metrics: Metrics,
    reporter: Reporter | None = None,
) -> Executor:
    """The one place a dry run is chosen."""
    if settings.dry_run:
        return DryRun(platform, hooks, metrics)
    return Live(platform, hooks, settings, metrics, reporter)


class Live:
    def __init__(
        self,
        platform: Platform,
        hooks: LifecycleHooks,
        settings: Settings,
        metrics: Metrics,
        reporter: Reporter | None = None,
    ) -> None:
        self._platform = platform
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._reporter = reporter or Reporter(metrics)

    def takes_over(self, target: str, record: DrainRecord) -> bool:
        return True

    async def open(self, notice: Notice, step: Open) -> Disposition:
        target, record = step.target, step.record
        try:
            await self._platform.write_record(target, record, cordon=True)
        except NotFoundError:
            return await self._target_gone(notice, step)
        since_event = (utcnow() - notice.event_time).total_seconds()
        self._metrics.notice_to_cordon.observe(max(0.0, since_event))
        self._reporter.opened(target, record)
        log.info(
            "node cordoned",
            extra=fields(
                node=target,
                instance=record.instance_id,
                kind=notice.kind,
                action=record.action,
                deadline=record.deadline.isoformat(),
                seconds=round(since_event, 3),
            ),
        )
        return Disposition.OPENED

    async def _target_gone(self, notice: Notice, step: Open) -> Disposition:
        """The node (container instance) went between resolving and cordoning: nothing left
        to drain. Its hook is released at once rather than left to time out."""
        record = step.record
        log.info(
            "target already gone; nothing to drain",
            extra=fields(node=step.target, instance=record.instance_id, kind=notice.kind),
        )
        if record.hook is not None:
            await self._hooks.complete(record.hook, record.instance_id, "CONTINUE")
        return Disposition.RECORDED

    async def release(self, notice: Notice, step: Release) -> Disposition:
        await self._hooks.complete(step.hook, step.instance_id, "CONTINUE")
        log.info(
            "lifecycle hook completed without a drain",
            extra=fields(
                instance=step.instance_id, kind=notice.kind, action=step.action, hook=step.hook.name
            ),
        )
        return Disposition.RECORDED

    async def give_back(self, notice: Notice, step: Cancel) -> Disposition:
        await self._platform.uncordon(step.target, step.record.closed(Outcome.CANCELLED))
        self._metrics.drains_cancelled.labels(step.record.kind).inc()
        self._reporter.given_back(step.target, step.record)
        log.info(
            "scheduled change cancelled; node uncordoned",
            extra=fields(
                node=step.target, instance=step.record.instance_id, event_id=notice.event_id
            ),
        )
        return Disposition.CANCELLED

    async def launch(self, notice: Notice, instance_id: InstanceId, hook: HookRef) -> Disposition:
        loop = asyncio.get_running_loop()
        end = loop.time() + self._settings.hooks.launch_ready_timeout_seconds
        while loop.time() < end:
            target = await self._platform.resolve(instance_id)
            if target is not None and await self._platform.ready(target):
                await self._hooks.complete(hook, instance_id, "CONTINUE")
                self._metrics.launch_hooks.labels("CONTINUE").inc()
                return Disposition.RECORDED
            await asyncio.sleep(self._settings.drain.poll_seconds)
        log.error(
            "instance did not become ready in time; abandoning its launch",
            extra=fields(
                instance=instance_id,
                hook=hook.name,
                seconds=self._settings.hooks.launch_ready_timeout_seconds,
            ),
        )
        await self._hooks.complete(hook, instance_id, "ABANDON")
        self._metrics.launch_hooks.labels("ABANDON").inc()
        return Disposition.RECORDED


class DryRun:
    """Everything a live run would do, logged and counted; nothing done. Reads still happen
    (a drain's preview, the hook's settings)."""

    def __init__(self, platform: Platform, hooks: LifecycleHooks, metrics: Metrics) -> None:
        self._platform = platform
        self._hooks = hooks
        self._metrics = metrics

    def takes_over(self, target: str, record: DrainRecord) -> bool:
        if record.phase is Phase.OPEN:
            log.info(
                "dry run: open drain found on the machine, not resumed",
                extra=fields(node=target, instance=record.instance_id, kind=record.kind),
            )
        return False

    async def open(self, notice: Notice, step: Open) -> Disposition:
        target, record = step.target, step.record
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

    async def release(self, notice: Notice, step: Release) -> Disposition:
        return self._hook_left_alone(notice, step.instance_id, step.hook, str(step.action))

    async def give_back(self, notice: Notice, step: Cancel) -> Disposition:
        self._metrics.dry_run_actions.labels(step.record.kind, "uncordon").inc()
        log.info(
            "dry run: would give the node back (scheduled change cancelled)",
            extra=fields(
                node=step.target, instance=step.record.instance_id, event_id=notice.event_id
            ),
        )
        return Disposition.DRY_RUN

    async def launch(self, notice: Notice, instance_id: InstanceId, hook: HookRef) -> Disposition:
        return self._hook_left_alone(notice, instance_id, hook, "launch")

    def _hook_left_alone(
        self, notice: Notice, instance_id: InstanceId, hook: HookRef, would: str
    ) -> Disposition:
        self._metrics.dry_run_actions.labels(notice.kind, "complete-hook").inc()
        log.info(
            "dry run: lifecycle hook left to its default result",
            extra=fields(instance=instance_id, kind=notice.kind, hook=hook.name, action=would),
        )
        return Disposition.DRY_RUN
