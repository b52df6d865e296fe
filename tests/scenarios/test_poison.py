"""Poison never starves real work: 5 real Spot warnings queued behind thousands of hostile
bodies are all drained before their deadline, and the hostile bodies end in the dead-letter
queue, each received once (not maxReceiveCount times), with the reason it was refused.

`make test` queues 1,000; LIFECYCLED_TEST_POISON=5000 is the issue's figure (a few minutes).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client

from devstack.aws import AwsStack
from devstack.kube import KubeApiServer
from tests.events.conftest import fixture_obj
from tests.scenarios.conftest import SMALL, Stack, build_stack, eventually, metric

SPOT = "spot_interruption"
WARNINGS = 5
POISON = int(os.environ.get("LIFECYCLED_TEST_POISON", "1000"))


def hostile(n: int) -> str:
    kind = n % 5
    if kind == 0:
        return "{not json " + str(n)
    if kind == 1:
        return "[" * 200 + "]" * 200  # deeper than the parser allows
    if kind == 2:
        return json.dumps({"source": "my.app", "detail-type": "x", "n": n})  # foreign source
    if kind == 3:
        obj = fixture_obj("spot_interruption.json")
        obj["detail"]["instance-id"] = f"not-an-instance-{n}"
        return json.dumps(obj)
    return json.dumps({"pad": "x" * (1024 if n % 500 else 250_000)})  # the odd huge one


def queue_depth(sqs: Any, url: str) -> int:
    reply = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in reply["Attributes"].values())


@pytest.fixture
async def stack(aws_env: AwsStack, kube: KubeApiServer, api: client.ApiClient) -> Stack:
    return await build_stack(aws_env, kube, api, size=8, workloads=SMALL)


@pytest.mark.timeout(600)
async def test_real_warnings_behind_thousands_of_hostile_bodies_drain_in_time(
    stack: Stack, service_for
) -> None:
    warned = stack.machines[:WARNINGS]
    sqs = stack.aws.boto3_client("sqs")
    for start in range(0, POISON, 10):
        entries = [{"Id": str(n), "MessageBody": hostile(n)} for n in range(start, start + 10)]
        sqs.send_message_batch(QueueUrl=stack.queue.url, Entries=entries)
    deadlines = []
    for machine in warned:
        event = stack.aws.send_spot_interruption(machine.instance_id)
        deadlines.append(datetime.fromisoformat(event["time"].replace("Z", "+00:00")))
    async with service_for(message_concurrency=32) as service:

        async def all_drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == WARNINGS

        await eventually(all_drained, within=115, every=0.5)
        assert datetime.now(deadlines[0].tzinfo) < min(deadlines) + timedelta(seconds=120)

        # SQS delivers at least once: a receive whose reply was lost (a client time-out under
        # load) hides its messages for the visibility timeout, then hands them out again.
        async def poison_moved_aside() -> bool:
            return queue_depth(sqs, stack.queue.url) == 0

        await eventually(poison_moved_aside, within=180, every=2.0)
        assert queue_depth(sqs, stack.queue.dlq_url) >= POISON
        # One look each, near enough: moved aside at once, not received maxReceiveCount times.
        received = metric(service, "lifecycled_sqs_messages_total", outcome="received")
        assert received <= (POISON + WARNINGS) * 1.05, received
        assert metric(service, "lifecycled_sqs_messages_total", outcome="released") == 0
        rejected = sum(
            sample.value
            for family in service.metrics.registry.collect()
            if family.name == "lifecycled_rejected_messages"
            for sample in family.samples
            if sample.name == "lifecycled_rejected_messages_total"
        )
        assert rejected >= POISON
    sample = sqs.receive_message(
        QueueUrl=stack.queue.dlq_url, MessageAttributeNames=["All"], MaxNumberOfMessages=1
    )["Messages"][0]
    assert sample["MessageAttributes"]["lifecycled-rejected"]["StringValue"]
