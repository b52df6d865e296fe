"""Auto Scaling lifecycle hooks: hold them with heartbeats, release them when the work is done."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.autoscaling import HookActionGone, HookInfo
from lifecycled.errors import PermanentError, TemporaryError
from lifecycled.observe import Metrics, fields
from lifecycled.record import HookRef
from lifecycled.retry import retry
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

# AWS's own limits: heartbeat timeout defaults to 3600 s; the global timeout is
# min(100 x heartbeat timeout, 48 h).
DEFAULT_HOOK = HookInfo(heartbeat_timeout=3600, global_timeout=172800, default_result="ABANDON")


class LifecycleHooks:
    def __init__(self, aws: AwsClients, settings: Settings, metrics: Metrics) -> None:
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._info: dict[tuple[str, str], HookInfo] = {}

    async def info(self, hook: HookRef) -> HookInfo:
        key = (hook.group, hook.name)
        if key not in self._info:
            try:
                found = await retry(
                    lambda: self._aws.autoscaling.describe_hook(hook.group, hook.name),
                    delays=self._settings.retry_delays,
                    what="describe lifecycle hook",
                )
            except (TemporaryError, PermanentError) as exc:
                log.warning(
                    "cannot read lifecycle hook; assuming AWS defaults",
                    extra=fields(hook=hook.name, group=hook.group, error=str(exc)),
                )
                return DEFAULT_HOOK
            self._info[key] = found or DEFAULT_HOOK
        return self._info[key]

    async def hold(self, hook: HookRef, instance_id: str, done: asyncio.Event) -> None:
        """Send heartbeats well inside the heartbeat timeout until `done` is set."""
        info = await self.info(hook)
        interval = max(1.0, info.heartbeat_timeout * self._settings.heartbeat_fraction)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=interval)
            if done.is_set():
                return
            try:
                await retry(
                    lambda: self._aws.autoscaling.record_heartbeat(
                        hook.group, hook.name, hook.token, instance_id
                    ),
                    delays=self._settings.retry_delays,
                    what="lifecycle heartbeat",
                )
            except (TemporaryError, PermanentError) as exc:
                self._metrics.heartbeats.labels("error").inc()
                log.error(
                    "lifecycle heartbeat failed",
                    extra=fields(instance=instance_id, hook=hook.name, error=str(exc)),
                )
                if isinstance(exc, HookActionGone):
                    return
                continue
            self._metrics.heartbeats.labels("ok").inc()
            log.info("lifecycle heartbeat sent", extra=fields(instance=instance_id, hook=hook.name))

    async def complete(self, hook: HookRef, instance_id: str, result: str = "CONTINUE") -> bool:
        """Release the hook. False when AWS no longer knows the action (timed out, completed)."""
        try:
            await retry(
                lambda: self._aws.autoscaling.complete_lifecycle_action(
                    hook.group, hook.name, hook.token, instance_id, result
                ),
                delays=self._settings.retry_delays,
                what="complete lifecycle action",
            )
        except HookActionGone as exc:
            self._metrics.lifecycle_actions.labels("expired").inc()
            log.warning(
                "lifecycle action was no longer open",
                extra=fields(instance=instance_id, hook=hook.name, error=str(exc)),
            )
            return False
        except PermanentError:
            self._metrics.lifecycle_actions.labels("error").inc()
            raise
        self._metrics.lifecycle_actions.labels(result).inc()
        log.info(
            "lifecycle action completed",
            extra=fields(instance=instance_id, hook=hook.name, group=hook.group, result=result),
        )
        return True
