"""EcsPlatform on moto: resolve, the record in attributes, vacate's order and decisions,
requeue exactly once."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

import pytest

from devstack.aws import AwsStack
from lifecycled.jobs import IDEMPOTENT_ANNOTATION, REQUEUE_ANNOTATION
from lifecycled.model import InstanceId, NoticeKind
from lifecycled.platforms.ecs import split_target
from lifecycled.platforms.ecs.codec import (
    record_attributes,
    record_from_attributes,
    requeue_from_tag,
)
from lifecycled.platforms.ecs.tasks import NAME_TAG
from lifecycled.record import HookRef, Outcome, Phase

from .conftest import FakeDrain, record_for

ALLOWED = set(string.ascii_letters + string.digits + "-_.@/\\: ")


def cluster_of(aws: AwsStack, name: str, size: int = 3) -> list[str]:
    instances = [i.id for i in aws.create_group(f"{name}-asg", size=size, terminate_hook=None)]
    aws.create_ecs_cluster(name, instances)
    return instances


def test_record_round_trips_through_attributes_within_ecs_limits() -> None:
    hook = HookRef(name="drain/hook", group="web workers ü:1", token="a" * 36)
    record = record_for("i-0123456789abcdef0", hook=hook, kind=NoticeKind.LIFECYCLE_TERMINATE)
    values = record_attributes(record)
    assert values["lifecycled.io/drain"] == "open"
    assert len(values) <= 9  # ECS allows 10 custom attributes
    for value in values.values():
        assert 1 <= len(value) <= 128 and set(value) <= ALLOWED
        assert value == value.strip()
    assert record_from_attributes(values) == record
    closed = record.closed(Outcome.DRAINED)
    assert record_from_attributes(record_attributes(closed)) == closed


def test_stale_parts_of_a_longer_record_are_ignored() -> None:
    long = record_for("i-0123456789abcdef0", hook=HookRef("h", "g" * 200, "t" * 36))
    short = record_for("i-0123456789abcdef0")
    mixed = record_attributes(long) | record_attributes(short)
    assert len(record_attributes(long)) > len(record_attributes(short))
    assert record_from_attributes(mixed) == short


async def test_resolve_finds_the_container_instance(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=2)
    p = await make_platform(ecs_clusters=frozenset({name}))
    target = await p.platform.resolve(InstanceId(instances[1]))
    assert target is not None
    cluster, arn = split_target(target)
    assert cluster == name and arn == aws.container_instance_arn(name, instances[1])
    assert await p.platform.resolve(InstanceId("i-00000000000000000")) is None


async def test_resolve_discovers_clusters_when_none_are_configured(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=1)
    p = await make_platform()
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target is not None and split_target(target)[0].endswith(f"cluster/{name}")


async def test_record_is_written_then_draining_and_found_again(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=2)
    p = await make_platform(ecs_clusters=frozenset({name}))
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target
    record = record_for(instances[0], hook=HookRef("drain", f"{name}-asg", "x" * 36))
    await p.platform.write_record(target, record, cordon=True)
    info = aws.container_instance(name, instances[0])
    assert info["status"] == "DRAINING"
    assert info["attributeMap"]["lifecycled.io/drain"] == "open"
    assert aws.container_instance(name, instances[1])["status"] == "ACTIVE"
    assert await p.platform.open_records() == [(target, record)]
    assert await p.platform.ready(target) is False
    await p.platform.write_record(target, record.closed(Outcome.DRAINED), cordon=False)
    assert await p.platform.open_records() == []
    await p.platform.uncordon(target, record.closed(Outcome.SUPERSEDED))
    assert aws.container_instance(name, instances[0])["status"] == "ACTIVE"
    assert await p.platform.ready(target) is True
    calls = [c.action for c in aws.calls.snapshot() if not c.from_devstack]
    assert calls.index("PutAttributes") < calls.index("UpdateContainerInstancesState")


async def test_short_deadline_deregisters_each_target_before_stopping_its_task(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name)
    group = aws.create_target_group(f"{name}-tg", deregistration_delay=1)
    web = aws.register_task_definition(f"{name}-web", stop_timeout=2)
    aws.create_service(name, "web", web, desired_count=6, target_group=group)
    agent = aws.register_task_definition(f"{name}-agent", container_port=None)
    aws.create_service(name, "agent", agent, daemon=True)
    p = await make_platform(ecs_clusters=frozenset({name}))
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target
    record = record_for(instances[0], seconds=60)
    await p.platform.write_record(target, record, cordon=True)
    on_it = {
        t["taskArn"] for t in aws.ecs_tasks(name, instance_id=instances[0]) if "web" in t["group"]
    }
    assert len(on_it) == 2
    aws.calls.clear()

    assert await p.platform.vacate(target, FakeDrain(record)) is True

    calls = [c for c in aws.calls.snapshot() if not c.from_devstack]
    stops = [c for c in calls if c.action == "StopTask"]
    assert {c.params["task"] for c in stops} == on_it  # the daemon task stays
    deregisters = [c for c in calls if c.action == "DeregisterTargets"]
    assert len(deregisters) == 2
    for stop in stops:
        # Its target was reported unused before StopTask, after its deregistration.
        gone = [
            c
            for c in calls
            if c.action == "DescribeTargetHealth" and c.time < stop.time and c.status == 200
        ]
        assert any(d.time < stop.time for d in deregisters) and gone
    assert aws.container_instance(name, instances[0])["status"] == "DRAINING"
    left = [t for t in aws.ecs_tasks(name, instance_id=instances[0]) if "web" in t["group"]]
    assert {t["lastStatus"] for t in left} == {"STOPPED"}
    assert p.metrics.registry.get_sample_value("lifecycled_targets_deregistered_total") == 2
    assert (
        p.metrics.registry.get_sample_value("lifecycled_tasks_stopped_total", {"reason": "service"})
        == 2
    )
    stats = p.metrics.registry.get_sample_value(
        "lifecycled_target_drain_wait_seconds_sum", {"outcome": "left"}
    )
    assert stats is not None and stats >= 0.9  # the deregistration delay was honoured


async def test_target_wait_is_cut_short_so_the_stop_timeout_fits(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=2)
    group = aws.create_target_group(f"{name}-tg", deregistration_delay=300)
    web = aws.register_task_definition(f"{name}-web", stop_timeout=3)
    aws.create_service(name, "web", web, desired_count=2, target_group=group)
    p = await make_platform(ecs_clusters=frozenset({name}))
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target
    # cutoff = now + 5 - 1; the task needs 3 s after StopTask: stop within about 1 s.
    record = record_for(instances[0], seconds=5)
    await p.platform.write_record(target, record, cordon=True)
    started = datetime.now(UTC)
    assert await p.platform.vacate(target, FakeDrain(record)) is True
    stop = aws.calls.of("StopTask")[-1]
    deregister = aws.calls.of("DeregisterTargets")[-1]
    assert 0.7 <= stop.time - deregister.time <= 2.0
    assert datetime.now(UTC) - started < timedelta(seconds=5)
    assert (
        p.metrics.registry.get_sample_value(
            "lifecycled_target_drain_wait_seconds_count", {"outcome": "cut_short"}
        )
        == 1
    )


async def test_non_idempotent_job_is_requeued_once_elsewhere(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=2)
    job = aws.register_task_definition(f"{name}-job", container_port=None)
    original = aws.run_standalone_task(
        name,
        job,
        instance_id=instances[0],
        started_by="dispatcher",
        group="batch:nightly",
        tags={"team": "data"},
        overrides={"containerOverrides": [{"name": f"{name}-job", "command": ["run", "42"]}]},
    )
    p = await make_platform(ecs_clusters=frozenset({name}))
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target
    record = record_for(instances[0], seconds=60)
    await p.platform.write_record(target, record, cordon=True)
    assert await p.platform.vacate(target, FakeDrain(record)) is True

    tasks = {t["taskArn"]: t for t in aws.ecs_tasks(name)}
    tags = {t["key"]: t["value"] for t in tasks[original]["tags"]}
    requeue = requeue_from_tag(tags[REQUEUE_ANNOTATION])
    assert requeue.done and requeue.attempt == 1 and requeue.reason == "spot_interruption"
    copies = [t for t in tasks.values() if t["taskArn"] != original]
    assert len(copies) == 1
    copy = copies[0]
    copy_tags = {t["key"]: t["value"] for t in copy["tags"]}
    assert copy_tags[NAME_TAG] == requeue.copy
    assert copy_tags["lifecycled.io/requeue-of"] == original.rsplit("/", 1)[-1]
    assert copy_tags["lifecycled.io/attempt"] == "1"
    assert copy_tags["lifecycled.io/reason"] == "spot_interruption"
    assert copy_tags["team"] == "data"
    assert (copy["startedBy"], copy["group"]) == ("dispatcher", "batch:nightly")
    assert copy["overrides"]["containerOverrides"][0]["command"] == ["run", "42"]
    assert copy["containerInstanceArn"] != tasks[original]["containerInstanceArn"]
    run = aws.calls.of("RunTask")[-1]
    assert run.params["placementConstraints"] == [
        {"type": "memberOf", "expression": f"attribute:ecs.instance-id != {instances[0]}"}
    ]
    assert run.params["clientToken"] == requeue.copy
    assert aws.calls.of("TagResource")[0].time < run.time < aws.calls.of("StopTask")[-1].time

    # A duplicated requeue (a retry, a second drain) finds the record and runs nothing.
    runs = len(aws.calls.of("RunTask"))
    fresh = (await p.aws_clients.ecs.describe_tasks(name, [original]))[0]
    await p.platform._jobs.requeue(name, fresh, instances[0], "spot_interruption")
    assert len(aws.calls.of("RunTask")) == runs
    assert (
        p.metrics.registry.get_sample_value(
            "lifecycled_jobs_requeued_total", {"reason": "spot_interruption"}
        )
        == 1
    )


async def test_a_requeue_interrupted_after_its_record_runs_one_copy(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=2)
    job = aws.register_task_definition(f"{name}-job", container_port=None)
    original = aws.run_standalone_task(name, job, instance_id=instances[0], started_by="d")
    p = await make_platform(ecs_clusters=frozenset({name}))
    task = (await p.aws_clients.ecs.describe_tasks(name, [original]))[0]
    # First try: the record is written, then RunTask runs, then the process dies.
    jobs = p.platform._jobs
    real_tag = p.aws_clients.ecs.tag_resource
    writes = 0

    async def crash_on_second_tag(arn: str, tags: dict[str, str]) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise RuntimeError("crashed before marking the record done")
        await real_tag(arn, tags)

    p.aws_clients.ecs.tag_resource = crash_on_second_tag  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await jobs.requeue(name, task, instances[0], "spot_interruption")
    p.aws_clients.ecs.tag_resource = real_tag  # type: ignore[method-assign]
    # The retry sees the open record and the copy, and runs no second one.
    task = (await p.aws_clients.ecs.describe_tasks(name, [original]))[0]
    assert not requeue_from_tag(task.tags[REQUEUE_ANNOTATION]).done
    await jobs.requeue(name, task, instances[0], "spot_interruption")
    copies = [t for t in aws.ecs_tasks(name) if t["taskArn"] != original]
    assert len(copies) == 1 and len(aws.calls.of("RunTask")) >= 1


async def test_idempotent_jobs_are_stopped_and_the_limit_is_kept(
    aws: AwsStack, name: str, make_platform
) -> None:
    instances = cluster_of(aws, name, size=2)
    safe = aws.register_task_definition(
        f"{name}-safe", container_port=None, tags={IDEMPOTENT_ANNOTATION: "true"}
    )
    risky = aws.register_task_definition(f"{name}-risky", container_port=None)
    stopped_only = aws.run_standalone_task(name, safe, instance_id=instances[0])
    worn_out = aws.run_standalone_task(
        name, risky, instance_id=instances[0], tags={"lifecycled.io/attempt": "2"}
    )
    p = await make_platform(ecs_clusters=frozenset({name}), requeue_max_attempts=2)
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target
    record = record_for(instances[0], seconds=60)
    await p.platform.write_record(target, record, cordon=True)
    assert await p.platform.vacate(target, FakeDrain(record)) is True
    assert aws.calls.of("RunTask") == []  # neither is re-run
    stopped = {c.params["task"] for c in aws.calls.of("StopTask")}
    assert {stopped_only, worn_out} <= stopped
    value = p.metrics.registry.get_sample_value
    assert value("lifecycled_tasks_stopped_total", {"reason": "job"}) == 1
    assert value("lifecycled_tasks_stopped_total", {"reason": "limit"}) == 1
    assert value("lifecycled_requeue_limit_reached_total") == 1


async def test_long_deadline_waits_for_jobs_and_lets_ecs_move_services(
    aws: AwsStack, name: str, make_platform
) -> None:
    aws.configure_ecs(healthy_after_seconds=0.1)
    instances = cluster_of(aws, name, size=2)
    group = aws.create_target_group(f"{name}-tg", deregistration_delay=1)
    web = aws.register_task_definition(f"{name}-web")
    aws.create_service(name, "web", web, desired_count=2, target_group=group)
    job = aws.register_task_definition(f"{name}-job", container_port=None)
    running = aws.run_standalone_task(name, job, instance_id=instances[0])
    p = await make_platform(ecs_clusters=frozenset({name}), job_stop_lead_seconds=600)
    target = await p.platform.resolve(InstanceId(instances[0]))
    assert target
    record = record_for(instances[0], seconds=3600)
    await p.platform.write_record(target, record, cordon=True)
    drain = FakeDrain(record, margin=3600 - 3)  # the cutoff comes in 3 s, the deadline does not
    assert await p.platform.vacate(target, drain) is False
    assert aws.calls.of("StopTask") == [] and aws.calls.of("DeregisterTargets") == []
    # ECS itself moved the service task off (DRAINING); the job still runs.
    on_it = {t["taskArn"]: t["lastStatus"] for t in aws.ecs_tasks(name, instance_id=instances[0])}
    assert on_it.pop(running) == "RUNNING"
    assert set(on_it.values()) == {"STOPPED"}
    assert record.phase is Phase.OPEN
