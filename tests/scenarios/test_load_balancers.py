"""Load balancers first, end to end: the real service against moto's server (with a real
`draining` state for ELBv2 targets) and the Kubernetes emulator. The order of what happened
comes from the two servers' own records: AWS calls and Kubernetes requests, both stamped
with time.monotonic() in this process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio import client

from devstack.aws import AwsStack
from lifecycled.app import running
from lifecycled.platforms.kube_lb import DEREGISTERED_ANNOTATION, EXCLUDE_LABEL, EXCLUDED_ANNOTATION
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on

SPOT = "spot_interruption"
PORTS = {"web": 30080, "api": 30443}


def target_groups(stack: Stack, *, delay: int, members: list[str] | None = None) -> list[str]:
    """Two target groups (NodePort services) with the cluster's instances as targets."""
    elbv2 = stack.aws.boto3_client("elbv2")
    members = members or [m.instance_id for m in stack.machines]
    arns = []
    for service, port in PORTS.items():
        arn = stack.aws.create_target_group(
            f"{stack.group}-{service}", port=port, deregistration_delay=delay
        )
        elbv2.register_targets(
            TargetGroupArn=arn, Targets=[{"Id": i, "Port": port} for i in members]
        )
        arns.append(arn)
    return arns


def lb_settings(stack: Stack, groups: list[str], **overrides: Any) -> Any:
    return stack.settings(lb_target_groups=frozenset(groups), lb_poll_seconds=0.2, **overrides)


def drained(service: Any, count: int = 1) -> Any:
    async def check() -> bool:
        closed = "lifecycled_drain_duration_seconds_count"
        return metric(service, closed, kind=SPOT, outcome="drained") == count

    return check


def eviction_times(stack: Stack, node_pods: set[str]) -> list[float]:
    return sorted(
        r.time
        for r in stack.kube.requests
        if r.subresource == "eviction" and r.method == "POST" and r.name in node_pods
    )


def eviction_count(stack: Stack, pods: set[str]) -> float:
    return float(len(eviction_times(stack, pods)))


def deregistrations(aws: AwsStack, instance: str) -> dict[str, float]:
    """Target group ARN -> when the service deregistered `instance` from it."""
    return {
        c.params["TargetGroupArn"]: c.time
        for c in aws.calls.of("DeregisterTargets")
        if c.params.get("Targets.member.1.Id") == instance
    }


async def evictable_names(stack: Stack, node: str) -> set[str]:
    return {p.metadata.name for p in await pods_on(stack.api, node) if owner_kind(p) != "DaemonSet"}


async def test_spot_warning_takes_the_node_out_of_both_target_groups_before_evicting(
    stack: Stack,
) -> None:
    web, api = target_groups(stack, delay=2)
    victim = stack.machines[0]
    node = stack.node_of[victim.instance_id]
    on_node = await evictable_names(stack, node)
    assert on_node
    seen_draining: list[float] = []

    async with running(lb_settings(stack, [web, api])) as service:
        event = stack.aws.send_spot_interruption(victim.instance_id)
        deadline = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) + timedelta(
            seconds=120
        )

        async def targets_draining() -> bool:
            states = [stack.aws.target_health(arn) for arn in (web, api)]
            draining = all(
                s.get((victim.instance_id, PORTS[n])) == "draining"
                for s, n in zip(states, PORTS, strict=True)
            )
            if draining:
                seen_draining.append(eviction_count(stack, on_node))
            return draining

        await eventually(targets_draining, within=15, every=0.05)
        await eventually(drained(service), within=30)
        assert datetime.now(UTC) < deadline

        taken_out = deregistrations(stack.aws, victim.instance_id)
        assert set(taken_out) == {web, api}
        evictions = eviction_times(stack, on_node)
        assert evictions and max(taken_out.values()) < evictions[0]
        # The first eviction waited for the targets to finish draining (the 2 s delay).
        assert evictions[0] - max(taken_out.values()) >= 1.8
        assert seen_draining[0] == 0  # while the targets drained, nothing was evicted yet
        for arn, port in ((web, PORTS["web"]), (api, PORTS["api"])):
            health = stack.aws.target_health(arn)
            assert (victim.instance_id, port) not in health  # unused now
            assert all(health[(m.instance_id, port)] == "healthy" for m in stack.machines[1:])

        node_obj = await client.CoreV1Api(stack.api).read_node(node)
        assert node_obj.metadata.labels[EXCLUDE_LABEL] == "true"
        assert node_obj.metadata.annotations[EXCLUDED_ANNOTATION] == "true"
        assert metric(service, "lifecycled_lb_deregistrations_total", kind="target_group") == 2
        assert metric(service, "lifecycled_lb_wait_seconds_count", outcome="unused") == 1
        assert metric(service, "lifecycled_lb_wait_seconds_sum", outcome="unused") >= 1.8


