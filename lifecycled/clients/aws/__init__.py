"""The only package that talks to AWS: one aiobotocore client per service behind small typed
methods, reached through the holder the service opens: `aws.sqs.receive(...)`,
`aws.autoscaling.complete_lifecycle_action(...)`.

base.py is what they share: session and config, metrics, and the translation of botocore's
errors into ours (specific ones by error code, e.g. HookActionGone, InvalidTargetError).
Call sites spell `aws.<service>.<method>(`: the IAM policy tests derive the actions from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from lifecycled.clients.aws.autoscaling import AutoScalingClient
from lifecycled.clients.aws.base import open_clients, region_known, region_of
from lifecycled.clients.aws.ec2 import Ec2Client
from lifecycled.clients.aws.ecs import EcsClient
from lifecycled.clients.aws.elb import ClassicElbClient
from lifecycled.clients.aws.elbv2 import Elbv2Client
from lifecycled.clients.aws.events import EventsClient
from lifecycled.clients.aws.sns import SnsClient
from lifecycled.clients.aws.sqs import SqsClient
from lifecycled.clients.aws.sts import StsClient
from lifecycled.observe import Metrics
from lifecycled.settings import Settings

__all__ = ["AwsClients", "region_known", "region_of"]


class AwsClients:
    """One client per service, opened for the life of the service. A service that was not
    opened raises KeyError when called."""

    def __init__(self, clients: dict[str, Any], metrics: Metrics) -> None:
        self.sqs = SqsClient(clients.get("sqs"), metrics)
        self.ec2 = Ec2Client(clients.get("ec2"), metrics)
        self.autoscaling = AutoScalingClient(clients.get("autoscaling"), metrics)
        self.ecs = EcsClient(clients.get("ecs"), metrics)
        self.elbv2 = Elbv2Client(clients.get("elbv2"), metrics)
        self.elb = ClassicElbClient(clients.get("elb"), metrics)
        self.sts = StsClient(clients.get("sts"), metrics)
        self.events = EventsClient(clients.get("events"), metrics)
        self.sns = SnsClient(clients.get("sns"), metrics)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, metrics: Metrics, services: tuple[str, ...]
    ) -> AsyncIterator[AwsClients]:
        async with open_clients(settings, services) as clients:
            yield cls(clients, metrics)
