"""Auto Scaling lifecycle hook semantics added on top of moto, pinned over HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from devstack.aws import AwsStack, Queue, wait_for, wait_until
from devstack.aws.asg import LifecycleAction

from .aws_fixtures import about, aws_fixture, name_fixture, receive, routed_fixture

_FIXTURES = (aws_fixture, name_fixture, routed_fixture)

TERMINATE_EVENT = "EC2 Instance-terminate Lifecycle Action"
LAUNCH_EVENT = "EC2 Instance-launch Lifecycle Action"


def group_state(aws: AwsStack, group: str) -> dict[str, str]:
    described = aws.boto3_client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group]
    )["AutoScalingGroups"][0]
    return {i["InstanceId"]: i["LifecycleState"] for i in described["Instances"]}


def desired(aws: AwsStack, group: str) -> int:
    return int(
        aws.boto3_client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
            "AutoScalingGroups"
        ][0]["DesiredCapacity"]
    )


def lifecycle_event(aws: AwsStack, queue: Queue, instance_id: str, kind: str) -> dict[str, Any]:
    [event] = receive(aws, queue, count=1, where=about(instance_id, kind))
    return event


def complete(aws: AwsStack, group: str, result: str = "CONTINUE", **which: str) -> None:
    aws.boto3_client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName=group, LifecycleHookName="drain", LifecycleActionResult=result, **which
    )


def heartbeat(aws: AwsStack, group: str, **which: str) -> None:
    aws.boto3_client("autoscaling").record_lifecycle_action_heartbeat(
        AutoScalingGroupName=group, LifecycleHookName="drain", **which
    )


def test_scale_in_waits_in_terminating_wait_and_announces_it(
    aws: AwsStack, name: str, routed: Queue
) -> None:
    first, second = aws.create_group(name, size=2)

    aws.scale_in(name, first.id)

    assert aws.lifecycle_state(first.id) == "Terminating:Wait"
    assert group_state(aws, name) == {first.id: "Terminating:Wait", second.id: "InService"}
    assert desired(aws, name) == 1
    assert aws.ec2_state(first.id) == "running"  # the machine is still there
    event = lifecycle_event(aws, routed, first.id, TERMINATE_EVENT)
    group_arn = aws.boto3_client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    assert (event["source"], event["account"], event["region"]) == (
        "aws.autoscaling",
        aws.account,
        aws.region,
    )
    assert event["resources"] == [group_arn]
    detail = event["detail"]
    assert uuid.UUID(detail.pop("LifecycleActionToken")).version == 4
    assert detail == {
        "AutoScalingGroupName": name,
        "LifecycleHookName": "drain",
        "EC2InstanceId": first.id,
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
    }


async def test_complete_continue_by_token_with_aiobotocore_terminates(
    aws: AwsStack, name: str, routed: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    [instance] = aws.create_group(name, size=1)
    aws.scale_in(name, instance.id)
    token = lifecycle_event(aws, routed, instance.id, TERMINATE_EVENT)["detail"][
        "LifecycleActionToken"
    ]
    for key, value in aws.env().items():  # the service's way: only the environment
        monkeypatch.setenv(key, value)

    async with get_session().create_client("autoscaling") as client:
        await client.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=name, LifecycleHookName="drain", LifecycleActionToken=token
        )
        await client.complete_lifecycle_action(
            AutoScalingGroupName=name,
            LifecycleHookName="drain",
            LifecycleActionToken=token,
            LifecycleActionResult="CONTINUE",
        )
        with pytest.raises(ClientError) as again:
            await client.complete_lifecycle_action(
                AutoScalingGroupName=name,
                LifecycleHookName="drain",
                LifecycleActionToken=token,
                LifecycleActionResult="CONTINUE",
            )

    assert again.value.response["Error"]["Code"] == "ValidationError"
    assert again.value.response["Error"]["Message"] == (
        f"No active Lifecycle Action found with token {token}"
    )
    assert await wait_until(lambda: aws.lifecycle_state(instance.id) is None)
    assert aws.transitions(instance.id) == [
        "InService",
        "Terminating:Wait",
        "Terminating:Proceed",
        "Terminated",
    ]
    assert aws.ec2_state(instance.id) == "terminated"
    assert group_state(aws, name) == {}
    states = receive(
        aws, routed, count=2, where=about(instance.id, "EC2 Instance State-change Notification")
    )
    assert [s["detail"]["state"] for s in states] == ["shutting-down", "terminated"]
    calls = aws.calls.of("CompleteLifecycleAction")
    assert [c.params["LifecycleActionToken"] for c in calls[-2:]] == [token, token]
    assert [c.status for c in calls[-2:]] == [200, 400]


def test_complete_abandon_by_instance_id_terminates(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(name, size=1)
    aws.scale_in(name, instance.id)

    complete(aws, name, "ABANDON", InstanceId=instance.id)

    assert aws.lifecycle_state(instance.id) is None
    assert aws.ec2_state(instance.id) == "terminated"


def test_wrong_token_instance_or_hook_is_a_validation_error(aws: AwsStack, name: str) -> None:
    first, second = aws.create_group(name, size=2)
    aws.scale_in(name, first.id)
    other_token = str(uuid.uuid4())

    cases = [
        (lambda: complete(aws, name, LifecycleActionToken=other_token), f"token {other_token}"),
        (lambda: heartbeat(aws, name, LifecycleActionToken=other_token), f"token {other_token}"),
        (lambda: complete(aws, name, InstanceId=second.id), f"instance ID {second.id}"),
        (lambda: heartbeat(aws, name, InstanceId=second.id), f"instance ID {second.id}"),
    ]
    for call, what in cases:
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"] == {
            "Type": "Sender",
            "Code": "ValidationError",
            "Message": f"No active Lifecycle Action found with {what}",
        }
    with pytest.raises(ClientError, match="No active Lifecycle Action"):
        aws.boto3_client("autoscaling").complete_lifecycle_action(
            AutoScalingGroupName=name,
            LifecycleHookName="not-the-hook",
            LifecycleActionResult="CONTINUE",
            InstanceId=first.id,
        )
    assert aws.lifecycle_state(first.id) == "Terminating:Wait"  # errors changed nothing


def test_timeout_applies_default_result(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(name, size=1, heartbeat_timeout=1)
    started = time.monotonic()
    aws.scale_in(name, instance.id)

    wait_for(lambda: aws.lifecycle_state(instance.id) is None, timeout=5, interval=0.02)

    waited = time.monotonic() - started
    assert 0.95 <= waited <= 1.3
    assert aws.ec2_state(instance.id) == "terminated"


def test_heartbeat_extends_the_wait_by_the_heartbeat_timeout(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(name, size=1, heartbeat_timeout=1)
    aws.scale_in(name, instance.id)
    for _ in range(4):  # 2 s in all: twice the heartbeat timeout
        time.sleep(0.5)
        heartbeat(aws, name, InstanceId=instance.id)
        assert aws.lifecycle_state(instance.id) == "Terminating:Wait"
    last = time.monotonic()

    wait_for(lambda: aws.lifecycle_state(instance.id) is None, timeout=5, interval=0.02)

    assert 0.9 <= time.monotonic() - last <= 1.3


def test_global_timeout_caps_heartbeats() -> None:
    action = LifecycleAction(
        token=str(uuid.uuid4()),
        group_name="g",
        hook_name="drain",
        instance_id="i-1",
        transition="autoscaling:EC2_INSTANCE_TERMINATING",
        heartbeat_timeout=30,
        default_result="ABANDON",
        expires=30.0,
        global_deadline=100.0,
    )
    action.heartbeat(20.0)
    assert action.expires == 50.0
    action.heartbeat(90.0)
    assert action.expires == 100.0


def test_hook_description_carries_global_timeout_and_target(aws: AwsStack, name: str) -> None:
    queue = aws.create_queue(name, dlq=False)
    aws.create_group(name, size=0, heartbeat_timeout=30, notification_queue=queue)
    [hook] = aws.boto3_client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=name)[
        "LifecycleHooks"
    ]
    assert hook["HeartbeatTimeout"] == 30
    assert hook["GlobalTimeout"] == 3000  # 100 x HeartbeatTimeout
    assert hook["NotificationTargetARN"] == queue.arn
    assert hook["DefaultResult"] == "ABANDON"

    aws.boto3_client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=name,
        LifecycleHookName="long",
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        HeartbeatTimeout=7200,
    )
    hooks = aws.boto3_client("autoscaling").describe_lifecycle_hooks(
        AutoScalingGroupName=name, LifecycleHookNames=["long"]
    )["LifecycleHooks"]
    assert hooks[0]["GlobalTimeout"] == 172800  # capped at 48 hours
    assert "NotificationTargetARN" not in hooks[0]


def test_hook_notification_target_gets_test_and_direct_messages(aws: AwsStack, name: str) -> None:
    queue = aws.create_queue(name, dlq=False)
    [instance] = aws.create_group(name, size=1, notification_queue=queue)

    [test] = receive(aws, queue, count=1)
    assert test.pop("RequestId") and test.pop("Time").endswith("Z")
    assert test.pop("AutoScalingGroupARN").endswith(f":autoScalingGroupName/{name}")
    assert test == {
        "AccountId": aws.account,
        "AutoScalingGroupName": name,
        "Service": "AWS Auto Scaling",
        "Event": "autoscaling:TEST_NOTIFICATION",
    }

    aws.scale_in(name, instance.id)
    [direct] = receive(aws, queue, count=1)
    assert list(direct) == [
        "Origin", "LifecycleHookName", "Destination", "AccountId", "RequestId",
        "LifecycleTransition", "AutoScalingGroupName", "Service", "Time", "EC2InstanceId",
        "LifecycleActionToken",
    ]  # fmt: skip
    assert direct["EC2InstanceId"] == instance.id
    assert direct["Service"] == "AWS Auto Scaling"
    assert direct["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert len(direct["LifecycleActionToken"]) == 36
    complete(aws, name, LifecycleActionToken=direct["LifecycleActionToken"])
    assert aws.lifecycle_state(instance.id) is None


def test_notification_metadata_is_passed_on(aws: AwsStack, name: str, routed: Queue) -> None:
    queue = aws.create_queue(name, dlq=False)
    [instance] = aws.create_group(name, size=1, terminate_hook=None)
    aws.boto3_client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=name,
        LifecycleHookName="drain",
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        NotificationTargetARN=queue.arn,
        RoleARN="arn:aws:iam::123456789012:role/r",
        NotificationMetadata='{"cluster": "demo"}',
    )
    receive(aws, queue, count=1)  # the test notification

    aws.scale_in(name, instance.id)

    [direct] = receive(aws, queue, count=1)
    assert direct["NotificationMetadata"] == '{"cluster": "demo"}'
    event = lifecycle_event(aws, routed, instance.id, TERMINATE_EVENT)
    assert event["detail"]["NotificationMetadata"] == '{"cluster": "demo"}'


def test_sns_notification_target(aws: AwsStack, name: str) -> None:
    queue = aws.create_queue(name, dlq=False)
    sns = aws.boto3_client("sns")
    topic = sns.create_topic(Name=name)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue.arn)
    [instance] = aws.create_group(name, size=1, terminate_hook=None)
    aws.boto3_client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=name,
        LifecycleHookName="drain",
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        NotificationTargetARN=topic,
        RoleARN="arn:aws:iam::123456789012:role/r",
    )
    aws.scale_in(name, instance.id)

    envelopes = receive(aws, queue, count=2)

    assert [e["Type"] for e in envelopes] == ["Notification", "Notification"]
    assert '"autoscaling:TEST_NOTIFICATION"' in envelopes[0]["Message"]
    assert f'"EC2InstanceId": "{instance.id}"' in envelopes[1]["Message"]


def test_hook_with_missing_target_is_refused(aws: AwsStack, name: str) -> None:
    aws.create_group(name, size=0, terminate_hook=None)
    missing = f"arn:aws:sqs:{aws.region}:{aws.account}:{name}-missing"
    with pytest.raises(ClientError, match="Unable to publish test message"):
        aws.boto3_client("autoscaling").put_lifecycle_hook(
            AutoScalingGroupName=name,
            LifecycleHookName="drain",
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
            NotificationTargetARN=missing,
            RoleARN="arn:aws:iam::123456789012:role/r",
        )


def test_scale_in_by_desired_capacity_goes_through_the_hook(aws: AwsStack, name: str) -> None:
    aws.create_group(name, size=3)
    autoscaling = aws.boto3_client("autoscaling")

    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, DesiredCapacity=1)

    states = sorted(group_state(aws, name).values())
    assert states == ["InService", "Terminating:Wait", "Terminating:Wait"]
    assert desired(aws, name) == 1


def test_terminate_without_decrement_launches_a_replacement(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(name, size=1)

    aws.boto3_client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=instance.id, ShouldDecrementDesiredCapacity=False
    )

    states = group_state(aws, name)
    assert states.pop(instance.id) == "Terminating:Wait"
    assert list(states.values()) == ["InService"]
    assert desired(aws, name) == 1


def test_terminating_an_unknown_instance_is_refused(aws: AwsStack) -> None:
    with pytest.raises(ClientError, match="No managed instance found"):
        aws.boto3_client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId="i-0123456789abcdef0", ShouldDecrementDesiredCapacity=True
        )


def test_without_a_hook_instances_leave_at_once(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(name, size=1, terminate_hook=None)
    aws.scale_in(name, instance.id)
    assert aws.lifecycle_state(instance.id) is None
    assert aws.transitions(instance.id) == ["InService", "Terminating", "Terminated"]


def test_force_terminate_ends_the_wait(aws: AwsStack, name: str, routed: Queue) -> None:
    [instance] = aws.create_group(name, size=1)
    aws.scale_in(name, instance.id)

    aws.force_terminate(instance.id)

    assert aws.lifecycle_state(instance.id) is None
    with pytest.raises(ClientError, match="No active Lifecycle Action"):
        complete(aws, name, InstanceId=instance.id)
    kinds = [
        e["detail"].get("state", e["detail-type"])
        for e in receive(aws, routed, count=3, where=about(instance.id))
    ]
    assert kinds == [TERMINATE_EVENT, "shutting-down", "terminated"]


def test_every_hook_must_complete(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(name, size=1)
    aws.boto3_client("autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=name,
        LifecycleHookName="second",
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        HeartbeatTimeout=300,
    )
    aws.scale_in(name, instance.id)

    complete(aws, name, InstanceId=instance.id)
    assert aws.lifecycle_state(instance.id) == "Terminating:Wait"
    aws.boto3_client("autoscaling").complete_lifecycle_action(
        AutoScalingGroupName=name,
        LifecycleHookName="second",
        LifecycleActionResult="CONTINUE",
        InstanceId=instance.id,
    )
    assert aws.lifecycle_state(instance.id) is None


def test_launch_hook_holds_new_instances_in_pending_wait(
    aws: AwsStack, name: str, routed: Queue
) -> None:
    first, second = aws.create_group(name, size=2, terminate_hook=None, launch_hook="drain")

    assert group_state(aws, name) == {first.id: "Pending:Wait", second.id: "Pending:Wait"}
    event = lifecycle_event(aws, routed, first.id, LAUNCH_EVENT)
    assert event["detail"]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert (event["detail"]["Origin"], event["detail"]["Destination"]) == (
        "EC2",
        "AutoScalingGroup",
    )

    complete(aws, name, "CONTINUE", InstanceId=first.id)
    complete(aws, name, "ABANDON", InstanceId=second.id)

    assert group_state(aws, name) == {first.id: "InService"}
    assert aws.ec2_state(second.id) == "terminated"


def test_launch_hook_timeout_with_continue_puts_in_service(aws: AwsStack, name: str) -> None:
    [instance] = aws.create_group(
        name,
        size=1,
        terminate_hook=None,
        launch_hook="drain",
        heartbeat_timeout=1,
        default_result="CONTINUE",
    )
    assert aws.lifecycle_state(instance.id) == "Pending:Wait"
    wait_for(lambda: aws.lifecycle_state(instance.id) == "InService", timeout=5)


def test_instances_look_like_ec2(aws: AwsStack, name: str) -> None:
    instances = aws.create_group(name, size=3, spot=True, instance_type="c5.xlarge")

    assert sorted(i.az for i in instances) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    for instance in instances:
        dashed = instance.private_ip.replace(".", "-")
        assert instance.private_dns_name == f"ip-{dashed}.ec2.internal"
        assert instance.private_ip.startswith("10.0.")
    described = aws.boto3_client("ec2").describe_instances(InstanceIds=[instances[0].id])
    raw = described["Reservations"][0]["Instances"][0]
    assert raw["InstanceLifecycle"] == "spot"
    assert raw["InstanceType"] == "c5.xlarge"
    assert {"Key": "aws:autoscaling:groupName", "Value": name} in raw["Tags"]


def test_other_regions_use_compute_internal_names(name: str) -> None:
    with AwsStack(region="eu-central-1") as other:
        [instance] = other.create_group(name, size=1)
        dashed = instance.private_ip.replace(".", "-")
        assert instance.private_dns_name == f"ip-{dashed}.eu-central-1.compute.internal"
        assert instance.az.startswith("eu-central-1")
        other.scale_in(name, instance.id)
        assert other.lifecycle_state(instance.id) == "Terminating:Wait"