async def test_a_long_deregistration_delay_is_capped_to_keep_the_deadline(stack: Stack) -> None:
    web, api = target_groups(stack, delay=300)
    victim = stack.machines[1]
    node = stack.node_of[victim.instance_id]
    on_node = await evictable_names(stack, node)
    # The warning is 110 s old: the deadline is 10 s away, the cutoff (margin 2 s) 8 s away,
    # and the pods need their 5 s grace period: evictions must start within about 3 s.
    settings = lb_settings(stack, [web, api], deadline_margin_seconds=2)
    async with running(settings) as service:
        sent = datetime.now(UTC)
        stack.aws.send_spot_interruption(victim.instance_id, time=sent - timedelta(seconds=110))
        await eventually(drained(service), within=15)
        assert datetime.now(UTC) < sent + timedelta(seconds=10)

        taken_out = deregistrations(stack.aws, victim.instance_id)
        evictions = eviction_times(stack, on_node)
        assert set(taken_out) == {web, api}
        assert max(taken_out.values()) < evictions[0]
        assert metric(service, "lifecycled_lb_wait_seconds_count", outcome="capped") == 1
        waited = metric(service, "lifecycled_lb_wait_seconds_sum", outcome="capped")
        assert 1.0 <= waited <= 3.5
        # Still draining: the load balancer keeps its 300 s; the node no longer waits for it.
        assert stack.aws.target_health(web)[(victim.instance_id, PORTS["web"])] == "draining"


async def test_a_node_in_no_target_group_does_not_wait(stack: Stack) -> None:
    victim = stack.machines[2]
    others = [m.instance_id for m in stack.machines if m is not victim]
    groups = target_groups(stack, delay=2, members=others)
    node = stack.node_of[victim.instance_id]
    on_node = await evictable_names(stack, node)
    async with running(lb_settings(stack, groups)) as service:
        stack.aws.send_spot_interruption(victim.instance_id)
        await eventually(drained(service), within=30)

        cordoned = min(r.time for r in stack.kube.requests if r.verb == "patch" and r.name == node)
        assert eviction_times(stack, on_node)[0] - cordoned < 1.5  # no 2 s wait
        assert deregistrations(stack.aws, victim.instance_id) == {}
        assert metric(service, "lifecycled_lb_wait_seconds_count", outcome="unused") == 0
        node_obj = await client.CoreV1Api(stack.api).read_node(node)
        assert node_obj.metadata.labels[EXCLUDE_LABEL] == "true"  # the label goes on anyway


async def test_a_cancelled_scheduled_change_puts_the_node_back(stack: Stack) -> None:
    web, api = target_groups(stack, delay=1)
    victim = stack.machines[3]
    node = stack.node_of[victim.instance_id]
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    end = start + timedelta(hours=2)
    async with running(lb_settings(stack, [web, api])) as service:
        stack.aws.send_scheduled_change([victim.instance_id], start=start, end=end)

        async def drained_scheduled() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind="scheduled_change", outcome="drained") == 1

        await eventually(drained_scheduled, within=30)
        node_obj = await client.CoreV1Api(stack.api).read_node(node)
        taken = json.loads(node_obj.metadata.annotations[DEREGISTERED_ANNOTATION])
        assert taken["target_groups"] == {web: [PORTS["web"]], api: [PORTS["api"]]}

        stack.aws.send_scheduled_change(
            [victim.instance_id], start=start, end=end, status="cancelled"
        )

        async def cancelled() -> bool:
            return (
                metric(service, "lifecycled_drains_cancelled_total", kind="scheduled_change") == 1
            )

        await eventually(cancelled, within=15)
        node_obj = await client.CoreV1Api(stack.api).read_node(node)
        assert EXCLUDE_LABEL not in (node_obj.metadata.labels or {})
        annotations = node_obj.metadata.annotations or {}
        assert EXCLUDED_ANNOTATION not in annotations
        assert DEREGISTERED_ANNOTATION not in annotations
        assert not node_obj.spec.unschedulable
        for arn, port in ((web, PORTS["web"]), (api, PORTS["api"])):
            assert stack.aws.target_health(arn)[(victim.instance_id, port)] == "healthy"
        assert metric(service, "lifecycled_lb_registrations_total", kind="target_group") == 2
