"""DaemonSet mode end to end: the real service polls one node's instance metadata (the IMDS
emulator) and acts on the embedded cluster and Auto Scaling group."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from devstack.cluster import Machine
from devstack.imds import ImdsEmulator
from lifecycled.app import Service, running
from lifecycled.record import DRAINING_TAINT, RECORD_ANNOTATION
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on

POLL = 0.5
SPOT = "spot_interruption"


def evictable(pods: list[Any]) -> list[Any]:
    return [p for p in pods if owner_kind(p) != "DaemonSet"]


@pytest.fixture
async def imds(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ImdsEmulator]:
    machine = stack.machines[0]
    async with ImdsEmulator(
        instance_id=machine.instance_id, region=stack.aws.region, az=machine.az
    ) as emulator:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", emulator.url)
        yield emulator


def daemonset_mode(stack: Stack, machine: Machine, **overrides: Any) -> Any:
    node = stack.node_of[machine.instance_id]
    return running(
        stack.settings(source="imds", node_name=node, imds_poll_seconds=POLL, **overrides)
    )


async def read_node(stack: Stack, node: str) -> Any:
    return await client.CoreV1Api(stack.api).read_node(node)


def record_of(node_obj: Any) -> dict[str, Any]:
    return dict(json.loads(node_obj.metadata.annotations[RECORD_ANNOTATION]))


async def drained(service: Service, kind: str, outcome: str = "drained") -> bool:
    name = "lifecycled_drain_duration_seconds_count"
    return metric(service, name, kind=kind, outcome=outcome) == 1


async def test_a_spot_action_drains_the_node_within_a_poll_plus_the_drain(
    stack: Stack, imds: ImdsEmulator
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    assert evictable(await pods_on(stack.api, node))
    async with daemonset_mode(stack, machine) as service:
        started = time.monotonic()
        imds.set_spot_action()

        async def cordoned() -> bool:
            return bool((await read_node(stack, node)).spec.unschedulable)

        await eventually(cordoned, within=POLL + 2, every=0.05)
        cordon_seconds = time.monotonic() - started

        async def spot_drained() -> bool:
            return await drained(service, SPOT)

        await eventually(spot_drained, within=30)
        drain_seconds = time.monotonic() - started
        assert not evictable(await pods_on(stack.api, node))
        assert [owner_kind(p) for p in await pods_on(stack.api, node)] == ["DaemonSet"]
        node_obj = await read_node(stack, node)
        assert record_of(node_obj)["outcome"] == "drained"
        assert any(t.key == DRAINING_TAINT for t in node_obj.spec.taints)
        assert metric(service, "lifecycled_notices_total", kind=SPOT) == 1
        for other in stack.machines[1:]:
            assert not (await read_node(stack, stack.node_of[other.instance_id])).spec.unschedulable
    print(f"spot: cordoned after {cordon_seconds:.2f}s, drained after {drain_seconds:.2f}s")


async def test_a_rebalance_recommendation_only_cordons(stack: Stack, imds: ImdsEmulator) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    before = len(evictable(await pods_on(stack.api, node)))
    async with daemonset_mode(stack, machine) as service:
        imds.set_rebalance()

        async def closed() -> bool:
            return await drained(service, "rebalance_recommendation", outcome="cordoned")

        await eventually(closed, within=10)
        node_obj = await read_node(stack, node)
        assert node_obj.spec.unschedulable is True
        assert record_of(node_obj)["outcome"] == "cordoned"
        assert len(evictable(await pods_on(stack.api, node))) == before
        assert metric(service, "lifecycled_evictions_total", outcome="evicted") == 0


async def test_a_scheduled_change_cancelled_before_its_window_gives_the_node_back(
    stack: Stack, imds: ImdsEmulator
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    core: Any = client.CoreV1Api(stack.api)
    foreign = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    await core.patch_node(node, {"spec": {"taints": [foreign]}})
    async with daemonset_mode(stack, machine) as service:
        event_id = imds.add_scheduled_event("system-reboot")

        async def drained_early() -> bool:
            return await drained(service, "scheduled_change")

        await eventually(drained_early, within=30)
        assert (await read_node(stack, node)).spec.unschedulable is True

        imds.set_scheduled_state(event_id, "canceled")

        async def uncordoned() -> bool:
            return not (await read_node(stack, node)).spec.unschedulable

        await eventually(uncordoned, within=POLL + 3, every=0.05)

        async def only_foreign_taint_left() -> bool:
            # The node controller drops its own node.kubernetes.io/unschedulable taint too.
            node_obj = await read_node(stack, node)
            return [t.key for t in node_obj.spec.taints or []] == ["dedicated"]

        await eventually(only_foreign_taint_left, within=5)
        node_obj = await read_node(stack, node)
        record = record_of(node_obj)
        assert record["phase"] == "done" and record["outcome"] == "cancelled"
        assert "lifecycled.io/cordoned-before" not in node_obj.metadata.annotations
        assert metric(service, "lifecycled_drains_cancelled_total", kind="scheduled_change") == 1


async def test_a_node_cordoned_by_someone_else_stays_cordoned_after_a_cancellation(
    stack: Stack, imds: ImdsEmulator
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    core: Any = client.CoreV1Api(stack.api)
    await core.patch_node(node, {"spec": {"unschedulable": True}})
    async with daemonset_mode(stack, machine) as service:
        event_id = imds.add_scheduled_event("instance-retirement")

        async def drained_early() -> bool:
            return await drained(service, "scheduled_change")

        await eventually(drained_early, within=30)
        imds.remove_scheduled_event(event_id)  # gone from the list before its window

        async def cancelled() -> bool:
            return (
                metric(service, "lifecycled_drains_cancelled_total", kind="scheduled_change") == 1
            )

        await eventually(cancelled, within=POLL + 3)
        node_obj = await read_node(stack, node)
        assert node_obj.spec.unschedulable is True
        assert not any(t.key == DRAINING_TAINT for t in node_obj.spec.taints or [])


async def test_imds_errors_timeouts_and_token_expiry_are_survived(
    stack: Stack, imds: ImdsEmulator
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    async with daemonset_mode(stack, machine, api_timeout_seconds=1.0) as service:
        imds.fail(500, times=4)
        imds.delay(1.5, times=1)  # past the client's timeout
        imds.expire_tokens()
        imds.set_spot_action()

        async def spot_drained() -> bool:
            return await drained(service, SPOT)

        await eventually(spot_drained, within=30)
        assert not evictable(await pods_on(stack.api, node))
        assert metric(service, "lifecycled_imds_polls_total", outcome="error") >= 1
        assert imds.count("PUT", "api/token", 200) >= 2
        assert metric(service, "lifecycled_forced_terminations_total", kind=SPOT) == 0


async def test_scale_in_completes_the_terminating_hook_by_instance_id(
    stack: Stack, imds: ImdsEmulator
) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    imds.set_target_lifecycle_state("InService")
    async with daemonset_mode(stack, machine) as service:
        stack.aws.calls.clear()
        stack.aws.scale_in(stack.group, machine.instance_id)
        assert stack.aws.lifecycle_state(machine.instance_id) == "Terminating:Wait"
        imds.set_target_lifecycle_state("Terminated")

        async def instance_gone() -> bool:
            # Our own count too: AWS moves on before the service has read the reply.
            released = metric(service, "lifecycled_lifecycle_actions_total", result="CONTINUE")
            return stack.aws.lifecycle_state(machine.instance_id) is None and released == 1

        await eventually(instance_gone, within=30)
        assert not evictable(await pods_on(stack.api, node))
        completes = [c for c in stack.aws.calls if c.action == "CompleteLifecycleAction"]
        assert len(completes) == 1
        assert "LifecycleActionToken" not in completes[0].params
        assert completes[0].params["InstanceId"] == machine.instance_id
        assert metric(service, "lifecycled_lifecycle_actions_total", result="CONTINUE") == 1


async def test_with_no_region_configured_the_pod_takes_its_machines_own(
    stack: Stack, imds: ImdsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A DaemonSet pod needs no AWS_REGION: botocore alone would refuse to start without one.
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "LIFECYCLED_REGION"):
        monkeypatch.delenv(name, raising=False)
    machine = stack.machines[0]
    imds.set_target_lifecycle_state("InService")
    async with daemonset_mode(stack, machine) as service:
        assert service.settings.scope.region == stack.aws.region
        stack.aws.scale_in(stack.group, machine.instance_id)  # needs AWS: the hook's release
        imds.set_target_lifecycle_state("Terminated")

        async def released() -> bool:
            return metric(service, "lifecycled_lifecycle_actions_total", result="CONTINUE") == 1

        await eventually(released, within=30)
