"""DaemonSet mode: poll this machine's instance metadata (IMDSv2) and hand what appears there
to the coordinator as the same `Notice`s the queue produces.

- Every `imds_poll_seconds` (jittered, never longer) the event paths below are read, each
  on its own: one failing path does not hide the others.
- A notice's event id comes from its content, so reading the same action again is a
  duplicate to the coordinator; a notice is handed over again on the next poll until
  `handle` accepted it (the queue's "delete only on success").
- 404, 401 (token renewed), 5xx and timeouts are counted and survived with a backoff.
- IMDS carries no lifecycle-hook token. When the instance's Auto Scaling group has exactly
  one terminating hook, and the credentials allow it, the hook is completed by instance id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.imds import DEFAULT_TIMEOUT, ImdsClient
from lifecycled.errors import ConfigError, LifecycledError, PermanentError, TemporaryError
from lifecycled.events import check_scope
from lifecycled.events.asg import TERMINATING
from lifecycled.events.fields import Reject, clip, instance_id, opt_str, req_str, req_time
from lifecycled.events.result import Rejected, RejectReason
from lifecycled.events.times import format_time
from lifecycled.model import InstanceId, LifecycleAction, Notice, NoticeKind
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
GROUP_TAG = "aws:autoscaling:groupName"
GROUP_TAG_PATH = "meta-data/tags/instance/" + GROUP_TAG

ENDED_STATES = frozenset({"canceled", "cancelled", "completed"})
JITTER = (0.75, 1.0)  # a poll never waits longer than the configured interval
HOOK_ATTEMPTS = 5  # temporary failures before we stop looking for the hook

_IMDS_TIME_RE = re.compile(
    r"(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) GMT",
    re.ASCII,
)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass(frozen=True, slots=True)
class Identity:
    instance_id: InstanceId
    region: str | None
    account: str | None


# --- pure: IMDS bodies -> notices -------------------------------------------------------------


def maintenance_time(value: str, where: str) -> datetime:
    """IMDS's `21 Jan 2019 09:00:43 GMT` (day not zero-padded), as an aware UTC datetime."""
    m = _IMDS_TIME_RE.fullmatch(value)
    if m is None:
        raise Reject(RejectReason.BAD_TIME, f"{where} is not an IMDS time: {clip(value)}")
    day, month, year = int(m.group(1)), _MONTHS.index(m.group(2)) + 1, int(m.group(3))
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise Reject(RejectReason.BAD_TIME, f"{where} is not a real time") from exc


def _json_object(text: str, where: str) -> dict[str, object]:
    value = _json(text, where)
    if not isinstance(value, dict):
        raise Reject(RejectReason.NOT_AN_OBJECT, f"{where} is not a JSON object")
    return value


def _json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Reject(RejectReason.NOT_JSON, f"{where} is not JSON") from exc


def spot_notice(text: str, me: Identity, now: datetime, lead: timedelta) -> Notice:
    """`{"action": "terminate", "time": "..."}`: the machine goes at `time`."""
    obj = _json_object(text, "instance-action")
    action = req_str(obj, "action", "instance-action")
    at = req_time(obj, "time", "instance-action")
    return Notice(
        kind=NoticeKind.SPOT_INTERRUPTION,
        instance_ids=(me.instance_id,),
        event_id=f"imds:spot:{action}:{format_time(at)}",
        # The warning is issued `lead` before the action (as EventBridge's event time is).
        event_time=min(now, at - lead),
        deadline=at,
        region=me.region,
        account=me.account,
        state=action,
    )


def rebalance_notice(text: str, me: Identity) -> Notice:
    """`{"noticeTime": "..."}`: no deadline; cordon (or drain) by configuration."""
    at = req_time(_json_object(text, "rebalance"), "noticeTime", "rebalance")
    return Notice(
        kind=NoticeKind.REBALANCE_RECOMMENDATION,
        instance_ids=(me.instance_id,),
        event_id=f"imds:rebalance:{format_time(at)}",
        event_time=at,
        deadline=None,
        region=me.region,
        account=me.account,
    )


def scheduled_notices(
    text: str, me: Identity, first_seen: Callable[[str], datetime]
) -> list[Notice]:
    """The maintenance events list; `first_seen(event id)` is an event's event time."""
    events = _json(text, "scheduled") if text.strip() else []
    if not isinstance(events, list):
        raise Reject(RejectReason.WRONG_TYPE, "scheduled is not a JSON array")
    notices = []
    for index, event in enumerate(events):
        where = f"scheduled[{index}]"
        if not isinstance(event, dict):
            raise Reject(RejectReason.WRONG_TYPE, f"{where} is not an object")
        event_id = req_str(event, "EventId", where)
        state = (opt_str(event, "State", where) or "active").lower()
        not_before = maintenance_time(req_str(event, "NotBefore", where), f"{where}.NotBefore")
        notices.append(
            Notice(
                kind=NoticeKind.SCHEDULED_CHANGE,
                instance_ids=(me.instance_id,),
                # Rescheduling (a new NotBefore) or cancelling makes a new notice.
                event_id=f"imds:scheduled:{event_id}:{format_time(not_before)}:{state}",
                event_time=first_seen(event_id),
                deadline=not_before,  # the window opens: be gone
                region=me.region,
                account=me.account,
                state=state,
                cancelled=state in ENDED_STATES,
            )
        )
    return notices


def scheduled_event_id(notice: Notice) -> str:
    """The AWS event id inside one of our scheduled-change event ids."""
    return notice.event_id.split(":")[2]


