"""The stack itself: server, environment, call recording, queues, event routing, payloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.aws import AwsStack, Queue
from lifecycled.rules import EVENT_RULES

from .aws_fixtures import about, aws_fixture, name_fixture, receive, routed_fixture

_FIXTURES = (aws_fixture, name_fixture, routed_fixture)


def test_env_points_an_unconfigured_client_at_the_stack(
    aws: AwsStack, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = aws.env()
    assert env["AWS_ENDPOINT_URL"] == aws.endpoint_url
    assert aws.endpoint_url.startswith("http://127.0.0.1:")
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    sqs = boto3.client("sqs")  # no endpoint_url, no region: all from the environment
    url = sqs.create_queue(QueueName=name)["QueueUrl"]

    listed = aws.boto3_client("sqs").list_queues(QueueNamePrefix=name)["QueueUrls"]
    assert listed == [url]  # the queue exists in the stack's moto


def test_every_call_is_recorded_with_service_action_params_and_status(
    aws: AwsStack, name: str
) -> None:
    aws.calls.clear()
    autoscaling = boto3.client(
        "autoscaling",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    with pytest.raises(ClientError):
        autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=name,
            LifecycleHookName="drain",
            LifecycleActionResult="CONTINUE",
            InstanceId="i-0123456789abcdef0",
        )
    aws.create_queue(name, dlq=False)

    mine = [c for c in aws.calls.snapshot() if not c.from_devstack]
    assert [(c.service, c.action, c.status) for c in mine] == [
        ("autoscaling", "CompleteLifecycleAction", 400)
    ]
    assert mine[0].params["InstanceId"] == "i-0123456789abcdef0"
    assert mine[0].params["LifecycleActionResult"] == "CONTINUE"
    setup = aws.calls.of("CreateQueue", include_devstack=True)
    assert setup[0].service == "sqs" and setup[0].params["QueueName"] == name  # JSON protocol
    assert aws.calls.of("CreateQueue") == []  # devstack calls are filtered by default
    times = [c.time for c in aws.calls.snapshot()]
    assert times == sorted(times)

    aws.calls.clear()
    assert aws.calls.snapshot() == []


def test_create_queue_with_dead_letter_queue(aws: AwsStack, name: str) -> None:
    queue = aws.create_queue(name, max_receive_count=2, visibility_timeout=7)

    assert queue.arn.endswith(f":{name}") and queue.dlq_url and queue.dlq_url.endswith("-dlq")
    attrs = aws.boto3_client("sqs").get_queue_attributes(
        QueueUrl=queue.url, AttributeNames=["All"]
    )["Attributes"]
    assert attrs["VisibilityTimeout"] == "7"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(f":{name}-dlq")
    assert int(redrive["maxReceiveCount"]) == 2


def test_fifo_queue_gets_a_fifo_dead_letter_queue(aws: AwsStack, name: str) -> None:
    queue = aws.create_queue(f"{name}.fifo")
    assert queue.dlq_url is not None and queue.dlq_url.endswith(f"{name}-dlq.fifo")


def test_rules_are_data_for_every_kind_we_consume() -> None:
    kinds = {(r.pattern["source"][0], r.pattern["detail-type"][0]) for r in EVENT_RULES}
    assert kinds == {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("aws.ec2", "EC2 Instance State-change Notification"),
        ("aws.health", "AWS Health Event"),
        ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action"),
        ("aws.autoscaling", "EC2 Instance-launch Lifecycle Action"),
    }
    for rule_name, pattern in EVENT_RULES:  # plain (name, pattern) pairs
        assert len(rule_name) <= 64
        json.dumps(pattern)


def test_route_events_to_installs_rules_and_queue_policy(aws: AwsStack, routed: Queue) -> None:
    events = aws.boto3_client("events")
    for rule in EVENT_RULES:
        described = events.describe_rule(Name=rule.name)
        assert json.loads(described["EventPattern"]) == rule.pattern
        targets = events.list_targets_by_rule(Rule=rule.name)["Targets"]
        assert routed.arn in {t["Arn"] for t in targets}
    policy = json.loads(
        aws.boto3_client("sqs").get_queue_attributes(
            QueueUrl=routed.url, AttributeNames=["Policy"]
        )["Attributes"]["Policy"]
    )
    statement = policy["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert len(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == len(EVENT_RULES)


def test_spot_interruption_is_delivered_as_aws_sends_it(aws: AwsStack, routed: Queue) -> None:
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    sent = aws.send_spot_interruption("i-0aaaaaaaaaaaaaaa1", time=when)

    [body] = receive(aws, routed, count=1, where=about("i-0aaaaaaaaaaaaaaa1"))

    assert body == sent  # what the helper returns is exactly what arrives
    assert list(body) == [
        "version", "id", "detail-type", "source", "account", "time", "region", "resources",
        "detail",
    ]  # fmt: skip
    assert body["account"] == aws.account  # moto drops it; the devstack restores it
    assert body["time"] == "2025-03-04T05:06:07Z"
    assert body["detail"] == {"instance-id": "i-0aaaaaaaaaaaaaaa1", "instance-action": "terminate"}
    assert body["resources"] == [
        f"arn:aws:ec2:{aws.region}:{aws.account}:instance/i-0aaaaaaaaaaaaaaa1"
    ]


def test_rebalance_and_state_change_are_delivered(aws: AwsStack, routed: Queue) -> None:
    aws.send_rebalance_recommendation("i-0bbbbbbbbbbbbbbb2")
    aws.send_state_change("i-0bbbbbbbbbbbbbbb2", "stopping")

    bodies = receive(aws, routed, count=2, where=about("i-0bbbbbbbbbbbbbbb2"))

    by_type = {b["detail-type"]: b["detail"] for b in bodies}
    assert by_type == {
        "EC2 Instance Rebalance Recommendation": {"instance-id": "i-0bbbbbbbbbbbbbbb2"},
        "EC2 Instance State-change Notification": {
            "instance-id": "i-0bbbbbbbbbbbbbbb2",
            "state": "stopping",
        },
    }


def test_uninteresting_states_are_filtered_by_the_rule(aws: AwsStack, routed: Queue) -> None:
    aws.send_state_change("i-0ccccccccccccccc3", "running")
    aws.send_state_change("i-0ccccccccccccccc3", "terminated")

    [body] = receive(aws, routed, count=1, where=about("i-0ccccccccccccccc3"))
    assert body["detail"]["state"] == "terminated"
    assert receive(aws, routed, count=0, where=about("i-0ccccccccccccccc3"), timeout=0.3) == []


def test_scheduled_change_is_an_aws_health_event(aws: AwsStack, routed: Queue) -> None:
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    sent = aws.send_scheduled_change(
        ["i-0ddddddddddddddd4", "i-0ddddddddddddddd5"],
        start=start,
        end=start + timedelta(hours=2),
        event_type_code="AWS_EC2_MAINTENANCE_SCHEDULED",
    )

    [body] = receive(aws, routed, count=1, where=about("i-0ddddddddddddddd4"))

    assert body == sent
    assert (body["source"], body["detail-type"]) == ("aws.health", "AWS Health Event")
    detail = body["detail"]
    assert detail["service"] == "EC2"
    assert detail["eventTypeCategory"] == "scheduledChange"
    assert detail["eventTypeCode"] == "AWS_EC2_MAINTENANCE_SCHEDULED"
    assert detail["startTime"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert detail["endTime"] == "Wed, 02 Jan 2030 05:04:05 GMT"
    assert detail["statusCode"] == "upcoming"
    assert detail["eventArn"].startswith(
        f"arn:aws:health:{aws.region}::event/EC2/AWS_EC2_MAINTENANCE_SCHEDULED/"
    )
    assert [e["entityValue"] for e in detail["affectedEntities"]] == [
        "i-0ddddddddddddddd4",
        "i-0ddddddddddddddd5",
    ]
    assert body["resources"] == ["i-0ddddddddddddddd4", "i-0ddddddddddddddd5"]


def test_scheduled_change_can_name_entities_by_arn(aws: AwsStack, routed: Queue) -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    sent = aws.send_scheduled_change(
        ["i-0eeeeeeeeeeeeeee6"], start=start, end=start + timedelta(hours=1), entity_arns=True
    )
    arn = f"arn:aws:ec2:{aws.region}:{aws.account}:instance/i-0eeeeeeeeeeeeeee6"
    assert sent["detail"]["affectedEntities"][0]["entityValue"] == arn
    receive(aws, routed, count=1, where=lambda b: b.get("id") == sent["id"])


def test_non_default_account_appears_in_events(name: str) -> None:
    # A second server in the same process; moto's account choice is process-wide, so restore.
    previous = os.environ.get("MOTO_ACCOUNT_ID")
    try:
        with AwsStack(region="eu-west-1", account="111122223333") as other:
            queue = other.create_queue(name, dlq=False)
            other.route_events_to(queue)
            other.send_spot_interruption("i-0fffffffffffffff7")
            [body] = receive(other, queue, count=1, where=about("i-0fffffffffffffff7"))
            assert (body["account"], body["region"]) == ("111122223333", "eu-west-1")
            assert queue.arn == f"arn:aws:sqs:eu-west-1:111122223333:{name}"
    finally:
        if previous is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = previous


def test_module_entry_point_prints_exports() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.aws", "--queue", "cli-q", "--group", "cli:1"],
        cwd=Path(__file__).resolve().parents[2],  # devstack/ is not installed: the repo root
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(10)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export")
    )
    assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert exports["AWS_EC2_METADATA_DISABLED"] == "true"
    assert exports["LIFECYCLED_QUEUE_URL"].endswith("/cli-q")
    assert any(line.startswith("# cli: i-") for line in lines)
