"""EcsPlatform against moto's server (with the devstack's ECS/ELBv2 additions), no service."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.aws import AwsStack
from lifecycled.clients.aws import AwsClients
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.platforms.ecs import EcsPlatform
from lifecycled.record import DrainRecord
from lifecycled.settings import Settings


@pytest.fixture(scope="session")
def aws_stack() -> Iterator[AwsStack]:
    with AwsStack() as stack:
        stack.configure_ecs(stop_seconds=0.2, healthy_after_seconds=30)
        yield stack


@pytest.fixture
def aws(aws_stack: AwsStack, monkeypatch: pytest.MonkeyPatch) -> AwsStack:
    for key, value in aws_stack.env().items():
        monkeypatch.setenv(key, value)
    aws_stack.configure_ecs(stop_seconds=0.2, healthy_after_seconds=30)
    aws_stack.calls.clear()  # each test reads its own calls
    return aws_stack


@pytest.fixture
def name() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "platform": "ecs",
        "queue_url": "http://unused",
        "drain_poll_seconds": 0.1,
        "retry_delays": (0.1, 0.2),
        "ecs_target_poll_seconds": 0.1,
        "deadline_margin_seconds": 1,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Platform:
    platform: EcsPlatform
    aws_clients: AwsClients
    metrics: Metrics
    settings: Settings


@pytest.fixture
async def make_platform(aws: AwsStack) -> AsyncIterator[Any]:
    opened: list[Any] = []

    async def make(**overrides: Any) -> Platform:
        config = settings(**overrides)
        metrics = Metrics()
        context = AwsClients.open(config, metrics, ("ecs", "elbv2", "sqs"))
        clients = await context.__aenter__()
        opened.append(context)
        # A full garbage collection over moto's and botocore's objects pauses the loop for
        # most of a second; have it now, not inside a timed step of the test.
        gc.collect()
        gc.freeze()
        return Platform(EcsPlatform(clients, config, metrics), clients, metrics, config)

    yield make
    for context in opened:
        await context.__aexit__(None, None, None)


def record_for(instance_id: str, *, seconds: float = 120, **changes: Any) -> DrainRecord:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "instance_id": InstanceId(instance_id),
        "kind": NoticeKind.SPOT_INTERRUPTION,
        "action": Action.DRAIN,
        "event_id": str(uuid.uuid4()),
        "event_time": now,
        "deadline": now + timedelta(seconds=seconds),
    }
    values.update(changes)
    return DrainRecord(**values)


@dataclass
class FakeDrain:
    """What a platform sees of a drain: the record, its cutoff and the time left."""

    record: DrainRecord
    margin: float = 1.0
    seen: list[float] = field(default_factory=list)

    def remaining(self) -> float:
        return (self.record.deadline - datetime.now(UTC)).total_seconds()

    def cutoff(self) -> float:
        return asyncio.get_running_loop().time() + self.remaining() - self.margin