def terminate_notice(me: Identity, event_time: datetime, hook: LifecycleAction | None) -> Notice:
    """target-lifecycle-state `Terminated`: Auto Scaling is taking the machine away."""
    suffix = f":{hook.group_name}/{hook.hook_name}" if hook else ""
    return Notice(
        kind=NoticeKind.LIFECYCLE_TERMINATE,
        instance_ids=(me.instance_id,),
        # A hook found later makes a new notice, which attaches to the open drain.
        event_id=f"imds:target-lifecycle-state:Terminated{suffix}",
        event_time=event_time,
        deadline=None,
        region=me.region,
        account=me.account,
        lifecycle=hook,
    )


# --- lifecycle hooks ----------------------------------------------------------------------------


class HookFinder:
    """IMDS names no hook and carries no token, but CompleteLifecycleAction also takes an
    instance id: find the group (instance tag) and its one terminating hook."""

    def __init__(self, settings: Settings, metrics: Metrics, aws: AwsClients | None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._aws = aws
        self._stack = contextlib.AsyncExitStack()
        self._settled = False
        self._found: LifecycleAction | None = None
        self._failures = 0

    async def __aenter__(self) -> HookFinder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def find(self, imds: ImdsClient, me: Identity) -> LifecycleAction | None:
        if self._settled:
            return self._found
        try:
            aws = await self._clients(me)
            group = await self._group(imds, aws, me)
            hooks = await aws.terminating_hooks(group) if group else []
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

    async def _clients(self, me: Identity) -> AwsClients:
        if self._aws is None:
            # The instance's own region, when the environment names none.
            region = self._settings.region or me.region
            settings = self._settings.model_copy(update={"region": region})
            opened = AwsClients.open(settings, self._metrics, ("ec2", "autoscaling"))
            self._aws = await self._stack.enter_async_context(opened)
        return self._aws

    async def _group(self, imds: ImdsClient, aws: AwsClients, me: Identity) -> str | None:
        # Instance tags in metadata are optional (InstanceMetadataTags); 404 when disabled.
        group = await imds.get(GROUP_TAG_PATH)
        if group:
            return group.strip()
        info = await aws.describe_instance(me.instance_id)
        return info.tags.get(GROUP_TAG) if info else None


# --- polling ----------------------------------------------------------------------------------


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
        lead = timedelta(seconds=self._settings.spot_notice_seconds)
        return [spot_notice(text, self._me, datetime.now(UTC), lead)]

    async def _rebalance(self, text: str | None) -> list[Notice]:
        return [] if text is None else [rebalance_notice(text, self._me)]

    async def _target_state(self, text: str | None) -> list[Notice]:
        if text is None or text.strip() != "Terminated":
            return []
        hook = await self._hooks.find(self._imds, self._me)
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

    def _seen(self, key: str) -> datetime:
        return self._first_seen.setdefault(key, datetime.now(UTC))


class ImdsSource:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        handle: Handler,
        *,
        aws: AwsClients | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._handle = handle
        self._aws = aws  # None: opened here, only if a lifecycle hook must be looked up
        self._handled: set[str] = set()
        self._announced: set[str] = set()
        self._failures = 0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Poll until `stop` is set; `ready` is set once a whole poll succeeded."""
        timeout = min(DEFAULT_TIMEOUT, self._settings.api_timeout_seconds)
        async with (
            ImdsClient.open(self._metrics, timeout_seconds=timeout) as imds,
            HookFinder(self._settings, self._metrics, self._aws) as hooks,
        ):
            me = await self._identify(imds, stop)
            if me is None:
                return
            log.info(
                "watching instance metadata",
                extra=fields(
                    instance=me.instance_id,
                    node=self._settings.node_name,
                    every=self._settings.imds_poll_seconds,
                ),
            )
            poller = Poller(imds, me, hooks, self._settings, self._metrics)
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
        pause = self._settings.imds_poll_seconds * random.uniform(*JITTER)
        delays = self._settings.retry_delays
        if ok or not delays:
            return pause
        return max(pause, delays[min(self._failures, len(delays)) - 1])

    async def _submit(self, notice: Notice) -> None:
        if notice.event_id in self._handled:
            return
        checked = check_scope(
            notice,
            allowed_accounts=self._settings.allowed_accounts,
            region=self._settings.region,
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
    timeout = min(DEFAULT_TIMEOUT, settings.api_timeout_seconds)
    async with ImdsClient.open(metrics, timeout_seconds=timeout) as imds:
        try:
            text = await retry(
                lambda: imds.get(REGION_PATH), delays=settings.retry_delays, what="IMDS region"
            )
        except (TemporaryError, PermanentError) as exc:
            raise ConfigError(
                f"no AWS region: set AWS_REGION or LIFECYCLED_REGION ({REGION_PATH}: {exc})"
            ) from exc
    if not text or not text.strip():
        raise ConfigError(f"no AWS region: set AWS_REGION or LIFECYCLED_REGION ({REGION_PATH})")
    log.info("AWS region from instance metadata", extra=fields(region=text.strip()))
    return settings.model_copy(update={"region": text.strip()})


async def read_identity(imds: ImdsClient) -> Identity:
    text = await imds.get(INSTANCE_ID_PATH)
    if text is None:
        raise PermanentError("IMDS has no instance-id")
    me = instance_id(text.strip(), "instance-id")
    document = await imds.get(IDENTITY_PATH)
    doc = _json_object(document or "{}", "identity document")
    return Identity(
        instance_id=me,
        region=opt_str(doc, "region", "identity document"),
        account=opt_str(doc, "accountId", "identity document"),
    )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
