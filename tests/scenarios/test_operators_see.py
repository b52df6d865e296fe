"""What operators see of a drain: the Node's Events in order, the pods' Events, one webhook
document per outcome, `lifecycled_drain_info` while open; a missed deadline names the pods
left; a bad receiver delays nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from devstack.cluster import budget
from lifecycled import report
from lifecycled.app import running
from tests.faultproxy import Fault, FaultProxy
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on
from tests.scenarios.test_jobs import instance_on, job_manifest, start_job, start_on_pool
from tests.scenarios.test_load_balancers import lb_settings, target_groups

FIELDS = {
    "event", "cluster", "node", "instance", "kind", "deadline", "pods_evicted", "pods_left",
    "asg", "hook", "outcome", "time",
}  # fmt: skip


@dataclass
class Receiver:
    url: str = ""
    documents: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0


async def start_receiver(mode: str) -> AsyncIterator[Receiver]:
    received = Receiver()

    async def handle(request: web.Request) -> web.Response:
        received.calls += 1
        if mode == "fail":
            return web.Response(status=503, text="down")
        if mode == "hang":
            await asyncio.sleep(3600)
        received.documents.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)  # not 60 s for "hang"
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    received.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield received
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in start_receiver("ok"):
        yield r


async def node_events(stack: Stack, node: str) -> list[Any]:
    items = (await client.CoreV1Api(stack.api).list_namespaced_event("default")).items
    mine = [e for e in items if e.involved_object.kind == "Node" and e.involved_object.name == node]
    return sorted(mine, key=lambda e: e.metadata.name)  # names carry the time written


def in_order(reasons: list[str], wanted: list[str]) -> bool:
    it = iter(reasons)
    return all(r in it for r in wanted)


async def test_a_scale_in_tells_its_story_on_the_node_and_to_the_webhook(
    stack: Stack, service_for, receiver: Receiver
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    wanted = [
        report.NOTICE_RECEIVED,
        report.CORDONED,
        report.HOOK_HELD,
        report.DRAIN_STARTED,
        report.DRAINED,
        report.HOOK_COMPLETED,
    ]
    async with service_for(notify_webhook_url=receiver.url, cluster_name=None) as service:
        stack.aws.scale_in(stack.group, machine.instance_id)

        async def info_open() -> bool:
            return (
                metric(
                    service,
                    "lifecycled_drain_info",
                    node=node,
                    instance=machine.instance_id,
                    kind="lifecycle_terminate",
                )
                == 1
            )

        await eventually(info_open, within=20, every=0.02)

        async def told() -> bool:
            reasons = [e.reason for e in await node_events(stack, node)]
            return report.HOOK_COMPLETED in reasons

        await eventually(told, within=30)
        reasons = [e.reason for e in await node_events(stack, node)]
        assert in_order(reasons, wanted), reasons

        async def info_gone() -> bool:  # the drain closes its record after the hook
            return not await info_open()

        await eventually(info_gone, within=10)  # gone with the drain

        async def documents() -> bool:
            return {"drain_started", "drained", "hook_completed"} <= {
                d["event"] for d in receiver.documents
            }

        await eventually(documents, within=10)
        events = [d["event"] for d in receiver.documents]
        assert events.count("drained") == 1 and events.count("drain_started") == 1
        drained = next(d for d in receiver.documents if d["event"] == "drained")
        assert set(drained) == FIELDS
        assert drained["node"] == node and drained["instance"] == machine.instance_id
        assert drained["kind"] == "lifecycle_terminate" and drained["asg"] == stack.group
        assert drained["hook"] and drained["pods_evicted"] >= 1 and drained["pods_left"] == []
        assert (
            metric(service, "lifecycled_notifications_total", sink="webhook", outcome="sent") >= 3
        )

        pod_events = (await client.CoreV1Api(stack.api).list_event_for_all_namespaces()).items
        evicting = [e for e in pod_events if e.reason == report.EVICTING]
        assert len(evicting) == drained["pods_evicted"]
        assert all(node in e.message for e in evicting)


async def drain_seconds(stack: Stack, service_for, index: int, **overrides: Any) -> float:
    machine = stack.machines[index]
    async with service_for(**overrides) as service:
        start = time.monotonic()
        stack.aws.send_spot_interruption(machine.instance_id)

        async def drained() -> bool:
            return (
                metric(
                    service,
                    "lifecycled_drain_duration_seconds_count",
                    kind="spot_interruption",
                    outcome="drained",
                )
                == 1
            )

        await eventually(drained, within=30, every=0.05)
        return time.monotonic() - start


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_a_bad_receiver_never_delays_a_drain(stack: Stack, service_for, mode: str) -> None:
    baseline = await drain_seconds(stack, service_for, 0)
    async for bad in start_receiver(mode):
        took = await drain_seconds(
            stack,
            service_for,
            1,
            notify_webhook_url=bad.url,
            notify_timeout_seconds=30,
            notify_retry_delays=(5, 5),
        )
        assert bad.calls >= 1  # it was tried while the drain went on
    # The same work on a node of the same shape: within the noise of one poll or two.
    assert took < baseline + 2.0, (baseline, took)


async def test_a_missed_deadline_names_the_pods_left_on_the_node_and_to_the_webhook(
    stack: Stack, receiver: Receiver
) -> None:
    # The rest of the node's story, as `make demo` shows it: load balancers left, budget
    # refusals (one aggregated Event), and here a budget that never allows the eviction, so
    # the deadline passes with the API pods still on the node.
    await client.PolicyV1Api(stack.api).create_namespaced_pod_disruption_budget(
        "shop", budget("api-frozen", "shop", "api", 0)
    )
    groups = target_groups(stack, delay=1)
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    # A small Event budget: the refusals (aggregated, many writes) must not use up the one
    # of the DeadlineMissed that follows (the budget is per node and reason).
    settings = lb_settings(stack, groups, notify_webhook_url=receiver.url, kube_events_burst=5)
    async with running(settings) as service:
        soon = datetime.now(UTC) - timedelta(seconds=settings.drain.spot_notice_seconds - 10)
        stack.aws.send_spot_interruption(machine.instance_id, time=soon)

        async def missed() -> bool:
            return {"drain_started", "deadline_missed"} <= {d["event"] for d in receiver.documents}

        await eventually(missed, within=30)
        assert metric(service, "lifecycled_deadlines_missed_total", kind="spot_interruption") == 1
        events = await node_events(stack, node)
        reasons = [e.reason for e in events]
        wanted = [
            report.NOTICE_RECEIVED,
            report.CORDONED,
            report.DRAIN_STARTED,
            report.LB_LEFT,
            report.EVICTION_BLOCKED,
            report.DEADLINE_MISSED,
        ]
        assert in_order(reasons, wanted), reasons
        assert reasons.count(report.EVICTION_BLOCKED) == 1  # aggregated, however many refusals
        assert report.DRAINED not in reasons
        left = [p.metadata for p in await pods_on(stack.api, node) if owner_kind(p) != "DaemonSet"]
        api_left = sorted(f"{m.namespace}/{m.name}" for m in left if m.name.startswith("api-"))
        assert api_left
        (missed_event,) = [e for e in events if e.reason == report.DEADLINE_MISSED]
        assert missed_event.type == "Warning"
        assert all(name.split("/")[1] in missed_event.message for name in api_left[:3])

        events_sent = [d["event"] for d in receiver.documents]
        assert events_sent.count("deadline_missed") == 1 and events_sent.count("drained") == 0
        document = next(d for d in receiver.documents if d["event"] == "deadline_missed")
        assert set(document) == FIELDS
        assert document["node"] == node and document["instance"] == machine.instance_id
        assert document["kind"] == "spot_interruption" and document["deadline"]
        assert set(api_left) <= {p if "/" in p else f"shop/{p}" for p in document["pods_left"]}, (
            document["pods_left"]
        )


async def test_a_forced_termination_and_a_given_back_node_are_told(
    stack: Stack, service_for, receiver: Receiver
) -> None:
    # A scale-in waits for this job, so the drain is still open when EC2 takes the machine.
    _, node = await start_job(stack, job_manifest("longrun", idempotent=False, run_seconds=None))
    instance = instance_on(stack, node)
    back = next(m for m in stack.machines if stack.node_of[m.instance_id] != node)
    back_node = stack.node_of[back.instance_id]
    async with service_for(
        notify_webhook_url=receiver.url,
        rebalance_action="cordon",
        rebalance_uncordon_after_seconds=1.5,
    ):
        stack.aws.scale_in(stack.group, instance)
        stack.aws.send_rebalance_recommendation(back.instance_id)

        async def waiting() -> bool:  # the pod's own Event: waited for, with the deadline
            items = (await client.CoreV1Api(stack.api).list_namespaced_event("batch")).items
            return any(
                e.reason == report.WAITING and e.involved_object.name.startswith("longrun")
                for e in items
            )

        await eventually(waiting, within=15)
        stack.aws.force_terminate(instance)

        async def forced() -> bool:
            return "forced_termination" in {d["event"] for d in receiver.documents}

        await eventually(forced, within=15)
        events = await node_events(stack, node)
        reasons = [e.reason for e in events]
        assert in_order(reasons, [report.NOTICE_RECEIVED, report.CORDONED, report.FORCED])
        (event,) = [e for e in events if e.reason == report.FORCED]
        assert event.type == "Warning" and "longrun" in event.message
        document = next(d for d in receiver.documents if d["event"] == "forced_termination")
        assert set(document) == FIELDS and document["instance"] == instance
        assert any("longrun" in p for p in document["pods_left"]), document["pods_left"]

        # The rebalance cordon is given back when the recommendation is not followed up.
        async def given_back() -> bool:
            reasons = [e.reason for e in await node_events(stack, back_node)]
            return report.GIVEN_BACK in reasons

        await eventually(given_back, within=15)
        reasons = [e.reason for e in await node_events(stack, back_node)]
        assert in_order(reasons, [report.NOTICE_RECEIVED, report.CORDONED, report.GIVEN_BACK])
        assert report.DRAIN_STARTED not in reasons


async def test_the_sns_sink_publishes_each_outcome_document(stack: Stack, service_for) -> None:
    sns, sqs = stack.aws.boto3_client("sns"), stack.aws.boto3_client("sqs")
    topic = sns.create_topic(Name=f"{stack.group}-drains")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{stack.group}-drains-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=inbox_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    machine = stack.machines[0]
    received: list[dict[str, Any]] = []
    async with service_for(notify_sns_topic_arn=topic) as service:
        stack.aws.send_spot_interruption(machine.instance_id)

        async def published() -> bool:
            reply = await asyncio.to_thread(
                sqs.receive_message, QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            received.extend(json.loads(m["Body"]) for m in reply.get("Messages", []))
            return "drained" in {d["event"] for d in received}

        await eventually(published, within=30, every=0.2)
        assert metric(service, "lifecycled_notifications_total", sink="sns", outcome="sent") >= 2
    drained = next(d for d in received if d["event"] == "drained")
    assert set(drained) == FIELDS
    assert drained["instance"] == machine.instance_id
    assert drained["node"] == stack.node_of[machine.instance_id]


async def test_a_hook_that_times_out_is_never_silent(
    stack: Stack, service_for, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every heartbeat is refused (the role lacks autoscaling:RecordLifecycleActionHeartbeat),
    so the hook times out while its job still runs and AWS terminates the instance: the node
    says so (LifecycleHeartbeatFailed, then ForcedTermination, both warnings), the webhook
    gets forced_termination, and nothing claims the drain or the hook completed."""
    group = stack.group + "-lost"
    [machine] = stack.aws.create_group(group, size=1, heartbeat_timeout=4)
    node = machine.private_dns_name
    manifest = job_manifest("lost-hook", idempotent=True, run_seconds=30)
    await start_on_pool(stack, machine, "lost", manifest)
    heartbeats = Fault(
        "POST",
        "/",
        status=403,
        times=10_000,
        action="RecordLifecycleActionHeartbeat",
        code="AccessDenied",
    )
    async with FaultProxy(stack.aws.endpoint_url, faults=[heartbeats]) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_AUTO_SCALING", proxy.url)
        async with service_for(notify_webhook_url=receiver.url) as service:
            stack.aws.scale_in(group, machine.id)

            async def told() -> bool:
                return report.FORCED in {e.reason for e in await node_events(stack, node)}

            await eventually(told, within=40)
            events = await node_events(stack, node)
            reasons = [e.reason for e in events]
            assert in_order(reasons, [report.HOOK_HELD, report.HEARTBEAT_FAILED, report.FORCED])
            assert not {report.DRAINED, report.HOOK_COMPLETED} & set(reasons)
            warnings = {e.reason for e in events if e.type == "Warning"}
            assert {report.HEARTBEAT_FAILED, report.FORCED} <= warnings
            failed = next(e for e in events if e.reason == report.HEARTBEAT_FAILED)
            assert "AccessDenied" in failed.message
            assert heartbeats.injected >= 1
            assert metric(service, "lifecycled_lifecycle_heartbeats_total", outcome="error") >= 1
            assert metric(service, "lifecycled_lifecycle_heartbeats_total", outcome="ok") == 0

            async def alerted() -> bool:
                return "forced_termination" in {d["event"] for d in receiver.documents}

            await eventually(alerted, within=10)
            sent = {d["event"] for d in receiver.documents}
            assert not {"drained", "hook_completed"} & sent
            forced = next(d for d in receiver.documents if d["event"] == "forced_termination")
            assert forced["instance"] == machine.id and forced["asg"] == group
