"""Auto Scaling lifecycle hooks: hold them with heartbeats, release them when the work is done;
in DaemonSet mode, find the one to release."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.autoscaling import HookActionGone
from lifecycled.errors import PermanentError, TemporaryError
from lifecycled.events.asg import TERMINATING
from lifecycled.model import HookInfo, LifecycleAction
from lifecycled.observe import Metrics, fields
from lifecycled.record import HookRef
from lifecycled.retry import retry
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

# AWS's own limits: heartbeat timeout defaults to 3600 s; the global timeout is
# min(100 x heartbeat timeout, 48 h).
DEFAULT_HOOK = HookInfo(heartbeat_timeout=3600, global_timeout=172800, default_result="ABANDON")
GROUP_TAG = "aws:autoscaling:groupName"  # the instance's Auto Scaling group
HOOK_ATTEMPTS = 5  # temporary failures before we stop looking for the hook


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
                    delays=self._settings.calls.retry_delays,
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

    async def hold(
        self,
        hook: HookRef,
        instance_id: str,
        done: asyncio.Event,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Send heartbeats well inside the heartbeat timeout until `done` is set;
        `on_error(message)` hears of each failed one."""
        info = await self.info(hook)
        interval = max(1.0, info.heartbeat_timeout * self._settings.hooks.heartbeat_fraction)
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
                    delays=self._settings.calls.retry_delays,
                    what="lifecycle heartbeat",
                )
            except (TemporaryError, PermanentError) as exc:
                self._metrics.heartbeats.labels("error").inc()
                log.error(
                    "lifecycle heartbeat failed",
                    extra=fields(instance=instance_id, hook=hook.name, error=str(exc)),
                )
                if on_error is not None:
                    on_error(str(exc))
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
                delays=self._settings.calls.retry_delays,
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


class HookFinder:
    """IMDS names no hook and carries no token, but CompleteLifecycleAction also takes an
    instance id: find the group (instance tag) and its one terminating hook. Looked up once
    (or until HOOK_ATTEMPTS temporary failures), then remembered."""

    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self._settled = False
        self._found: LifecycleAction | None = None
        self._failures = 0

    async def find(
        self, instance_id: str, tagged_group: Callable[[], Awaitable[str | None]]
    ) -> LifecycleAction | None:
        """`tagged_group()`: the GROUP_TAG from instance metadata, None when not there."""
        if self._settled:
            return self._found
        try:
            group = await self._group(instance_id, tagged_group)
            hooks = await self._aws.autoscaling.terminating_hooks(group) if group else []
        except TemporaryError as exc:
            self._failures += 1
            self._settled = self._failures >= HOOK_ATTEMPTS
            log.warning(
                "cannot look up the lifecycle hook yet",
                extra=fields(error=str(exc), attempt=self._failures, of=HOOK_ATTEMPTS),
            )
            return None
        except PermanentError as exc:
            self._settled = True
            log.warning(
                "cannot look up the lifecycle hook; it will not be completed",
                extra=fields(error=str(exc)),
            )
            return None
        self._settled = True
        self._found = self._choose(group, hooks)
        return self._found

    def _choose(self, group: str | None, hooks: list[str]) -> LifecycleAction | None:
        if group is None or len(hooks) != 1:
            # Several hooks: we cannot tell which is ours; completing a stranger's is worse.
            log.info(
                "no single terminating lifecycle hook; none will be completed",
                extra=fields(group=group, hooks=hooks[:10]),
            )
            return None
        log.info("terminating lifecycle hook found", extra=fields(group=group, hook=hooks[0]))
        return LifecycleAction(
            hook_name=hooks[0], group_name=group, token="", transition=TERMINATING
        )

    async def _group(
        self, instance_id: str, tagged_group: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        # Instance tags in metadata are optional (InstanceMetadataTags); 404 when disabled.
        group = await tagged_group()
        if group:
            return group.strip()
        info = await self._aws.ec2.describe_instance(instance_id)
        return info.tags.get(GROUP_TAG) if info else None
