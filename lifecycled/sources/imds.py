"""DaemonSet mode: poll this machine's instance metadata (IMDSv2) and hand what appears there
to the coordinator as the same `Notice`s the queue produces.

- Every `imds_poll_seconds` (jittered, never longer) the event paths below are read, each
  on its own: one failing path does not hide the others. What they hold becomes notices in
  events/imds.py.
- A notice's event id comes from its content, so reading the same action again is a
  duplicate to the coordinator; a notice is handed over again on the next poll until
  `handle` accepted it (the queue's "delete only on success").
- 404, 401 (token renewed), 5xx and timeouts are counted and survived with a backoff.
- IMDS carries no lifecycle-hook token. When the instance's Auto Scaling group has exactly
  one terminating hook, and the credentials allow it, the hook is completed by instance id
  (lifecycle.HookFinder finds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lifecycled.clients.imds import DEFAULT_TIMEOUT, ImdsClient
from lifecycled.errors import ConfigError, LifecycledError, PermanentError, TemporaryError
from lifecycled.events import check_scope
from lifecycled.events.fields import Reject, instance_id
from lifecycled.events.imds import (
    Identity,
    identity,
    rebalance_notice,
    scheduled_event_id,
    scheduled_notices,
    spot_notice,
    terminate_notice,
)
from lifecycled.events.result import Rejected
from lifecycled.lifecycle import GROUP_TAG, HookFinder
from lifecycled.model import Notice
from lifecycled.observe import Metrics, fields
from lifecycled.retry import retry
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[Notice], Awaitable[object]]

SPOT_PATH = "meta-data/spot/instance-action"
REBALANCE_PATH = "meta-data/events/recommendations/rebalance"
SCHEDULED_PATH = "meta-data/events/maintenance/scheduled"
HISTORY_PATH = "meta-data/events/maintenance/history"  # cancelled and completed events
TARGET_STATE_PATH = "meta-data/autoscaling/target-lifecycle-state"
INSTANCE_ID_PATH = "meta-data/instance-id"
IDENTITY_PATH = "dynamic/instance-identity/document"
REGION_PATH = "meta-data/placement/region"
GROUP_TAG_PATH = "meta-data/tags/instance/" + GROUP_TAG

JITTER = (0.75, 1.0)  # a poll never waits longer than the configured interval


class Poller:
    """One read of the event paths -> the notices they hold now (plus ended scheduled events)."""

    def __init__(
        self,
        imds: ImdsClient,
        me: Identity,
        hooks: HookFinder,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self._imds = imds
        self._me = me
        self._hooks = hooks
        self._settings = settings
        self._metrics = metrics
        self._first_seen: dict[str, datetime] = {}
        self._active: dict[str, Notice] = {}  # scheduled events seen active, by AWS event id
        self._bad: set[str] = set()  # bodies already reported as unreadable

    async def poll(self) -> tuple[list[Notice], bool]:
        """(notices, True when every path was read)."""
        readers: list[tuple[str, Callable[[str | None], Awaitable[list[Notice]]]]] = [
            (SPOT_PATH, self._spot),
            (TARGET_STATE_PATH, self._target_state),
            (SCHEDULED_PATH, self._scheduled),
            (HISTORY_PATH, self._history),
            (REBALANCE_PATH, self._rebalance),
        ]
        notices: list[Notice] = []
        ok = True
        for path, read in readers:
            try:
                text = await self._imds.get(path)
                notices += await self._read(path, read, text)
            except LifecycledError as exc:
                ok = False
                log.warning("metadata read failed", extra=fields(path=path, error=str(exc)))
        return notices, ok

    async def _read(
        self, path: str, read: Callable[[str | None], Awaitable[list[Notice]]], text: str | None
    ) -> list[Notice]:
        try:
            return await read(text)
        except Reject as exc:
            if text is not None and text not in self._bad:
                self._bad.add(text)
                self._metrics.rejected.labels(exc.rejected.reason).inc()
                log.error(
                    "unreadable metadata",
                    extra=fields(path=path, reason=exc.rejected.reason, detail=exc.rejected.detail),
                )
            return []

    async def _spot(self, text: str | None) -> list[Notice]:
        if text is None:
            return []
        lead = timedelta(seconds=self._settings.drain.spot_notice_seconds)
        return [spot_notice(text, self._me, datetime.now(UTC), lead)]

    async def _rebalance(self, text: str | None) -> list[Notice]:
        return [] if text is None else [rebalance_notice(text, self._me)]

    async def _target_state(self, text: str | None) -> list[Notice]:
        if text is None or text.strip() != "Terminated":
            return []
        hook = await self._hooks.find(self._me.instance_id, self._tagged_group)
        return [terminate_notice(self._me, self._seen("target-lifecycle-state"), hook)]

    async def _scheduled(self, text: str | None) -> list[Notice]:
        listed = scheduled_notices(text or "", self._me, self._seen)
        return listed + self._vanished(listed)

    async def _history(self, text: str | None) -> list[Notice]:
        # After a restart (a reboot event) only the history says the change is over.
        ended = scheduled_notices(text or "", self._me, self._seen)
        return [n for n in ended if n.cancelled]

    def _vanished(self, listed: list[Notice]) -> list[Notice]:
        """Events that left the list: cancelled before their window, or over after it."""
        ids = {scheduled_event_id(n) for n in listed}
        ended = []
        for event_id, notice in list(self._active.items()):
            if event_id not in ids:
                del self._active[event_id]
                before = notice.deadline is None or datetime.now(UTC) < notice.deadline
                state = "canceled" if before else "completed"
                ended.append(
                    replace(notice, event_id=f"{notice.event_id}:gone", state=state, cancelled=True)
                )
        for notice in listed:
            if notice.cancelled:
                self._active.pop(scheduled_event_id(notice), None)
            else:
                self._active[scheduled_event_id(notice)] = notice
        return ended

    async def _tagged_group(self) -> str | None:
        return await self._imds.get(GROUP_TAG_PATH)

    def _seen(self, key: str) -> datetime:
        return self._first_seen.setdefault(key, datetime.now(UTC))


class ImdsSource:
    def __init__(
        self, settings: Settings, metrics: Metrics, handle: Handler, *, hooks: HookFinder
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._handle = handle
        self._hooks = hooks
        self._handled: set[str] = set()
        self._announced: set[str] = set()
        self._failures = 0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Poll until `stop` is set; `ready` is set once a whole poll succeeded."""
        timeout = min(DEFAULT_TIMEOUT, self._settings.calls.timeout_seconds)
        async with ImdsClient.open(self._metrics, timeout_seconds=timeout) as imds:
            me = await self._identify(imds, stop)
            if me is None:
                return
            log.info(
                "watching instance metadata",
                extra=fields(
                    instance=me.instance_id,
                    node=self._settings.imds.node_name,
                    every=self._settings.imds.poll_seconds,
                ),
            )
            poller = Poller(imds, me, self._hooks, self._settings, self._metrics)
            while not stop.is_set():
                notices, ok = await poller.poll()
                for notice in notices:
                    await self._submit(notice)
                self._count(ok)
                if ok and ready is not None:
                    ready.set()
                await _wait(stop, self._pause(ok))

    async def _identify(self, imds: ImdsClient, stop: asyncio.Event) -> Identity | None:
        """Who we are: instance id, region and account; retried until it works or we stop."""
        while not stop.is_set():
            try:
                return await read_identity(imds)
            except (LifecycledError, Reject) as exc:
                self._count(False)
                log.warning("cannot read the instance identity", extra=fields(error=str(exc)))
            await _wait(stop, self._pause(False))
        return None

    def _count(self, ok: bool) -> None:
        self._failures = 0 if ok else self._failures + 1
        self._metrics.imds_polls.labels("ok" if ok else "error").inc()

    def _pause(self, ok: bool) -> float:
        pause = self._settings.imds.poll_seconds * random.uniform(*JITTER)
        delays = self._settings.calls.retry_delays
        if ok or not delays:
            return pause
        return max(pause, delays[min(self._failures, len(delays)) - 1])

    async def _submit(self, notice: Notice) -> None:
        if notice.event_id in self._handled:
            return
        checked = check_scope(
            notice,
            allowed_accounts=self._settings.scope.allowed_accounts,
            region=self._settings.scope.region,
        )
        if isinstance(checked, Rejected):
            self._handled.add(notice.event_id)
            self._metrics.rejected.labels(checked.reason).inc()
            log.error(
                "notice out of scope",
                extra=fields(
                    event_id=notice.event_id, reason=checked.reason, detail=checked.detail
                ),
            )
            return
        self._announce(notice)
        try:
            await self._handle(notice)
        except Exception as exc:  # never let one notice end the poll loop: retried next poll
            log.warning(
                "notice not handled yet; will retry",
                extra=fields(event_id=notice.event_id, error=f"{type(exc).__name__}: {exc}"),
            )
            return
        self._handled.add(notice.event_id)

    def _announce(self, notice: Notice) -> None:
        if notice.event_id in self._announced:
            return
        self._announced.add(notice.event_id)
        self._metrics.notices.labels(notice.kind).inc()
        log.info(
            "notice received",
            extra=fields(
                source="imds",
                kind=notice.kind,
                event_id=notice.event_id,
                instances=list(notice.instance_ids),
                event_time=notice.event_time.isoformat(),
                deadline=notice.deadline.isoformat() if notice.deadline else None,
                state=notice.state,
                cancelled=notice.cancelled,
                hook=notice.lifecycle.hook_name if notice.lifecycle else None,
            ),
        )


