"""Later notices change open drains; launch hooks wait for the node.

- a Spot warning after a rebalance recommendation tightens the same drain's deadline;
- the machine going while its drain is open is a forced termination, recorded as such;
- a launch hook is completed CONTINUE once the node is Ready, ABANDON when it never is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubernetes_asyncio import client

from devstack.cluster import Machine, node_body
from lifecycled.record import RECORD_ANNOTATION
from tests.scenarios.conftest import Stack, eventually, metric
from tests.scenarios.test_jobs import instance_on, job_manifest, jobs_named, start_job

REBALANCE = "rebalance_recommendation"


async def record_on(stack: Stack, node: str) -> dict[str, Any]:
    found = await client.CoreV1Api(stack.api).read_node(node)
    text = (found.metadata.annotations or {}).get(RECORD_ANNOTATION)
    return dict(json.loads(text)) if text else {}


async def test_a_spot_warning_after_a_rebalance_tightens_the_same_drain(
    stack: Stack, service_for
) -> None:
    _, node = await start_job(stack, job_manifest("etl", idempotent=False, run_seconds=None))
    instance = instance_on(stack, node)
    async with service_for(rebalance_action="drain") as service:
        stack.aws.send_rebalance_recommendation(instance)

        async def waiting_for_the_job() -> bool:
            return (await record_on(stack, node)).get("kind") == REBALANCE

        await eventually(waiting_for_the_job, within=15)
        await asyncio.sleep(1.5)  # several drain polls: a far deadline waits for the job
        assert len(await jobs_named(stack, "etl")) == 1
        assert metric(service, "lifecycled_drains_in_progress") == 1

        stack.aws.send_spot_interruption(instance)

        async def drained() -> bool:
            closed = metric(
                service,
                "lifecycled_drain_duration_seconds_count",
                kind=REBALANCE,
                outcome="drained",
            )
            return closed == 1

        await eventually(drained, within=30)
        record = await record_on(stack, node)
        # One drain: opened by the rebalance, its deadline tightened to the Spot warning's.
        assert record["kind"] == REBALANCE
        assert (
            metric(service, "lifecycled_drain_duration_seconds_count", kind="spot_interruption")
            == 0
        )
        copies = [j.metadata.name for j in await jobs_named(stack, "etl-requeue-")]
        assert copies == ["etl-requeue-1"]
        assert metric(service, "lifecycled_jobs_requeued_total", reason=REBALANCE) == 1


async def test_the_machine_going_mid_drain_is_a_forced_termination(
    stack: Stack, service_for
) -> None:
    # A scale-in waits for this job, so the drain is still open when EC2 takes the machine.
    _, node = await start_job(stack, job_manifest("longrun", idempotent=False, run_seconds=None))
    instance = instance_on(stack, node)
    async with service_for() as service:
        stack.aws.scale_in(stack.group, instance)

        async def holding() -> bool:
            return metric(service, "lifecycled_drains_in_progress") == 1

        await eventually(holding, within=15)
        stack.aws.force_terminate(instance)

        async def forced() -> bool:
            kind = "lifecycle_terminate"
            return metric(service, "lifecycled_forced_terminations_total", kind=kind) == 1

        await eventually(forced, within=15)

        async def recorded() -> bool:  # counted first, then written to the node
            return (await record_on(stack, node)).get("outcome") == "forced_termination"

        await eventually(recorded, within=10)
        assert metric(service, "lifecycled_drains_in_progress") == 0
        assert metric(service, "lifecycled_lifecycle_actions_total", result="CONTINUE") == 0


async def test_a_launch_hook_is_completed_once_the_node_is_ready(stack: Stack, service_for) -> None:
    group = stack.group + "-launch"
    async with service_for() as service:
        [fresh] = stack.aws.create_group(group, size=1, terminate_hook=None, launch_hook="boot")
        assert stack.aws.lifecycle_state(fresh.id) == "Pending:Wait"
        await asyncio.sleep(1.0)  # the notice is in; no node yet, so the hook stays held
        assert stack.aws.lifecycle_state(fresh.id) == "Pending:Wait"
        machine = Machine(fresh.id, fresh.private_dns_name, fresh.az)
        await client.CoreV1Api(stack.api).create_node(node_body(machine))

        async def continued() -> bool:
            return metric(service, "lifecycled_launch_hooks_total", result="CONTINUE") == 1

        await eventually(continued, within=15)
        assert stack.aws.lifecycle_state(fresh.id) == "InService"


async def test_a_launch_whose_node_never_comes_is_abandoned(stack: Stack, service_for) -> None:
    group = stack.group + "-orphan"
    async with service_for(launch_ready_timeout_seconds=2) as service:
        [fresh] = stack.aws.create_group(group, size=1, terminate_hook=None, launch_hook="boot")

        async def abandoned() -> bool:
            return metric(service, "lifecycled_launch_hooks_total", result="ABANDON") == 1

        await eventually(abandoned, within=20)
        assert stack.aws.lifecycle_state(fresh.id) != "InService"
        assert metric(service, "lifecycled_launch_hooks_total", result="CONTINUE") == 0
