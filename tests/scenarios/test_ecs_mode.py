"""ECS mode end to end: the real service (LIFECYCLED_PLATFORM=ecs) against the embedded stack.
No Kubernetes here: notices arrive through EventBridge -> SQS, the platform is ECS."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.aws import AwsStack, RecordedCall
from lifecycled.app import running
from lifecycled.jobs import REQUEUE_ANNOTATION
from lifecycled.platforms.ecs.codec import requeue_from_tag
from lifecycled.settings import Settings
from tests.platforms.test_iam_ecs import AUTHORIZED_AS, NEEDS_NO_GRANT, policy_actions
from tests.scenarios.conftest import eventually, metric

SPOT = "spot_interruption"
HOOK = "lifecycle_terminate"
_names = itertools.count()


@dataclass
class EcsStack:
    aws: AwsStack
    queue: Any
    group: str
    cluster: str
    instances: list[str]
    target_group: str

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "platform": "ecs",
            "queue_url": self.queue.url,
            "metrics_address": "127.0.0.1:0",
            "sqs_wait_seconds": 1,
            "drain_poll_seconds": 0.2,
            "ecs_target_poll_seconds": 0.2,
            "retry_delays": (0.1, 0.2, 0.5),
            "shutdown_grace_seconds": 2,
            "ecs_clusters": frozenset({self.cluster}),
        }
        values.update(overrides)
        return Settings(**values)

    def tasks_on(self, instance: str) -> list[dict[str, Any]]:
        return self.aws.ecs_tasks(self.cluster, instance_id=instance)

    def calls(self, action: str) -> list[RecordedCall]:
        return [c for c in self.aws.calls.of(action) if _about(c, self)]


def _about(call: RecordedCall, stack: EcsStack) -> bool:
    cluster = call.params.get("cluster")
    group = call.params.get("TargetGroupArn") or call.params.get("AutoScalingGroupName")
    return cluster == stack.cluster or group in (stack.target_group, stack.group)


@pytest.fixture
def ecs_stack(aws_env: AwsStack) -> EcsStack:
    aws = aws_env
    aws.configure_ecs(stop_seconds=0.3, healthy_after_seconds=0.3)
    n = next(_names)
    queue = aws.create_queue(f"ecs-notices-{n}", dlq=True, max_receive_count=2)
    aws.route_events_to(queue)
    group = f"ecs-workers-{n}"
    instances = [i.id for i in aws.create_group(group, size=4, heartbeat_timeout=60)]
    cluster = f"ecs-{n}"
    aws.create_ecs_cluster(cluster, instances)
    target_group = aws.create_target_group(f"ecs-web-{n}", deregistration_delay=1)
    web = aws.register_task_definition(f"web-{n}", stop_timeout=2)
    aws.create_service(cluster, "web", web, desired_count=8, target_group=target_group)
    agent = aws.register_task_definition(f"agent-{n}", container_port=None)
    aws.create_service(cluster, "agent", agent, daemon=True)
    return EcsStack(aws, queue, group, cluster, instances, target_group)


def assert_calls_allowed(aws: AwsStack, since: float) -> None:
    """Every call the service made is granted by docs/iam-ecs.json."""
    granted = policy_actions()
    made = {
        f"{c.service}:{AUTHORIZED_AS.get(c.action, c.action)}"
        for c in aws.calls.snapshot()
        if c.time >= since and not c.from_devstack
    }
    assert made and made - granted - NEEDS_NO_GRANT == set()


def web_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t["group"] == "service:web"]


def host_port(task: dict[str, Any]) -> int:
    return int(task["containers"][0]["networkBindings"][0]["hostPort"])


def drained(service: Any, kind: str) -> Any:
    async def check() -> bool:
        closed = "lifecycled_drain_duration_seconds_count"
        return metric(service, closed, kind=kind, outcome="drained") == 1

    return check


async def test_spot_warning_deregisters_targets_before_each_stop(ecs_stack: EcsStack) -> None:
    s = ecs_stack
    s.aws.configure_ecs(healthy_after_seconds=60)  # ECS's own replacement is slower than us
    victim = s.instances[0]
    on_it = web_tasks(s.tasks_on(victim))
    assert len(on_it) == 2
    targets = {t["taskArn"]: (victim, host_port(t)) for t in on_it}
    since = time.monotonic()
    async with running(s.settings()) as service:
        s.aws.send_spot_interruption(victim)
        await eventually(drained(service, SPOT), within=20)

    deregistered: dict[tuple[str, int], float] = {}
    for call in s.calls("DeregisterTargets"):
        i = 1
        while f"Targets.member.{i}.Id" in call.params:
            key = (
                call.params[f"Targets.member.{i}.Id"],
                int(call.params[f"Targets.member.{i}.Port"]),
            )
            deregistered.setdefault(key, call.time)
            i += 1
    assert set(targets.values()) <= set(deregistered)  # every target of its service tasks
    stops = {c.params["task"]: c.time for c in s.calls("StopTask")}
    assert set(targets) <= set(stops)
    for task, target in targets.items():
        # The group's deregistration delay is 1 s: the target left it 1 s after
        # DeregisterTargets, and only then was its task stopped.
        assert stops[task] >= deregistered[target] + 1.0
    assert set(s.aws.target_health(s.target_group)).isdisjoint(targets.values())
    info = s.aws.container_instance(s.cluster, victim)
    assert info["status"] == "DRAINING"
    assert info["attributeMap"]["lifecycled.io/drain"] == "done"
    left = [t for t in s.tasks_on(victim) if t["lastStatus"] != "STOPPED"]
    assert [t["group"] for t in left] in ([], ["service:agent"])  # the daemon may stay
    assert metric(service, "lifecycled_targets_deregistered_total") == 2
    assert_calls_allowed(s.aws, since)


async def test_standalone_non_idempotent_task_is_requeued_once(ecs_stack: EcsStack) -> None:
    s = ecs_stack
    victim = s.instances[1]
    job = s.aws.register_task_definition(f"{s.cluster}-report", container_port=None)
    original = s.aws.run_standalone_task(
        s.cluster, job, instance_id=victim, started_by="scheduler", group="reports"
    )
    async with running(s.settings()) as service:
        s.aws.send_spot_interruption(victim)
        s.aws.send_spot_interruption(victim)  # a second warning for the same machine
        await eventually(drained(service, SPOT), within=20)

        async def copy_runs() -> bool:
            return len(copies()) == 1

        def copies() -> list[dict[str, Any]]:
            return [
                t
                for t in s.aws.ecs_tasks(s.cluster)
                if t["group"] == "reports" and t["taskArn"] != original
            ]

        await eventually(copy_runs, within=10)
        assert metric(service, "lifecycled_jobs_requeued_total", reason=SPOT) == 1
    assert len(s.calls("RunTask")) == 1
    copy = copies()[0]
    assert copy["startedBy"] == "scheduler" and copy["containerInstanceArn"] != original
    assert copy["lastStatus"] == "RUNNING"
    tags = {t["key"]: t["value"] for t in copy["tags"]}
    assert tags["lifecycled.io/attempt"] == "1" and tags["lifecycled.io/reason"] == SPOT
    first = next(t for t in s.aws.ecs_tasks(s.cluster) if t["taskArn"] == original)
    record = requeue_from_tag({t["key"]: t["value"] for t in first["tags"]}[REQUEUE_ANNOTATION])
    assert record.done and first["desiredStatus"] == "STOPPED"


async def test_terminate_hook_completes_after_the_last_non_daemon_task(
    ecs_stack: EcsStack,
) -> None:
    s = ecs_stack
    victim = s.instances[2]
    job = s.aws.register_task_definition(f"{s.cluster}-etl", container_port=None)
    etl = s.aws.run_standalone_task(s.cluster, job, instance_id=victim)
    since = time.monotonic()
    async with running(s.settings()):
        s.aws.scale_in(s.group, victim)

        async def services_moved() -> bool:
            return all(t["lastStatus"] == "STOPPED" for t in web_tasks(s.tasks_on(victim)))

        await eventually(services_moved, within=15)
        # The job (long deadline: wait for it) and the daemon still run; the hook is held.
        assert s.aws.lifecycle_state(victim) == "Terminating:Wait"
        assert s.calls("CompleteLifecycleAction") == []
        s.aws.boto3_client("ecs").stop_task(cluster=s.cluster, task=etl, reason="job finished")

        async def terminated() -> bool:
            return s.aws.lifecycle_state(victim) is None

        await eventually(terminated, within=15)
    finished = s.aws.calls.of("StopTask", include_devstack=True)[-1].time
    completes = s.calls("CompleteLifecycleAction")
    assert len(completes) == 1 and completes[0].params["LifecycleActionResult"] == "CONTINUE"
    assert completes[0].time >= finished + 0.3  # after the job's STOPPING, once STOPPED
    assert s.calls("StopTask") == []  # lifecycled stopped nothing: ECS moved the services
    assert_calls_allowed(s.aws, since)


async def test_restart_mid_drain_resumes_it(ecs_stack: EcsStack) -> None:
    s = ecs_stack
    victim = s.instances[3]
    job = s.aws.register_task_definition(f"{s.cluster}-train", container_port=None)
    train = s.aws.run_standalone_task(s.cluster, job, instance_id=victim)
    async with running(s.settings()) as first:
        s.aws.scale_in(s.group, victim)

        async def opened() -> bool:
            return first.coordinator is not None and first.coordinator.open_drains == 1

        await eventually(opened, within=10)
    assert s.aws.container_instance(s.cluster, victim)["attributeMap"]["lifecycled.io/drain"] == (
        "open"
    )
    assert s.aws.lifecycle_state(victim) == "Terminating:Wait"
    async with running(s.settings()) as second:
        assert second.coordinator is not None and second.coordinator.open_drains == 1
        s.aws.boto3_client("ecs").stop_task(cluster=s.cluster, task=train, reason="done")
        await eventually(drained(second, HOOK), within=15)

        async def terminated() -> bool:
            return s.aws.lifecycle_state(victim) is None

        await eventually(terminated, within=10)
    assert len(s.calls("CompleteLifecycleAction")) == 1


async def test_dry_run_changes_nothing_on_ecs(ecs_stack: EcsStack) -> None:
    s = ecs_stack
    spot, scaled = s.instances[0], s.instances[1]
    tasks_before = {i: sorted(t["taskArn"] for t in s.tasks_on(i)) for i in (spot, scaled)}
    since = time.monotonic()
    async with running(s.settings(dry_run=True)) as service:
        s.aws.send_spot_interruption(spot)
        s.aws.scale_in(s.group, scaled)

        async def decided() -> bool:
            would = "lifecycled_dry_run_actions_total"
            return (
                metric(service, would, kind=SPOT, action="drain") == 1
                and metric(service, would, kind=HOOK, action="drain") == 1
            )

        await eventually(decided, within=20)
    changes = [
        f"{c.service}:{c.action}"
        for c in s.aws.calls.snapshot()
        if c.time >= since
        and not c.from_devstack
        and not c.action.startswith(("Describe", "List", "Get"))
        and c.action
        not in ("ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility")
        and c.action != "GetCallerIdentity"
    ]
    assert changes == []
    assert s.aws.lifecycle_state(scaled) == "Terminating:Wait"  # left to its default result
    for instance in (spot, scaled):
        assert s.aws.container_instance(s.cluster, instance)["status"] == "ACTIVE"
        assert sorted(t["taskArn"] for t in s.tasks_on(instance)) == tasks_before[instance]
