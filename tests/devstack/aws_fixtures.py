"""Shared fixtures and helpers for the tests/devstack/test_aws_* modules.

Import the *_fixture functions; they register as `aws`, `name` and `routed`.

moto's state is global per process, so every test names its own queues and groups.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.aws import AwsStack, Queue


@pytest.fixture(scope="module", name="aws")
def aws_fixture() -> Iterator[AwsStack]:
    with AwsStack() as stack:
        yield stack


@pytest.fixture(name="name")
def name_fixture() -> str:
    """A unique name stem for this test's queues and groups."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(name="routed")
def routed_fixture(aws: AwsStack, name: str) -> Queue:
    """A queue that receives every event kind lifecycled consumes."""
    queue = aws.create_queue(f"{name}-events", dlq=False)
    aws.route_events_to(queue)
    return queue


def receive(
    aws: AwsStack,
    queue: Queue,
    *,
    count: int,
    where: Callable[[dict[str, Any]], bool] = lambda body: True,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Receive and delete messages until `count` bodies matching `where` arrived."""
    sqs = aws.boto3_client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in got.get("Messages", []):
            sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(message["Body"])
            if where(body):
                found.append(body)
        if len(found) < count:
            time.sleep(0.05)
    assert len(found) >= count, f"expected {count} messages, got {found}"
    return found


def about(instance_id: str, detail_type: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """Matches EventBridge events (or direct hook messages) about one instance."""

    def match(body: dict[str, Any]) -> bool:
        detail = body.get("detail", body)
        ids = {detail.get("instance-id"), detail.get("EC2InstanceId")}
        ids.update(e.get("entityValue") for e in detail.get("affectedEntities", []))
        kind_ok = detail_type is None or body.get("detail-type") == detail_type
        return instance_id in ids and kind_ok

    return match
