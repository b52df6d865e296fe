"""Event and notification bodies in the shapes AWS documents.

Pure functions: no I/O, no moto. Sources: the EC2 User Guide (Spot interruption, rebalance
recommendation, state-change events), the AWS Health EventBridge schema reference, and the
EC2 Auto Scaling User Guide (lifecycle action events; lifecycle hook notifications to SQS).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, NamedTuple

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"

DETAIL_TYPE_BY_TRANSITION = {
    TERMINATING: "EC2 Instance-terminate Lifecycle Action",
    LAUNCHING: "EC2 Instance-launch Lifecycle Action",
}


class EventSpec(NamedTuple):
    """What goes into one PutEvents entry."""

    source: str
    detail_type: str
    detail: dict[str, Any]
    resources: list[str]


def instance_arn(region: str, account: str, instance_id: str) -> str:
    return f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"


def spot_interruption(region: str, account: str, instance_id: str) -> EventSpec:
    detail = {"instance-id": instance_id, "instance-action": "terminate"}
    resources = [instance_arn(region, account, instance_id)]
    return EventSpec("aws.ec2", "EC2 Spot Instance Interruption Warning", detail, resources)


def rebalance_recommendation(region: str, account: str, instance_id: str) -> EventSpec:
    detail = {"instance-id": instance_id}
    resources = [instance_arn(region, account, instance_id)]
    return EventSpec("aws.ec2", "EC2 Instance Rebalance Recommendation", detail, resources)


def state_change(region: str, account: str, instance_id: str, state: str) -> EventSpec:
    detail = {"instance-id": instance_id, "state": state}
    resources = [instance_arn(region, account, instance_id)]
    return EventSpec("aws.ec2", "EC2 Instance State-change Notification", detail, resources)


def http_date(when: datetime) -> str:
    """AWS Health writes its times as RFC 1123 dates: 'Sat, 05 Jun 2016 15:10:09 GMT'."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def scheduled_change(
    region: str,
    account: str,
    instance_ids: list[str],
    *,
    start: datetime,
    end: datetime,
    status: str,
    event_type_code: str,
    event_id: str,
    entity_arns: bool = False,
) -> EventSpec:
    """An account-specific AWS Health event for EC2 ("scheduledChange" category).

    Older documented samples name the affected instances by id, the current schema reference
    by ARN; `entity_arns` picks the ARN form so parsers can be tested against both.
    """
    now = http_date(datetime.now(UTC))
    entities = [
        {
            "entityValue": instance_arn(region, account, i) if entity_arns else i,
            "lastUpdatedTime": now,
            "status": "PENDING",
        }
        for i in instance_ids
    ]
    detail: dict[str, Any] = {
        "eventArn": f"arn:aws:health:{region}::event/EC2/{event_type_code}/{event_id}",
        "service": "EC2",
        "eventTypeCode": event_type_code,
        "eventTypeCategory": "scheduledChange",
        "eventScopeCode": "ACCOUNT_SPECIFIC",
        "communicationId": f"{event_id}-1",
        "startTime": http_date(start),
        "endTime": http_date(end),
        "lastUpdatedTime": now,
        "statusCode": status,
        "eventRegion": region,
        "eventDescription": [
            {
                "language": "en_US",
                "latestDescription": f"{event_type_code}: the listed instances are affected.",
            }
        ],
        "affectedEntities": entities,
        "affectedAccount": account,
    }
    return EventSpec("aws.health", "AWS Health Event", detail, list(instance_ids))


class LifecycleMessage(NamedTuple):
    """The facts one lifecycle action notification carries, whatever the channel."""

    account: str
    group_name: str
    group_arn: str
    hook_name: str
    transition: str
    instance_id: str
    token: str
    metadata: str | None


def lifecycle_event(msg: LifecycleMessage) -> EventSpec:
    """The EventBridge form ("EC2 Instance-terminate Lifecycle Action" and the launch twin)."""
    detail: dict[str, Any] = {
        "LifecycleActionToken": msg.token,
        "AutoScalingGroupName": msg.group_name,
        "LifecycleHookName": msg.hook_name,
        "EC2InstanceId": msg.instance_id,
        "LifecycleTransition": msg.transition,
    }
    if msg.metadata is not None:
        detail["NotificationMetadata"] = msg.metadata
    detail.update(_origin_destination(msg.transition))
    detail_type = DETAIL_TYPE_BY_TRANSITION[msg.transition]
    return EventSpec("aws.autoscaling", detail_type, detail, [msg.group_arn])


def lifecycle_notification(msg: LifecycleMessage, request_id: str) -> dict[str, Any]:
    """The body Auto Scaling sends straight to a hook's SQS (or SNS) NotificationTargetARN."""
    route = _origin_destination(msg.transition)
    body: dict[str, Any] = {
        "Origin": route["Origin"],
        "LifecycleHookName": msg.hook_name,
        "Destination": route["Destination"],
        "AccountId": msg.account,
        "RequestId": request_id,
        "LifecycleTransition": msg.transition,
        "AutoScalingGroupName": msg.group_name,
        "Service": "AWS Auto Scaling",
        "Time": iso_millis(datetime.now(UTC)),
        "EC2InstanceId": msg.instance_id,
    }
    if msg.metadata is not None:
        body["NotificationMetadata"] = msg.metadata
    body["LifecycleActionToken"] = msg.token
    return body


def test_notification(
    account: str, group_name: str, group_arn: str, request_id: str
) -> dict[str, Any]:
    """Sent to a hook's notification target when the hook is created."""
    return {
        "AccountId": account,
        "RequestId": request_id,
        "AutoScalingGroupARN": group_arn,
        "AutoScalingGroupName": group_name,
        "Service": "AWS Auto Scaling",
        "Event": TEST_NOTIFICATION,
        "Time": iso_millis(datetime.now(UTC)),
    }


def sns_subject(transition: str, instance_id: str) -> str:
    verb = "TERMINATING" if transition == TERMINATING else "LAUNCHING"
    return f"Auto Scaling:  Lifecycle action '{verb}' for instance {instance_id} in progress."


def iso_millis(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _origin_destination(transition: str) -> dict[str, str]:
    if transition == TERMINATING:
        return {"Origin": "AutoScalingGroup", "Destination": "EC2"}
    return {"Origin": "EC2", "Destination": "AutoScalingGroup"}


def envelope(
    spec: EventSpec, *, event_id: str, account: str, region: str, time: datetime
) -> dict[str, Any]:
    """The event as EventBridge delivers it to a target."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": spec.detail_type,
        "source": spec.source,
        "account": account,
        "time": time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": spec.resources,
        "detail": spec.detail,
    }
