"""Operator controls end to end: per-kind actions, dry run, ownership on a shared queue,
and giving a node back when a rebalance recommendation never became an interruption."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from devstack.aws import AwsStack
from devstack.cluster import Machine, Workloads, seed, wait_running
from devstack.kube import KubeApiServer
from lifecycled.app import running
from lifecycled.explain_node import main_node
from lifecycled.record import DRAINING_TAINT, RECORD_ANNOTATION
from lifecycled.settings import Settings
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on

REBALANCE = "rebalance_recommendation"
SPOT = "spot_interruption"
TERMINATE = "lifecycle_terminate"
MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# What a dry run may still ask AWS: reads, and its own queue's bookkeeping.
READ_PREFIXES = ("Describe", "List", "Get")
QUEUE_ACTIONS = frozenset(
    {"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility"}
)


def evictable(pods: list[Any]) -> list[Any]:
    return [p for p in pods if owner_kind(p) != "DaemonSet"]


async def read_node(stack: Stack, instance_id: str) -> Any:
    return await client.CoreV1Api(stack.api).read_node(stack.node_of[instance_id])


def ours_in_taints(node: Any) -> bool:
    return any(t.key == DRAINING_TAINT for t in node.spec.taints or [])


def queue_depth(stack: Stack, url: str | None) -> int:
    return queue_depth_of(stack.aws, url)


# --- per-kind actions ---------------------------------------------------------------------


@pytest.mark.parametrize("action", ["none", "cordon", "drain"])
async def test_rebalance_action(stack: Stack, service_for, action: str) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    before = len(evictable(await pods_on(stack.api, node)))
    assert before, "the node must have work"

    async with service_for(rebalance_recommendation_action=action) as service:
        stack.aws.send_rebalance_recommendation(machine.instance_id)

        async def handled() -> bool:
            return queue_depth(stack, stack.queue.url) == 0 and (
                metric(service, "lifecycled_notices_total", kind=REBALANCE) == 1
            )

        await eventually(handled, within=30)
        outcome = {"cordon": "cordoned", "drain": "drained"}.get(action)
        if outcome is not None:

            async def closed() -> bool:
                return (
                    metric(
                        service,
                        "lifecycled_drain_duration_seconds_count",
                        kind=REBALANCE,
                        outcome=outcome,
                    )
                    == 1
                )

            await eventually(closed, within=30)
        node_obj = await read_node(stack, machine.instance_id)
        left = len(evictable(await pods_on(stack.api, node)))
        if action == "none":
            assert not node_obj.spec.unschedulable and not ours_in_taints(node_obj)
            assert RECORD_ANNOTATION not in (node_obj.metadata.annotations or {})
            assert left == before
        elif action == "cordon":
            assert node_obj.spec.unschedulable and ours_in_taints(node_obj)
            assert left == before  # cordon only: nothing evicted
        else:
            assert node_obj.spec.unschedulable and left == 0
        assert metric(service, "lifecycled_evictions_total", outcome="evicted") == (
            before if action == "drain" else 0
        )


@pytest.mark.parametrize("action", ["none", "cordon"])
async def test_terminate_hook_is_completed_whatever_the_action(
    stack: Stack, service_for, action: str
) -> None:
    machine = stack.machines[1]
    node = stack.node_of[machine.instance_id]
    before = len(evictable(await pods_on(stack.api, node)))
    # The machine's own shutting-down state change comes next: its kind has its own action.
    quiet = {"lifecycle_terminate_action": action, "instance_state_change_action": "none"}
    async with service_for(**quiet) as service:
        stack.aws.scale_in(stack.group, machine.instance_id)

        async def released() -> bool:
            return metric(service, "lifecycled_lifecycle_actions_total", result="CONTINUE") == 1

        await eventually(released, within=30)
        assert stack.aws.lifecycle_state(machine.instance_id) is None  # not left to time out
        assert len(evictable(await pods_on(stack.api, node))) == before
        assert metric(service, "lifecycled_evictions_total", outcome="evicted") == 0
        node_obj = await client.CoreV1Api(stack.api).read_node(node)
        assert bool(node_obj.spec.unschedulable) is (action == "cordon")


# --- dry run ------------------------------------------------------------------------------


async def test_dry_run_changes_nothing(
    stack: Stack, service_for, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lifecycled")
    spot, scaled = stack.machines[0], stack.machines[1]
    pods_before = {
        m.instance_id: len(evictable(await pods_on(stack.api, stack.node_of[m.instance_id])))
        for m in (spot, scaled)
    }
    stack.kube.requests.clear()
    stack.aws.calls.clear()
    async with service_for(dry_run=True, rebalance_recommendation_action="drain") as service:
        stack.aws.send_spot_interruption(spot.instance_id)
        stack.aws.send_rebalance_recommendation(spot.instance_id)
        stack.aws.scale_in(stack.group, scaled.instance_id)

        async def decided() -> bool:
            return (
                metric(service, "lifecycled_dry_run_actions_total", kind=SPOT, action="drain") == 1
                and metric(
                    service, "lifecycled_dry_run_actions_total", kind=REBALANCE, action="drain"
                )
                == 1
                and metric(
                    service, "lifecycled_dry_run_actions_total", kind=TERMINATE, action="drain"
                )
                == 1
                and queue_depth(stack, stack.queue.url) == 0
            )

        await eventually(decided, within=30)

    writes = [r for r in stack.kube.requests if r.verb in MUTATING_VERBS]
    assert writes == [], [(r.verb, r.path) for r in writes]
    ours = [c for c in stack.aws.calls.snapshot() if not c.from_devstack]
    changes = [
        c.action
        for c in ours
        if not c.action.startswith(READ_PREFIXES) and c.action not in QUEUE_ACTIONS
    ]
    assert changes == []
    assert stack.aws.lifecycle_state(scaled.instance_id) == "Terminating:Wait"
    for machine in (spot, scaled):
        node_obj = await read_node(stack, machine.instance_id)
        assert not node_obj.spec.unschedulable
        assert RECORD_ANNOTATION not in (node_obj.metadata.annotations or {})
        node = stack.node_of[machine.instance_id]
        assert len(evictable(await pods_on(stack.api, node))) == pods_before[machine.instance_id]
    # The log says what would have happened, pod by pod, and that the hook was left alone.
    would = [r for r in caplog.records if r.getMessage() == "dry run: would drain"]
    assert len(would) == 3
    plan = would[0].fields["plan"]
    assert {p["do"] for p in plan} >= {"evict", "skip"}
    assert any(
        r.getMessage() == "dry run: lifecycle hook left to its default result"
        for r in caplog.records
    )
    assert metric(service, "lifecycled_notice_to_cordon_seconds_count") == 0


# --- rebalance recommendations that never became interruptions -----------------------------


async def test_rebalance_uncordons_after_the_timeout(stack: Stack, service_for) -> None:
    calm, doomed = stack.machines[2], stack.machines[3]
    async with service_for(rebalance_uncordon_after_seconds=3) as service:
        stack.aws.send_rebalance_recommendation(calm.instance_id)
        stack.aws.send_rebalance_recommendation(doomed.instance_id)

        async def both_cordoned() -> bool:
            return (
                metric(
                    service,
                    "lifecycled_drain_duration_seconds_count",
                    kind=REBALANCE,
                    outcome="cordoned",
                )
                == 2
            )

        await eventually(both_cordoned, within=20)
        stack.aws.send_spot_interruption(doomed.instance_id)  # this one did become one

        async def given_back() -> bool:
            node_obj = await read_node(stack, calm.instance_id)
            return not node_obj.spec.unschedulable

        await eventually(given_back, within=20)
        node_obj = await read_node(stack, calm.instance_id)
        assert not ours_in_taints(node_obj)
        record = json.loads(node_obj.metadata.annotations[RECORD_ANNOTATION])
        assert record["outcome"] == "uncordoned"
        assert metric(service, "lifecycled_drains_cancelled_total", kind=REBALANCE) == 1

        async def doomed_drained() -> bool:
            return (
                metric(
                    service, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained"
                )
                == 1
            )

        await eventually(doomed_drained, within=30)
        doomed_node = await read_node(stack, doomed.instance_id)
        assert doomed_node.spec.unschedulable and ours_in_taints(doomed_node)


# --- one queue, two clusters ----------------------------------------------------------------


@dataclass
class Cluster:
    name: str
    api: client.ApiClient
    kubeconfig: Path
    group: str
    machines: list[Machine]


async def make_cluster(
    aws: AwsStack, kube: KubeApiServer, name: str, kubeconfig: Path, exits: AsyncExitStack
) -> Cluster:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube.write_kubeconfig(kubeconfig)), client_configuration=configuration
    )
    api = await exits.enter_async_context(client.ApiClient(configuration))
    group = f"{name}-{uuid.uuid4().hex[:6]}"
    tags = {f"kubernetes.io/cluster/{name}": "owned"}
    instances = aws.create_group(group, size=2, heartbeat_timeout=300, tags=tags)
    machines = [Machine(i.id, i.private_dns_name, i.az) for i in instances]
    workloads = Workloads(
        web_replicas=2,
        web_max_unavailable=1,
        api_replicas=2,
        job_parallelism=0,
        exit_seconds=0.3,
        grace_seconds=5,
    )
    await seed(api, machines, workloads)
    assert await wait_running(api, 6, within=30) >= 6
    return Cluster(name, api, kubeconfig, group, machines)


async def test_two_clusters_share_one_queue(
    aws_env: AwsStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a target of the session's EventBridge rules: only this test's notices arrive here,
    # not other tests' (their expiring hooks send state changes nobody here owns).
    queue = aws_env.create_queue(f"shared-{uuid.uuid4().hex[:6]}", dlq=True, max_receive_count=2)
    sqs = aws_env.boto3_client("sqs")
    async with AsyncExitStack() as exits:
        kubes = [await exits.enter_async_context(KubeApiServer()) for _ in range(2)]
        alpha, beta = [
            await make_cluster(aws_env, kube, name, tmp_path / f"{name}.kubeconfig", exits)
            for kube, name in zip(kubes, ("alpha", "beta"), strict=True)
        ]
        services = []

        async def start(cluster: Cluster) -> None:
            # Each service reads KUBECONFIG once, when it starts.
            monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
            settings = Settings(
                queue_url=queue.url,
                metrics_address="127.0.0.1:0",
                sqs_wait_seconds=1,
                drain_poll_seconds=0.2,
                retry_delays=(0.1, 0.2, 0.5),
                shutdown_grace_seconds=2,
                cluster_name=cluster.name,
                not_ours="release",
                not_ours_visibility_seconds=1,
                not_ours_max_forwards=50,  # beta may be slow to start on a busy machine
            )
            services.append(await exits.enter_async_context(running(settings)))

        # One machine of each cluster (both would leave the web budget nowhere to go).
        await start(alpha)
        for cluster in (alpha, beta):
            event = aws_env.send_spot_interruption(cluster.machines[0].instance_id)
            sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(event))

        async def passed_on_past_the_receive_limit() -> bool:
            # alpha alone: beta's notice comes back to it until its receive count reaches
            # maxReceiveCount (2); then a fresh copy is sent instead of letting it dead-letter.
            return (
                metric(services[0], "lifecycled_not_ours_messages_total", outcome="forwarded") >= 1
            )

        await eventually(passed_on_past_the_receive_limit, within=20)
        await start(beta)

        async def all_drained() -> bool:
            return all(
                metric(s, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained")
                == 1
                for s in services
            )

        await eventually(all_drained, within=60)

        async def queue_empty() -> bool:
            return queue_depth_of(aws_env, queue.url) == 0

        await eventually(queue_empty, within=20)
        assert queue_depth_of(aws_env, queue.dlq_url) == 0, "no notice looped into the DLQ"
        for service in services:
            # Each drained its own machine and passed the other on a few times at most.
            assert metric(service, "lifecycled_notice_to_cordon_seconds_count") == 1
            passed_on = sum(
                metric(service, "lifecycled_not_ours_messages_total", outcome=o)
                for o in ("released", "forwarded")
            )
            # By design at most two passes per fresh copy (released once at receive count 1,
            # forwarded at maxReceiveCount 2), and at most not_ours_max_forwards copies.
            assert passed_on <= 2 * 50
            assert metric(service, "lifecycled_not_ours_messages_total", outcome="deleted") == 0
            assert metric(service, "lifecycled_not_ours_messages_total", outcome="dropped") == 0
        for cluster in (alpha, beta):
            core = client.CoreV1Api(cluster.api)
            drained, spared = cluster.machines
            assert (await core.read_node(drained.private_dns_name)).spec.unschedulable
            assert not (await core.read_node(spared.private_dns_name)).spec.unschedulable


def queue_depth_of(aws: AwsStack, url: str | None) -> int:
    reply = aws.boto3_client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in reply["Attributes"].values())


async def test_a_pending_uncordon_survives_a_restart(stack: Stack, service_for) -> None:
    machine = stack.machines[0]
    async with service_for(rebalance_uncordon_after_seconds=600) as first:
        stack.aws.send_rebalance_recommendation(machine.instance_id)

        async def cordoned() -> bool:
            return (
                metric(
                    first,
                    "lifecycled_drain_duration_seconds_count",
                    kind=REBALANCE,
                    outcome="cordoned",
                )
                == 1
            )

        await eventually(cordoned, within=20)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10, "a pending uncordon must not hold up shutdown"
    assert (await read_node(stack, machine.instance_id)).spec.unschedulable

    # The next start reads the record on the node and keeps the promise (now past due).
    async with service_for(rebalance_uncordon_after_seconds=1) as second:

        async def given_back() -> bool:
            return not (await read_node(stack, machine.instance_id)).spec.unschedulable

        await eventually(given_back, within=20)
        assert metric(second, "lifecycled_drains_cancelled_total", kind=REBALANCE) == 1


async def test_explain_node_says_what_a_drain_would_do(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    monkeypatch.setenv("LIFECYCLED_CLUSTER_NAME", "elsewhere")  # the stack's group is untagged
    stack.kube.requests.clear()
    code = await asyncio.to_thread(main_node, node, None)
    obj = json.loads(capsys.readouterr().out)
    assert code == 0
    assert obj["instance_id"] == machine.instance_id
    assert obj["ours"] is False and "kubernetes.io/cluster/elsewhere" in obj["why_not_ours"]
    assert obj["pods"] == []  # not ours: nothing would be done

    monkeypatch.delenv("LIFECYCLED_CLUSTER_NAME")
    body = json.dumps(stack.aws.send_spot_interruption(machine.instance_id)).encode()
    code = await asyncio.to_thread(main_node, node, body)
    obj = json.loads(capsys.readouterr().out)
    assert code == 0 and obj["ours"] is True and obj["action"] == "drain"
    assert obj["notice"]["kind"] == SPOT
    pods = {p["pod"].split("/")[0]: p for p in obj["pods"]}
    assert pods["monitoring"]["do"] == "skip" and "DaemonSet" in pods["monitoring"]["why"]
    evicted = [p for p in obj["pods"] if p["do"] == "evict"]
    assert len(evicted) == len(evictable(await pods_on(stack.api, node)))
    assert not [r for r in stack.kube.requests if r.verb in MUTATING_VERBS]


def peek_hook_message(stack: Stack, instance_id: str) -> bytes:
    """The terminate hook's message for `instance_id`, left on the queue for the service."""
    sqs = stack.aws.boto3_client("sqs")
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for message in sqs.receive_message(
            QueueUrl=stack.queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            sqs.change_message_visibility(
                QueueUrl=stack.queue.url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )
            body = str(message["Body"])
            if instance_id in body and "terminate Lifecycle Action" in body:
                return body.encode()
    raise AssertionError(f"no lifecycle message for {instance_id}")


async def test_explain_node_and_the_service_hold_a_hook_no_longer_than_its_timeout(
    stack: Stack, service_for, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack's hook beats every 300 s: its global timeout is 100 x 300 s, under max hold.
    hold, global_timeout = 40000, 30000
    monkeypatch.setenv("LIFECYCLED_LIFECYCLE_MAX_HOLD_SECONDS", str(hold))
    machine = stack.machines[1]
    node = stack.node_of[machine.instance_id]
    stack.aws.scale_in(stack.group, machine.instance_id)
    body = await asyncio.to_thread(peek_hook_message, stack, machine.instance_id)
    code = await asyncio.to_thread(main_node, node, body)
    explained = json.loads(capsys.readouterr().out)
    assert code == 0 and explained["action"] == "drain"

    async with service_for(lifecycle_max_hold_seconds=hold) as service:

        async def drained() -> bool:
            return (
                metric(
                    service,
                    "lifecycled_drain_duration_seconds_count",
                    kind=TERMINATE,
                    outcome="drained",
                )
                == 1
            )

        await eventually(drained, within=60)
    node_obj = await read_node(stack, machine.instance_id)
    recorded = json.loads(node_obj.metadata.annotations[RECORD_ANNOTATION])["deadline"]
    event_time = datetime.fromisoformat(explained["notice"]["event_time"])
    expected = event_time + timedelta(seconds=global_timeout)
    assert datetime.fromisoformat(explained["deadline"]) == expected
    assert datetime.fromisoformat(recorded) == expected


async def test_nodes_outside_the_selector_are_not_ours(stack: Stack, service_for) -> None:
    zone = stack.machines[0].az
    inside = stack.machines[0]
    outside = next(m for m in stack.machines if m.az != zone)
    selector = f"topology.kubernetes.io/zone={zone}"
    async with service_for(node_selector=selector) as service:
        stack.aws.send_spot_interruption(outside.instance_id)
        stack.aws.send_spot_interruption(inside.instance_id)

        async def judged() -> bool:
            return (
                metric(service, "lifecycled_unknown_instances_total", kind=SPOT) == 1
                and metric(
                    service, "lifecycled_drain_duration_seconds_count", kind=SPOT, outcome="drained"
                )
                == 1
            )

        await eventually(judged, within=30)
        # At least: the rules also route other groups' late state changes (an earlier test's
        # scale-in) to this queue, and those are not ours either.
        assert metric(service, "lifecycled_not_ours_messages_total", outcome="deleted") >= 1
        assert not (await read_node(stack, outside.instance_id)).spec.unschedulable
        assert (await read_node(stack, inside.instance_id)).spec.unschedulable
