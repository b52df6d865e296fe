"""Well-formed events of AWS services lifecycled does not act on are ignored (counted and
deleted), not rejected: a bus shared with other rules must not fill the dead-letter queue."""

from __future__ import annotations

from typing import Any

import pytest

from lifecycled.events import Ignored, IgnoreReason, Rejected, RejectReason, parse_message
from tests.events.conftest import dumps


def _event(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    # The envelope of every EventBridge event (AWS's "EventBridge event structure").
    return {
        "version": "0",
        "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": detail_type,
        "source": source,
        "account": "111122223333",
        "time": "2020-01-23T17:57:58Z",
        "region": "us-west-2",
        "resources": [],
        "detail": detail,
    }


# The detail shapes of ECS's own events (the ECS developer guide, "Amazon ECS events").
ECS_TASK = {
    "clusterArn": "arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster",
    "taskArn": "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f",
    "lastStatus": "RUNNING",
    "desiredStatus": "RUNNING",
    "containers": [{"name": "web", "lastStatus": "RUNNING"}],
}
ECS_INSTANCE = {
    "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/default",
    "containerInstanceArn": "arn:aws:ecs:us-east-1:111122223333:container-instance/b54a2a04",
    "ec2InstanceId": "i-f3a8506b",
    "status": "DRAINING",
    "agentConnected": True,
}

OTHER_SERVICES = [
    ("aws.ecs", "ECS Task State Change", ECS_TASK),
    ("aws.ecs", "ECS Container Instance State Change", ECS_INSTANCE),
    ("aws.s3", "Object Created", {"bucket": {"name": "b"}}),
    ("aws.elasticloadbalancing", "AWS API Call via CloudTrail", {}),
    ("aws.codepipeline", "CodePipeline Pipeline Execution State Change", {"state": "STARTED"}),
]


@pytest.mark.parametrize(
    ("source", "detail_type", "detail"),
    OTHER_SERVICES,
    ids=[f"{s} {t}" for s, t, _ in OTHER_SERVICES],
)
def test_another_aws_service_event_is_ignored(
    source: str, detail_type: str, detail: dict[str, Any]
) -> None:
    result = parse_message(dumps(_event(source, detail_type, detail)))
    assert isinstance(result, Ignored)
    assert result.reason is IgnoreReason.UNHANDLED_SOURCE
    assert result.event_id == "3317b2af-7005-947d-b652-f55e762e571a"
    assert source in result.detail
    assert result.instance_ids == ()  # an ECS event's ec2InstanceId is never acted on


def test_an_event_that_only_looks_like_aws_is_still_rejected() -> None:
    for source in ("my.app", "aws", "aws.ECS", "aws.ecs ", "amazon.ecs", "aws.ecs\\u0000"):
        result = parse_message(dumps(_event(source, "ECS Task State Change", ECS_TASK)))
        assert isinstance(result, Rejected), source
        assert result.reason is RejectReason.FOREIGN_SOURCE
