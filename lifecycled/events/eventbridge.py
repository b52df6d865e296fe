"""EventBridge events: a table of `(source, detail-type)` -> one small parser per kind.

Instance ids come from `detail` only; `resources` ARNs are never trusted. A known source
with a detail-type outside the table is a well-formed event that asks nothing of us
(`Ignored`); so is a well-formed event of another AWS service (`aws.ecs` task state changes
on a bus shared with other rules: counted and deleted, the dead-letter queue stays for real
problems). Any other source is refused (`FOREIGN_SOURCE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from lifecycled.events import asg
from lifecycled.events.context import Envelope, EventMeta
from lifecycled.events.decode import JsonObject
from lifecycled.events.fields import (
    Reject,
    clip,
    instance_id,
    opt_str,
    req_instance_id,
    req_list,
    req_obj,
    req_str,
    req_time,
)
from lifecycled.events.result import Ignored, IgnoreReason, RejectReason
from lifecycled.model import InstanceId, Notice, NoticeKind

SPOT_WARNING_LEAD = timedelta(seconds=120)
HANDLED_STATES = frozenset({"stopping", "shutting-down", "stopped", "terminated"})
CANCELLED_HEALTH_STATUSES = frozenset({"closed", "cancelled"})

Parser = Callable[[EventMeta, JsonObject], Notice | Ignored]

# An AWS service's source as EventBridge spells it (`aws.ecs`, `aws.elasticloadbalancing`):
# only lower-case letters, digits and dashes after `aws.`, bounded like a service name.
AWS_SOURCE = re.compile(r"aws\.[a-z][a-z0-9-]{0,62}")


def is_event(obj: JsonObject) -> bool:
    return "source" in obj or "detail-type" in obj


def parse_event(obj: JsonObject, envelope: Envelope) -> Notice | Ignored:
    """One EventBridge event; raises `Reject`."""
    source = req_str(obj, "source", "event")
    known = source in KNOWN_SOURCES
    if not known and not AWS_SOURCE.fullmatch(source):
        raise Reject(RejectReason.FOREIGN_SOURCE, f"event.source {clip(source)} is not ours")
    detail_type = req_str(obj, "detail-type", "event")
    meta = _meta(obj, envelope)
    if not known:
        # Well-formed (id, time, an object `detail`) but of a service we do not act on.
        req_obj(obj, "detail", "event")
        detail = f"{source} is an AWS service lifecycled does not act on"
        return meta.ignored(IgnoreReason.UNHANDLED_SOURCE, detail)
    parser = PARSERS.get((source, detail_type))
    if parser is None:
        detail = f"{source} detail-type {clip(detail_type)} needs no action"
        return meta.ignored(IgnoreReason.UNHANDLED_DETAIL_TYPE, detail)
    return parser(meta, req_obj(obj, "detail", "event"))


def _meta(obj: JsonObject, envelope: Envelope) -> EventMeta:
    event_id = opt_str(obj, "id", "event") or envelope.message_id
    if not event_id:
        raise Reject(RejectReason.MISSING_FIELD, "event.id is missing")
    return EventMeta(
        event_id=event_id,
        event_time=req_time(obj, "time", "event"),
        region=opt_str(obj, "region", "event") or envelope.region,
        account=opt_str(obj, "account", "event") or envelope.account,
    )


def _notice(
    meta: EventMeta,
    kind: NoticeKind,
    instances: tuple[InstanceId, ...],
    *,
    deadline: datetime | None = None,
    state: str | None = None,
    cancelled: bool = False,
) -> Notice:
    return Notice(
        kind=kind,
        instance_ids=instances,
        event_id=meta.event_id,
        event_time=meta.event_time,
        deadline=deadline,
        region=meta.region,
        account=meta.account,
        state=state,
        cancelled=cancelled,
    )


def _spot(meta: EventMeta, detail: JsonObject) -> Notice:
    instance = req_instance_id(detail, "instance-id", "detail")
    # `state` carries the interruption behaviour: terminate, stop or hibernate.
    behaviour = opt_str(detail, "instance-action", "detail")
    deadline = meta.event_time + SPOT_WARNING_LEAD
    kind = NoticeKind.SPOT_INTERRUPTION
    return _notice(meta, kind, (instance,), deadline=deadline, state=behaviour)


def _rebalance(meta: EventMeta, detail: JsonObject) -> Notice:
    instance = req_instance_id(detail, "instance-id", "detail")
    return _notice(meta, NoticeKind.REBALANCE_RECOMMENDATION, (instance,))


def _state_change(meta: EventMeta, detail: JsonObject) -> Notice | Ignored:
    instance = req_instance_id(detail, "instance-id", "detail")
    state = req_str(detail, "state", "detail")
    if state not in HANDLED_STATES:
        # pending/running ask nothing of us: ignored, so they are deleted, not dead-lettered.
        return meta.ignored(
            IgnoreReason.UNHANDLED_STATE,
            f"instance state {clip(state)} needs no action",
            kind=NoticeKind.INSTANCE_STATE_CHANGE,
            instance_ids=(instance,),
            state=state,
        )
    return _notice(meta, NoticeKind.INSTANCE_STATE_CHANGE, (instance,), state=state)


def _health(meta: EventMeta, detail: JsonObject) -> Notice | Ignored:
    service = req_str(detail, "service", "detail")
    category = req_str(detail, "eventTypeCategory", "detail")
    if service != "EC2" or category != "scheduledChange":
        what = f"Health {clip(service, 16)} {clip(category, 32)} event needs no action"
        return meta.ignored(IgnoreReason.UNHANDLED_HEALTH_EVENT, what)
    instances = _health_instances(req_list(detail, "affectedEntities", "detail"))
    if not instances:
        # e.g. a dedicated-host event naming only `h-...` hosts
        what = "no EC2 instance among the affected entities"
        return meta.ignored(IgnoreReason.UNHANDLED_HEALTH_EVENT, what)
    status = opt_str(detail, "statusCode", "detail")
    return _notice(
        meta,
        NoticeKind.SCHEDULED_CHANGE,
        instances,
        deadline=req_time(detail, "startTime", "detail"),  # the window opens: be gone
        state=status,
        cancelled=status in CANCELLED_HEALTH_STATUSES,
    )


def _health_instances(entities: list[object]) -> tuple[InstanceId, ...]:
    """Instance ids among the entities, in order, once each; other entity kinds skipped."""
    found: dict[InstanceId, None] = {}
    for index, entity in enumerate(entities):
        where = f"detail.affectedEntities[{index}]"
        if not isinstance(entity, dict):
            raise Reject(RejectReason.WRONG_TYPE, f"{where} is not an object")
        value = req_str(entity, "entityValue", where)
        if value.startswith("i-"):
            found[instance_id(value, f"{where}.entityValue")] = None
    return tuple(found)


def _lifecycle_terminate(meta: EventMeta, detail: JsonObject) -> Notice | Ignored:
    return _lifecycle(meta, detail, asg.TERMINATING)


def _lifecycle_launch(meta: EventMeta, detail: JsonObject) -> Notice | Ignored:
    return _lifecycle(meta, detail, asg.LAUNCHING)


def _lifecycle(meta: EventMeta, detail: JsonObject, expected: str) -> Notice | Ignored:
    transition = detail.get("LifecycleTransition")
    if isinstance(transition, str) and transition not in (expected, asg.TEST_NOTIFICATION):
        raise Reject(RejectReason.UNKNOWN_FORMAT, "detail.LifecycleTransition != detail-type")
    return asg.lifecycle(detail, "detail", meta)


PARSERS: Mapping[tuple[str, str], Parser] = {
    ("aws.ec2", "EC2 Spot Instance Interruption Warning"): _spot,
    ("aws.ec2", "EC2 Instance Rebalance Recommendation"): _rebalance,
    ("aws.ec2", "EC2 Instance State-change Notification"): _state_change,
    ("aws.health", "AWS Health Event"): _health,
    ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action"): _lifecycle_terminate,
    ("aws.autoscaling", "EC2 Instance-launch Lifecycle Action"): _lifecycle_launch,
}
KNOWN_SOURCES = frozenset(source for source, _ in PARSERS)
