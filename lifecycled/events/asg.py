"""Auto Scaling lifecycle messages, sent directly by a hook's NotificationTargetARN (to SQS
or SNS) or found in the `detail` of an EventBridge lifecycle action.

Direct messages look like
`{"Service": "AWS Auto Scaling", "Time": ..., "RequestId": ..., "AccountId": ...,
"AutoScalingGroupName": ..., "LifecycleHookName": ..., "LifecycleActionToken": ...,
"EC2InstanceId": ..., "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING"}`;
a hook's first message is `{"Event": "autoscaling:TEST_NOTIFICATION", ...}`. Auto Scaling
group *notifications* (`"Event": "autoscaling:EC2_INSTANCE_TERMINATE"`, no transition) ask
nothing of us and are ignored.
"""

from __future__ import annotations

from lifecycled.events.context import Envelope, EventMeta
from lifecycled.events.decode import JsonObject
from lifecycled.events.fields import (
    Reject,
    arn_region_account,
    clip,
    opt_str,
    req_instance_id,
    req_str,
    req_time,
)
from lifecycled.events.result import Ignored, IgnoreReason, RejectReason
from lifecycled.model import InstanceId, LifecycleAction, Notice, NoticeKind

SERVICE = "AWS Auto Scaling"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"

_KINDS = {TERMINATING: NoticeKind.LIFECYCLE_TERMINATE, LAUNCHING: NoticeKind.LIFECYCLE_LAUNCH}
_WHERE = "message"


def is_direct(obj: JsonObject) -> bool:
    return "Service" in obj or "LifecycleTransition" in obj or "Event" in obj


def parse_direct(obj: JsonObject, envelope: Envelope) -> Notice | Ignored:
    """A direct Auto Scaling message; raises `Reject`."""
    service = opt_str(obj, "Service", _WHERE)
    if service is not None and service != SERVICE:
        raise Reject(RejectReason.FOREIGN_SOURCE, f"message.Service {clip(service)} is not ours")
    return lifecycle(obj, _WHERE, _meta(obj, envelope))


def lifecycle(fields: JsonObject, where: str, meta: EventMeta) -> Notice | Ignored:
    """The notice in a lifecycle message's fields (direct message or EventBridge detail)."""
    if TEST_NOTIFICATION in (fields.get("Event"), fields.get("LifecycleTransition")):
        return _notice(NoticeKind.TEST_NOTIFICATION, meta)
    transition = opt_str(fields, "LifecycleTransition", where)
    if transition is None:
        event = opt_str(fields, "Event", where)
        if not event:
            raise Reject(RejectReason.MISSING_FIELD, f"{where}.LifecycleTransition is missing")
        detail = f"Auto Scaling event {clip(event)} is not a lifecycle action"
        return meta.ignored(IgnoreReason.UNHANDLED_TRANSITION, detail)
    kind = _KINDS.get(transition)
    if kind is None:
        detail = f"transition {clip(transition)} needs no action"
        return meta.ignored(IgnoreReason.UNHANDLED_TRANSITION, detail)
    instance = req_instance_id(fields, "EC2InstanceId", where)
    action = LifecycleAction(
        hook_name=req_str(fields, "LifecycleHookName", where),
        group_name=req_str(fields, "AutoScalingGroupName", where),
        token=req_str(fields, "LifecycleActionToken", where),
        transition=transition,
    )
    return _notice(kind, meta, instances=(instance,), action=action)


def _notice(
    kind: NoticeKind,
    meta: EventMeta,
    *,
    instances: tuple[InstanceId, ...] = (),
    action: LifecycleAction | None = None,
) -> Notice:
    # The hook's timeout is read from the group later: no deadline here.
    return Notice(
        kind=kind,
        instance_ids=instances,
        event_id=meta.event_id,
        event_time=meta.event_time,
        deadline=None,
        region=meta.region,
        account=meta.account,
        lifecycle=action,
    )


def _meta(obj: JsonObject, envelope: Envelope) -> EventMeta:
    event_id = opt_str(obj, "RequestId", _WHERE) or envelope.message_id
    if not event_id:
        raise Reject(RejectReason.MISSING_FIELD, "message.RequestId is missing")
    region, arn_account = _group_arn(obj)
    return EventMeta(
        event_id=event_id,
        event_time=req_time(obj, "Time", _WHERE),
        region=region or envelope.region,
        account=opt_str(obj, "AccountId", _WHERE) or arn_account or envelope.account,
    )


def _group_arn(obj: JsonObject) -> tuple[str | None, str | None]:
    arn = opt_str(obj, "AutoScalingGroupARN", _WHERE)
    if arn is None:
        return None, None
    where = arn_region_account(arn, "autoscaling")
    if where is None:
        raise Reject(RejectReason.WRONG_TYPE, "message.AutoScalingGroupARN is not an ARN")
    return where
