"""What IMDS's event paths hold, as notices: the spot instance-action, the rebalance
recommendation, scheduled maintenance events and the Auto Scaling target lifecycle state.

Pure (no I/O, no clock): the caller reads the paths and passes the time. Unreadable bodies
raise `Reject`. A notice's event id comes from its content, so reading the same action again
makes a duplicate to the coordinator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lifecycled.events.fields import Reject, clip, opt_str, req_str, req_time
from lifecycled.events.result import RejectReason
from lifecycled.events.times import format_time
from lifecycled.model import InstanceId, LifecycleAction, Notice, NoticeKind

ENDED_STATES = frozenset({"canceled", "cancelled", "completed"})

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


def identity(me: InstanceId, document: str | None) -> Identity:
    """Instance `me`, with the region and account of its identity document."""
    doc = _json_object(document or "{}", "identity document")
    return Identity(
        instance_id=me,
        region=opt_str(doc, "region", "identity document"),
        account=opt_str(doc, "accountId", "identity document"),
    )


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
