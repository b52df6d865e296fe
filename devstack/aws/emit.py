"""How AWS services inside the devstack talk to EventBridge, SQS and SNS.

Auto Scaling and EC2 publish events service-side in AWS, so here they call moto's backends
in-process rather than going through the HTTP API (which is for clients).
"""

from __future__ import annotations

import json
import time
from typing import Any

from moto.events.models import events_backends
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends

from .payloads import EventSpec


def put_event(account: str, region: str, spec: EventSpec) -> None:
    entry = {
        "Source": spec.source,
        "DetailType": spec.detail_type,
        "Detail": json.dumps(spec.detail),
        "Resources": spec.resources,
        "Time": time.time(),  # moto formats a unix time into the delivered "time"
    }
    events_backends[account][region].put_events([entry])


def target_exists(arn: str) -> bool:
    service, region, account, name = _split_arn(arn)
    if service == "sqs":
        return name in sqs_backends[account][region].queues
    if service == "sns":
        return arn in sns_backends[account][region].topics
    return False


def notify(arn: str, body: dict[str, Any], subject: str) -> None:
    """Send one notification to a hook's NotificationTargetARN (an SQS queue or SNS topic)."""
    service, region, account, name = _split_arn(arn)
    message = json.dumps(body)
    if service == "sqs":
        sqs_backends[account][region].send_message(queue_name=name, message_body=message)
    elif service == "sns":
        sns_backends[account][region].publish(message=message, arn=arn, subject=subject)


def _split_arn(arn: str) -> tuple[str, str, str, str]:
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return "", "", "", ""
    return parts[2], parts[3], parts[4], parts[5]
