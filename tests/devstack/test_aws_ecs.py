"""ECS and ELBv2 additions to moto: target draining, asynchronous StopTask, the service
scheduler (placement, targets, replacement off DRAINING instances, daemons), attribute lists."""

from __future__ import annotations

import time

import pytest

from devstack.aws import AwsStack, wait_for

from .aws_fixtures import aws_fixture, name_fixture

_FIXTURES = (aws_fixture, name_fixture)


@pytest.fixture(autouse=True)
def quick_ecs(aws: AwsStack) -> None:
    aws.configure_ecs(stop_seconds=0.3, healthy_after_seconds=0.2)


def cluster_of(aws: AwsStack, name: str, size: int = 3) -> tuple[str, list[str]]:
    instances = [i.id for i in aws.create_group(f"{name}-asg", size=size, terminate_hook=None)]
    aws.create_ecs_cluster(name, instances)
    return name, instances


def service_tasks(aws: AwsStack, cluster: str, service: str) -> list[dict]:
    return [t for t in aws.ecs_tasks(cluster) if t["group"] == f"service:{service}"]


def test_deregistered_target_drains_for_the_delay_then_is_gone(aws: AwsStack, name: str) -> None:
    instances = [i.id for i in aws.create_group(f"{name}-asg", size=1, terminate_hook=None)]
    group = aws.create_target_group(f"{name}-tg", deregistration_delay=1, load_balancer=False)
    elbv2 = aws.boto3_client("elbv2")
    targets = [{"Id": instances[0], "Port": 32768}, {"Id": instances[0], "Port": 32769}]
    elbv2.register_targets(TargetGroupArn=group, Targets=targets)
    # Two ports on one instance are two targets (moto keyed them by id alone).
    assert aws.target_health(group) == {
        (instances[0], 32768): "healthy",
        (instances[0], 32769): "healthy",
    }
    started = time.monotonic()
    elbv2.deregister_targets(TargetGroupArn=group, Targets=targets[:1])
    one = elbv2.describe_target_health(TargetGroupArn=group, Targets=targets[:1])
    health = one["TargetHealthDescriptions"][0]["TargetHealth"]
    assert health["State"] == "draining"
    assert health["Reason"] == "Target.DeregistrationInProgress"
    assert aws.target_health(group)[(instances[0], 32769)] == "healthy"
    wait_for(lambda: (instances[0], 32768) not in aws.target_health(group), timeout=3)
    assert time.monotonic() - started >= 0.9
    gone = elbv2.describe_target_health(TargetGroupArn=group, Targets=targets[:1])
    health = gone["TargetHealthDescriptions"][0]["TargetHealth"]
    assert (health["State"], health["Reason"]) == ("unused", "Target.NotRegistered")


def test_stop_task_passes_through_stopping(aws: AwsStack, name: str) -> None:
    cluster, instances = cluster_of(aws, name, size=1)
    definition = aws.register_task_definition(f"{name}-job", container_port=None)
    arn = aws.run_standalone_task(cluster, definition, instance_id=instances[0])
    ecs = aws.boto3_client("ecs")
    described = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    # DescribeTasks no longer moves a task along by itself.
    assert ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
    assert described["lastStatus"] == "RUNNING"
    ecs.stop_task(cluster=cluster, task=arn, reason="test")
    after = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    assert (after["lastStatus"], after["desiredStatus"]) == ("STOPPING", "STOPPED")
    # Listed under desiredStatus=STOPPED while still STOPPING, not under RUNNING.
    assert arn in ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
    assert arn not in ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    wait_for(
        lambda: (
            ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "STOPPED"
        ),
        timeout=3,
    )


def test_service_tasks_are_placed_spread_and_registered(aws: AwsStack, name: str) -> None:
    cluster, instances = cluster_of(aws, name)
    group = aws.create_target_group(f"{name}-tg")
    definition = aws.register_task_definition(f"{name}-web")
    aws.create_service(cluster, "web", definition, desired_count=3, target_group=group)
    tasks = service_tasks(aws, cluster, "web")
    assert len(tasks) == 3
    assert {t["lastStatus"] for t in tasks} == {"RUNNING"}
    assert len({t["containerInstanceArn"] for t in tasks}) == 3  # one per instance
    bindings = [b for t in tasks for c in t["containers"] for b in c.get("networkBindings", [])]
    assert all(b["containerPort"] == 80 and b["hostPort"] >= 32768 for b in bindings)
    health = aws.target_health(group)
    assert len(health) == 3 and set(health.values()) == {"healthy"}
    assert {i for i, _ in health} == set(instances)
    listed = aws.boto3_client("ecs").list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    assert sorted(listed) == sorted(t["taskArn"] for t in tasks)


