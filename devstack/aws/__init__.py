"""The embedded AWS stack: moto's server in-process, with Auto Scaling lifecycle hooks added.

See README.md in this folder for what is emulated and how it differs from AWS.
"""

from lifecycled.rules import EVENT_RULES, EventRule

from .calls import RecordedCall
from .ecs_stack import EcsCluster
from .stack import AwsStack, Instance, Queue
from .waiting import wait_for, wait_until

__all__ = [
    "EVENT_RULES",
    "AwsStack",
    "EcsCluster",
    "EventRule",
    "Instance",
    "Queue",
    "RecordedCall",
    "wait_for",
    "wait_until",
]
