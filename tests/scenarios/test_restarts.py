"""Kill the service at every step boundary, start it again: the end state must be the same as
an uninterrupted run (hook completed once, job requeued once, nothing else drained).
Two replicas with leader election: never both act."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from kubernetes_asyncio import client

from lifecycled.app import Service, running
from lifecycled.record import RECORD_ANNOTATION
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on
from tests.scenarios.test_jobs import instance_on, job_manifest, jobs_named, start_job


class Crash(BaseException):
    """Raised from inside the service at a chosen log line: nothing after it runs."""


class CrashAt(logging.Handler):
    def __init__(self, event: str) -> None:
        super().__init__(logging.INFO)
        self.event = event
        self.fired = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and record.getMessage() == self.event:
            self.fired = True
            raise Crash(self.event)


# Short leases, so a standby takes over within seconds.
HA = {
    "leader_election": True,
    "lease_duration_seconds": 3,
    "lease_renew_seconds": 2,
    "lease_retry_seconds": 1,
}

BOUNDARIES = [
    "notice received",
    "node cordoned",
    "requeue recorded",
    "requeue copy created",
    "job requeued",
    "pod evicted",
    "lifecycle action completed",
    "drain finished",
]


async def crash_at(boundary: str, stack: Stack, service: Service, act) -> None:
    handler = CrashAt(boundary)
    logger = logging.getLogger("lifecycled")
    logger.addHandler(handler)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        act()
        with pytest.raises(BaseException) as raised:  # a group, or the crash itself
            await asyncio.wait_for(task, 30)
    finally:
        logger.removeHandler(handler)
    assert handler.fired, f"the service never reached {boundary!r}"
    assert "Crash" in repr(raised.value)


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_kill_and_restart_at_each_step_boundary_converges(
    stack: Stack, boundary: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lifecycled")
    _, node = await start_job(stack, job_manifest("report", idempotent=False, run_seconds=None))
    instance = instance_on(stack, node)
    settings = stack.settings(sqs_visibility_seconds=5)

    def interruption() -> None:
        stack.aws.send_spot_interruption(instance)
        stack.aws.scale_in(stack.group, instance)

    stack.aws.calls.clear()
    await crash_at(boundary, stack, Service(settings), interruption)

    async with running(settings):

        async def released() -> bool:
            return stack.aws.lifecycle_state(instance) is None

        await eventually(released, within=40)

        async def closed() -> bool:
            current = await client.CoreV1Api(stack.api).read_node(node)
            record = json.loads(current.metadata.annotations[RECORD_ANNOTATION])
            return record["phase"] == "done"

        await eventually(closed, within=20)

    completed = [c for c in stack.aws.calls.of("CompleteLifecycleAction") if c.status == 200]
    assert len(completed) == 1
    assert [j.metadata.name for j in await jobs_named(stack, "report-requeue-")] == [
        "report-requeue-1"
    ]
    original = await client.BatchV1Api(stack.api).read_namespaced_job("report", "batch")
    assert original.spec.suspend is True
    assert [owner_kind(p) for p in await pods_on(stack.api, node)] in ([], ["DaemonSet"])
    for other, other_node in stack.node_of.items():
        if other != instance:
            assert not (await client.CoreV1Api(stack.api).read_node(other_node)).spec.unschedulable


async def test_two_replicas_never_both_act(stack: Stack) -> None:
    first = running(stack.settings(identity="replica-a", **HA))
    second = running(stack.settings(identity="replica-b", **HA))
    samples: list[tuple[float, float]] = []
    async with first as a, second as b:

        async def sample() -> None:
            while True:
                samples.append((metric(a, "lifecycled_leader"), metric(b, "lifecycled_leader")))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())

        async def one_leader() -> bool:
            return metric(a, "lifecycled_leader") + metric(b, "lifecycled_leader") == 1

        await eventually(one_leader, within=15)
        leader, standby = (a, b) if metric(a, "lifecycled_leader") == 1 else (b, a)
        stack.aws.send_spot_interruption(stack.machines[0].instance_id)

        async def drained_by_leader() -> bool:
            return (
                metric(
                    leader,
                    "lifecycled_drain_duration_seconds_count",
                    kind="spot_interruption",
                    outcome="drained",
                )
                == 1
            )

        await eventually(drained_by_leader, within=20)
        assert metric(standby, "lifecycled_notices_total", kind="spot_interruption") == 0
        sampler.cancel()
    assert samples and all(x + y <= 1 for x, y in samples)


async def start(settings) -> tuple[Service, asyncio.Event, asyncio.Task[None]]:
    service, stop = Service(settings), asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.wait_for(service.ready.wait(), 10)
    return service, stop, task


async def test_a_new_leader_resumes_the_open_drains(stack: Stack) -> None:
    _, node = await start_job(stack, job_manifest("batchwork", idempotent=False, run_seconds=6))
    instance = instance_on(stack, node)
    replicas = [await start(stack.settings(identity=f"replica-{n}", **HA)) for n in "ab"]
    try:

        async def one_leads() -> bool:
            return sum(metric(r[0], "lifecycled_leader") for r in replicas) == 1

        await eventually(one_leads, within=15)
        leader, standby = sorted(replicas, key=lambda r: -metric(r[0], "lifecycled_leader"))
        stack.aws.scale_in(stack.group, instance)  # a long hold: the job is waited for

        async def holding() -> bool:
            return metric(leader[0], "lifecycled_drains_in_progress") == 1

        await eventually(holding, within=15)
        leader[1].set()  # the leader goes away mid-drain
        await asyncio.wait_for(leader[2], 15)

        async def taken_over() -> bool:
            return metric(standby[0], "lifecycled_leader") == 1

        await eventually(taken_over, within=15)

        async def completed_by_standby() -> bool:
            return metric(standby[0], "lifecycled_lifecycle_actions_total", result="CONTINUE") == 1

        await eventually(completed_by_standby, within=20)
        assert stack.aws.lifecycle_state(instance) is None
        assert metric(leader[0], "lifecycled_lifecycle_actions_total", result="CONTINUE") == 0
        completions = [
            c
            for c in stack.aws.calls.of("CompleteLifecycleAction")
            if c.params.get("InstanceId") == instance
        ]
        assert len(completions) == 1
    finally:
        for _, stop, _task in replicas:
            stop.set()
        await asyncio.gather(*(r[2] for r in replicas), return_exceptions=True)


async def test_a_dry_run_never_takes_the_lease_from_a_live_handler(stack: Stack) -> None:
    # The trial starts first: were it to stand for election, it would hold the Lease and
    # the live handler would wait as a standby while nothing drains.
    async with running(stack.settings(identity="trial", dry_run=True, **HA)) as trial:
        await asyncio.sleep(1.0)
        async with running(stack.settings(identity="live", **HA)) as live:

            async def live_leads() -> bool:
                return metric(live, "lifecycled_leader") == 1

            await eventually(live_leads, within=10)
            assert metric(trial, "lifecycled_leader") == 0
            coordination: Any = client.CoordinationV1Api(stack.api)
            lease = await coordination.read_namespaced_lease("lifecycled", "default")
            assert lease.spec.holder_identity == "live"


async def test_a_notice_that_arrives_as_the_service_stops_is_handed_back_at_once(
    stack: Stack, service_for
) -> None:
    """A long poll still open when the service stops is not abandoned (the queue would go on
    with it and hide what it took for the whole visibility timeout): it ends, and a notice
    it brought is visible again at once for the next consumer."""
    machine = stack.machines[0]
    context = service_for(sqs_wait_seconds=10, queue_receivers=1, sqs_visibility_seconds=60)
    await context.__aenter__()
    await asyncio.sleep(2.0)  # its one long poll is open
    stopping = asyncio.create_task(context.__aexit__(None, None, None))
    await asyncio.sleep(0.2)
    stack.aws.send_spot_interruption(machine.instance_id)  # into the poll still open
    await asyncio.wait_for(stopping, 15)
    sqs = stack.aws.boto3_client("sqs")
    got = sqs.receive_message(
        QueueUrl=stack.queue.url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=2,
        AttributeNames=["ApproximateReceiveCount"],
    )
    ours = [m for m in got.get("Messages", []) if machine.instance_id in m["Body"]]
    assert len(ours) == 1
    # The stopping service's poll took it (the first receive) and handed it back.
    assert ours[0]["Attributes"]["ApproximateReceiveCount"] == "2"