def test_tasks_on_a_draining_instance_are_replaced_then_drained(aws: AwsStack, name: str) -> None:
    cluster, instances = cluster_of(aws, name)
    group = aws.create_target_group(f"{name}-tg", deregistration_delay=1)
    definition = aws.register_task_definition(f"{name}-web")
    aws.create_service(cluster, "web", definition, desired_count=3, target_group=group)
    draining = aws.container_instance_arn(cluster, instances[0])
    old = [t for t in service_tasks(aws, cluster, "web") if t["containerInstanceArn"] == draining]
    assert len(old) == 1
    aws.boto3_client("ecs").update_container_instances_state(
        cluster=cluster, containerInstances=[draining], status="DRAINING"
    )

    def old_task() -> dict:
        return next(t for t in aws.ecs_tasks(cluster) if t["taskArn"] == old[0]["taskArn"])

    # The replacement runs elsewhere; the old task's target drains before it stops.
    wait_for(lambda: old_task()["desiredStatus"] == "STOPPED", timeout=3)
    assert old_task()["lastStatus"] == "DEACTIVATING"
    assert "draining" in aws.target_health(group).values()
    wait_for(lambda: old_task()["lastStatus"] == "STOPPED", timeout=5)
    live = [t for t in service_tasks(aws, cluster, "web") if t["desiredStatus"] == "RUNNING"]
    assert len(live) == 3 and draining not in {t["containerInstanceArn"] for t in live}
    assert {i for i, _ in aws.target_health(group)} == set(instances[1:])


def test_daemon_tasks_leave_a_draining_instance_last(aws: AwsStack, name: str) -> None:
    cluster, instances = cluster_of(aws, name, size=2)
    agent = aws.register_task_definition(f"{name}-agent", container_port=None)
    aws.create_service(cluster, "agent", agent, daemon=True)
    assert len(service_tasks(aws, cluster, "agent")) == 2
    job_definition = aws.register_task_definition(f"{name}-job", container_port=None)
    job = aws.run_standalone_task(cluster, job_definition, instance_id=instances[0])
    arn = aws.container_instance_arn(cluster, instances[0])
    ecs = aws.boto3_client("ecs")
    ecs.update_container_instances_state(
        cluster=cluster, containerInstances=[arn], status="DRAINING"
    )
    aws.ecs_tick()
    on_it = [
        t for t in aws.ecs_tasks(cluster, instance_id=instances[0]) if t["group"] != "service:agent"
    ]
    assert [t["taskArn"] for t in on_it] == [job]
    daemon = [t for t in service_tasks(aws, cluster, "agent") if t["containerInstanceArn"] == arn]
    assert daemon[0]["desiredStatus"] == "RUNNING"  # the job is still there
    ecs.stop_task(cluster=cluster, task=job)
    wait_for(
        lambda: all(
            t["lastStatus"] == "STOPPED" for t in aws.ecs_tasks(cluster, instance_id=instances[0])
        ),
        timeout=5,
    )


def test_list_attributes_by_name_and_by_value(aws: AwsStack, name: str) -> None:
    cluster, instances = cluster_of(aws, name, size=2)
    ecs = aws.boto3_client("ecs")
    arns = [aws.container_instance_arn(cluster, i) for i in instances]
    ecs.put_attributes(
        cluster=cluster,
        attributes=[
            {"name": "lifecycled.io/drain", "value": "open", "targetId": arns[0]},
            {"name": "lifecycled.io/drain", "value": "done", "targetId": arns[1]},
        ],
    )

    def listed(**filters: str) -> list[str]:
        reply = ecs.list_attributes(cluster=cluster, targetType="container-instance", **filters)
        return sorted(a["targetId"] for a in reply["attributes"])

    assert listed(attributeName="lifecycled.io/drain") == sorted(arns)
    assert listed(attributeName="lifecycled.io/drain", attributeValue="open") == [arns[0]]
