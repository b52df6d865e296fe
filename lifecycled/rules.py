"""The EventBridge rules lifecycled consumes, as data.

These are the rules this project recommends (one rule per kind, all targeting the lifecycled
queue): deploy/cloudformation/queue.yaml creates exactly these (`make package-check`
compares), docs/configuration.md lists them, and the test stack (devstack/aws) installs them,
so tests exercise the same filtering users get.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class EventRule(NamedTuple):
    name: str
    pattern: dict[str, Any]


EVENT_RULES: tuple[EventRule, ...] = (
    EventRule(
        "lifecycled-spot-interruption",
        {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    ),
    EventRule(
        "lifecycled-rebalance-recommendation",
        {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    ),
    EventRule(
        "lifecycled-instance-state-change",
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            # Only the states that end a machine; pending/running are noise at fleet scale.
            "detail": {"state": ["stopping", "stopped", "shutting-down", "terminated"]},
        },
    ),
    EventRule(
        "lifecycled-scheduled-change",
        {
            "source": ["aws.health"],
            "detail-type": ["AWS Health Event"],
            "detail": {"service": ["EC2"], "eventTypeCategory": ["scheduledChange"]},
        },
    ),
    EventRule(
        "lifecycled-asg-terminate-hook",
        {"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance-terminate Lifecycle Action"]},
    ),
    EventRule(
        "lifecycled-asg-launch-hook",
        {"source": ["aws.autoscaling"], "detail-type": ["EC2 Instance-launch Lifecycle Action"]},
    ),
)
