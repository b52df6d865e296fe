"""Queue mode end to end: a notice goes into SQS (through EventBridge where AWS would send it
that way); what must the cluster, the Auto Scaling group and the metrics show?"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from kubernetes_asyncio import client

from lifecycled.record import DRAINING_TAINT, RECORD_ANNOTATION
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on

SPOT = "spot_interruption"


def evictable(pods: list) -> list:
    return [p for p in pods if owner_kind(p) != "DaemonSet"]


async def test_spot_warning_drains_the_node_within_its_deadline(stack: Stack, service_for) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    assert evictable(await pods_on(stack.api, node)), "the node must have work to drain"

    async with service_for() as service:
        event = stack.aws.send_spot_interruption(machine.instance_id)
        deadline = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) + timedelta(
            seconds=120
        )

        async def node_is_empty() -> bool:
            return not evictable(await pods_on(stack.api, node))

        await eventually(node_is_empty, within=30)
        assert datetime.now(UTC) < deadline

        async def drain_closed() -> bool:
            return (
                metric(
                    service, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained"
                )
                == 1
            )

        await eventually(drain_closed)

        node_obj = await client.CoreV1Api(stack.api).read_node(node)
        assert node_obj.spec.unschedulable is True
        assert any(
            t.key == DRAINING_TAINT and t.effect == "NoSchedule" for t in node_obj.spec.taints
        )
        record = json.loads(node_obj.metadata.annotations[RECORD_ANNOTATION])
        assert record["phase"] == "done" and record["outcome"] == "drained"
        # Each record write after the cordon read the node first: none met a conflict.
        conflicts = [r for r in stack.kube.requests if r.resource == "nodes" and r.status == 409]
        assert conflicts == []
        # DaemonSet pods are left alone.
        remaining = await pods_on(stack.api, node)
        assert [owner_kind(p) for p in remaining] == ["DaemonSet"]
        assert metric(service, "lifecycled_notices_total", kind=SPOT) == 1
        assert metric(service, "lifecycled_notice_to_cordon_seconds_count") == 1
        assert metric(service, "lifecycled_forced_terminations_total", kind=SPOT) == 0
        # Other nodes are untouched.
        other = await client.CoreV1Api(stack.api).read_node(
            stack.node_of[stack.machines[1].instance_id]
        )
        assert not other.spec.unschedulable


async def test_budget_refusals_are_retried_until_the_budget_allows(
    stack: Stack, service_for
) -> None:
    # Drain two nodes at once: the web budget (maxUnavailable 1) refuses some evictions
    # until the replacements are Ready elsewhere.
    targets = stack.machines[:2]
    async with service_for() as service:
        for machine in targets:
            stack.aws.send_spot_interruption(machine.instance_id)

        async def both_drained() -> bool:
            return (
                metric(
                    service, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained"
                )
                == 2
            )

        await eventually(both_drained, within=40)
        assert metric(service, "lifecycled_evictions_total", outcome="blocked_by_budget") > 0
        for machine in targets:
            assert not evictable(await pods_on(stack.api, stack.node_of[machine.instance_id]))
        web = await client.AppsV1Api(stack.api).read_namespaced_deployment("web", "shop")
        assert web.spec.replicas == 6


async def test_terminate_hook_is_completed_only_after_the_pods_are_gone(
    stack: Stack, service_for
) -> None:
    machine = stack.machines[2]
    node = stack.node_of[machine.instance_id]
    emptied_at: list[float] = []

    async with service_for() as service:
        stack.aws.calls.clear()
        stack.aws.scale_in(stack.group, machine.instance_id)
        assert stack.aws.lifecycle_state(machine.instance_id) == "Terminating:Wait"

        async def node_is_empty() -> bool:
            if not evictable(await pods_on(stack.api, node)):
                emptied_at.append(time.monotonic())
                return True
            return False

        await eventually(node_is_empty, within=30, every=0.02)

        async def instance_gone() -> bool:
            return stack.aws.lifecycle_state(machine.instance_id) is None

        await eventually(instance_gone, within=20)

        async def hook_counted() -> bool:
            return metric(service, "lifecycled_lifecycle_actions_total", result="CONTINUE") == 1

        await eventually(hook_counted)
        completes = [c for c in stack.aws.calls if c.action == "CompleteLifecycleAction"]
        assert len(completes) == 1
        assert completes[0].params["LifecycleActionResult"] == "CONTINUE"
        assert completes[0].time >= emptied_at[0] - 0.05
        assert metric(service, "lifecycled_notices_total", kind="lifecycle_terminate") == 1
        assert (
            metric(service, "lifecycled_forced_terminations_total", kind="lifecycle_terminate") == 0
        )


async def test_a_duplicate_notice_is_harmless(stack: Stack, service_for) -> None:
    machine = stack.machines[1]
    sqs = stack.aws.boto3_client("sqs")
    async with service_for() as service:
        event = stack.aws.send_spot_interruption(machine.instance_id)
        sqs.send_message(QueueUrl=stack.queue.url, MessageBody=json.dumps(event))

        async def drained() -> bool:
            return (
                metric(
                    service, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained"
                )
                == 1
            )

        await eventually(drained, within=30)

        async def duplicate_seen() -> bool:
            return metric(service, "lifecycled_duplicate_notices_total", kind=SPOT) == 1

        await eventually(duplicate_seen)
        assert metric(service, "lifecycled_notice_to_cordon_seconds_count") == 1
        assert metric(service, "lifecycled_drains_in_progress") == 0


async def test_a_malformed_message_is_counted_and_the_consumer_goes_on(
    stack: Stack, service_for
) -> None:
    sqs = stack.aws.boto3_client("sqs")
    async with service_for() as service:
        sqs.send_message(QueueUrl=stack.queue.url, MessageBody="{not json")
        sqs.send_message(
            QueueUrl=stack.queue.url,
            MessageBody=json.dumps({"source": "my.app", "detail-type": "x"}),
        )
        machine = stack.machines[3]
        stack.aws.send_spot_interruption(machine.instance_id)

        async def drained() -> bool:
            return (
                metric(
                    service, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained"
                )
                == 1
            )

        await eventually(drained, within=30)

        async def moved_aside() -> bool:
            reply = sqs.get_queue_attributes(
                QueueUrl=stack.queue.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            return int(reply["Attributes"]["ApproximateNumberOfMessages"]) == 2

        await eventually(moved_aside, within=20)
        assert metric(service, "lifecycled_rejected_messages_total", reason="not_json") >= 1
        assert metric(service, "lifecycled_rejected_messages_total", reason="foreign_source") >= 1
        # Nothing but the named instance was touched.
        for other in stack.machines[:3]:
            node = await client.CoreV1Api(stack.api).read_node(stack.node_of[other.instance_id])
            assert not node.spec.unschedulable


async def test_a_notice_for_an_instance_outside_the_cluster_is_dropped(
    stack: Stack, service_for
) -> None:
    sqs = stack.aws.boto3_client("sqs")
    async with service_for() as service:
        stack.aws.send_spot_interruption("i-0123456789abcdef0")

        async def counted() -> bool:
            return metric(service, "lifecycled_unknown_instances_total", kind=SPOT) == 1

        await eventually(counted)

        async def queue_empty() -> bool:
            reply = sqs.get_queue_attributes(
                QueueUrl=stack.queue.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
            return sum(int(v) for v in reply["Attributes"].values()) == 0

        await eventually(queue_empty)
        for machine in stack.machines:
            node = await client.CoreV1Api(stack.api).read_node(stack.node_of[machine.instance_id])
            assert not node.spec.unschedulable


async def test_with_one_eviction_in_flight_drains_take_turns_and_every_one_ends(
    stack: Stack, service_for
) -> None:
    """LIFECYCLED_EVICTIONS_IN_FLIGHT=1: one drain works at a time (its turn), the other
    waits for it; both nodes are still emptied well before their deadlines."""
    warned = stack.machines[:2]
    nodes = [stack.node_of[m.instance_id] for m in warned]
    async with service_for(evictions_in_flight=1) as service:
        for machine in warned:
            stack.aws.send_spot_interruption(machine.instance_id)

        async def both_drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == 2

        await eventually(both_drained, within=60)
        for node in nodes:
            assert not evictable(await pods_on(stack.api, node))
        assert metric(service, "lifecycled_deadlines_missed_total", kind=SPOT) == 0