async def with_own_region(settings: Settings, metrics: Metrics) -> Settings:
    """`settings` with the instance's own region (placement/region) when nothing names one:
    a DaemonSet pod needs no AWS_REGION, as it runs on the machine it asks about."""
    timeout = min(DEFAULT_TIMEOUT, settings.calls.timeout_seconds)
    async with ImdsClient.open(metrics, timeout_seconds=timeout) as imds:
        try:
            text = await retry(
                lambda: imds.get(REGION_PATH),
                delays=settings.calls.retry_delays,
                what="IMDS region",
            )
        except (TemporaryError, PermanentError) as exc:
            raise ConfigError(
                f"no AWS region: set AWS_REGION or LIFECYCLED_REGION ({REGION_PATH}: {exc})"
            ) from exc
    if not text or not text.strip():
        raise ConfigError(f"no AWS region: set AWS_REGION or LIFECYCLED_REGION ({REGION_PATH})")
    log.info("AWS region from instance metadata", extra=fields(region=text.strip()))
    scope = settings.scope.model_copy(update={"region": text.strip()})
    return settings.model_copy(update={"scope": scope})


async def read_identity(imds: ImdsClient) -> Identity:
    text = await imds.get(INSTANCE_ID_PATH)
    if text is None:
        raise PermanentError("IMDS has no instance-id")
    me = instance_id(text.strip(), "instance-id")
    return identity(me, await imds.get(IDENTITY_PATH))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
