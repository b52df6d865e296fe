"""Load balancers first (platforms/kube_lb.py) against moto's server with the devstack's ELBv2
draining, and the Kubernetes emulator for the node's label and annotations."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.aws import AwsStack
from devstack.kube import KubeApiServer
from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.elbv2 import LbTarget
from lifecycled.clients.kube import KubeClient
from lifecycled.model import Action
from lifecycled.observe import Metrics
from lifecycled.platforms.kube_lb import (
    DEREGISTERED_ANNOTATION,
    EXCLUDE_LABEL,
    EXCLUDED_ANNOTATION,
    LoadBalancers,
    max_grace,
)
from lifecycled.settings import Settings
from tests.platforms.conftest import FakeDrain, record_for

NODE = "ip-10-0-1-10.ec2.internal"


@dataclass
class Lb:
    balancers: LoadBalancers
    metrics: Metrics
    kube: KubeApiServer

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(controllers=False) as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        await server.add_node(NODE)
        yield server


@pytest.fixture
async def make_lb(aws: AwsStack, kube: KubeApiServer) -> AsyncIterator[Any]:
    opened: list[Any] = []

    async def make(**overrides: Any) -> Lb:
        values: dict[str, Any] = {
            "queue_url": "http://unused",
            "lb_poll_seconds": 0.1,
            "retry_delays": (0.1, 0.2),
        }
        values.update(overrides)
        settings = Settings(**values)
        metrics = Metrics()
        aws_context = AwsClients.open(settings, metrics, ("elbv2", "elb"))
        kube_context = KubeClient.open(metrics, 5)
        clients = await aws_context.__aenter__()
        kube_client = await kube_context.__aenter__()
        opened.extend([aws_context, kube_context])
        return Lb(LoadBalancers(kube_client, clients, settings, metrics), metrics, kube)

    yield make
    for context in reversed(opened):
        await context.__aexit__(None, None, None)


def instances(aws: AwsStack, name: str, size: int = 2) -> list[str]:
    return [i.id for i in aws.create_group(name, size=size, terminate_hook=None)]


def target_group(
    aws: AwsStack,
    name: str,
    *,
    delay: int = 1,
    target_type: str = "instance",
    tags: dict[str, str] | None = None,
    targets: list[tuple[str, int]] = (),  # type: ignore[assignment]
) -> str:
    arn = aws.create_target_group(
        name, deregistration_delay=delay, target_type=target_type, load_balancer=False
    )
    elbv2 = aws.boto3_client("elbv2")
    if tags:
        elbv2.add_tags(ResourceArns=[arn], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    if targets:
        elbv2.register_targets(
            TargetGroupArn=arn, Targets=[{"Id": i, "Port": p} for i, p in targets]
        )
    return arn


def classic(aws: AwsStack, name: str, members: list[str], *, draining: int | None = None) -> str:
    elb = aws.boto3_client("elb")
    elb.create_load_balancer(
        LoadBalancerName=name,
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 30080}],
        AvailabilityZones=[f"{aws.region}a"],
    )
    elb.register_instances_with_load_balancer(
        LoadBalancerName=name, Instances=[{"InstanceId": i} for i in members]
    )
    if draining is not None:
        elb.modify_load_balancer_attributes(
            LoadBalancerName=name,
            LoadBalancerAttributes={"ConnectionDraining": {"Enabled": True, "Timeout": draining}},
        )
    return name


def pod(grace: int | None) -> dict[str, Any]:
    spec = {} if grace is None else {"terminationGracePeriodSeconds": grace}
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


def deregistered(aws: AwsStack) -> dict[str, set[tuple[str, int]]]:
    """Target group ARN -> the (Id, Port) pairs the service deregistered."""
    found: dict[str, set[tuple[str, int]]] = {}
    for call in aws.calls.of("DeregisterTargets"):
        params = call.params
        n = 1
        while f"Targets.member.{n}.Id" in params:
            target = (params[f"Targets.member.{n}.Id"], int(params[f"Targets.member.{n}.Port"]))
            found.setdefault(params["TargetGroupArn"], set()).add(target)
            n += 1
    return found


# --- discovery -----------------------------------------------------------------------------


async def test_membership_covers_only_instance_targets_of_this_instance(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, other = instances(aws, name)
    web = target_group(aws, f"{name}-web", targets=[(mine, 30080), (mine, 30443), (other, 30080)])
    api = target_group(aws, f"{name}-api", targets=[(mine, 31000)])
    elsewhere = target_group(aws, f"{name}-else", targets=[(other, 31000)])
    pods = target_group(aws, f"{name}-ip", target_type="ip", targets=[("10.0.1.7", 8080)])
    lb = await make_lb(lb_target_groups=frozenset({web, api, elsewhere, pods}))

    found = await lb.balancers.membership(mine)

    assert set(found.target_groups) == {web, api}
    assert set(found.target_groups[web]) == {LbTarget(mine, 30080), LbTarget(mine, 30443)}
    assert set(found.target_groups[web].values()) == {"healthy"}
    assert set(found.target_groups[api]) == {LbTarget(mine, 31000)}
    assert found.classic == []


async def test_groups_found_by_tag_are_cached(aws: AwsStack, name: str, make_lb) -> None:
    mine, _ = instances(aws, name)
    tagged = target_group(aws, f"{name}-a", tags={"cluster": name}, targets=[(mine, 30080)])
    target_group(aws, f"{name}-b", tags={"cluster": "other"}, targets=[(mine, 30081)])
    lb = await make_lb(lb_target_group_tags={"cluster": name}, lb_cache_seconds=60)

    assert set((await lb.balancers.membership(mine)).target_groups) == {tagged}
    later = target_group(aws, f"{name}-c", tags={"cluster": name}, targets=[(mine, 30082)])
    assert set((await lb.balancers.membership(mine)).target_groups) == {tagged}
    assert len(aws.calls.of("DescribeTargetGroups")) == 1  # the list came from the cache

    fresh = await make_lb(lb_target_group_tags={"cluster": name}, lb_cache_seconds=0)
    assert set((await fresh.balancers.membership(mine)).target_groups) == {tagged, later}


async def test_a_missing_configured_group_does_not_hide_the_others(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, _ = instances(aws, name)
    web = target_group(aws, f"{name}-web", targets=[(mine, 30080)])
    gone = web.replace(f"{name}-web", f"{name}-gone")
    lb = await make_lb(lb_target_groups=frozenset({web, gone}))
    assert set((await lb.balancers.membership(mine)).target_groups) == {web}


def test_max_grace_defaults_to_thirty_seconds_per_pod() -> None:
    assert max_grace([]) == 0
    assert max_grace([pod(5), pod(12)]) == 12
    assert max_grace([pod(5), pod(None)]) == 30


# --- deregistration and the wait -----------------------------------------------------------


async def test_take_out_deregisters_then_waits_until_the_targets_are_unused(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, other = instances(aws, name)
    web = target_group(aws, f"{name}-web", targets=[(mine, 30080), (other, 30080)])
    api = target_group(aws, f"{name}-api", targets=[(mine, 31000)])
    idle = target_group(aws, f"{name}-idle", targets=[(other, 31000)])
    lb = await make_lb(lb_target_groups=frozenset({web, api, idle}))
    drain = FakeDrain(record_for(mine, seconds=60))
    loop = asyncio.get_running_loop()

    started = loop.time()
    assert await lb.balancers.take_out(NODE, drain, max_grace([pod(5)])) is True
    waited = loop.time() - started

    assert deregistered(aws) == {web: {(mine, 30080)}, api: {(mine, 31000)}}
    # The other instance stays in service; the deregistered target passed through draining.
    assert aws.target_health(web) == {(other, 30080): "healthy"}
    states = [
        c.time
        for c in aws.calls.of("DescribeTargetHealth")
        if c.params.get("TargetGroupArn") == web
    ]
    assert len(states) >= 3  # listed, then polled while draining until unused
    assert 1.0 <= waited < 3.0  # the 1 s deregistration delay
    assert lb.sample("lifecycled_lb_wait_seconds_count", outcome="unused") == 1
    assert lb.sample("lifecycled_lb_deregistrations_total", kind="target_group") == 2
    node = await lb.kube.get_object("nodes", NODE)
    assert node is not None
    remembered = json.loads(node["metadata"]["annotations"][DEREGISTERED_ANNOTATION])
    assert remembered["target_groups"] == {web: [30080], api: [31000]}


async def test_a_resumed_drain_waits_for_draining_targets_without_deregistering_again(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, _ = instances(aws, name)
    web = target_group(aws, f"{name}-web", delay=2, targets=[(mine, 30080)])
    aws.boto3_client("elbv2").deregister_targets(
        TargetGroupArn=web, Targets=[{"Id": mine, "Port": 30080}]
    )  # the service deregistered it, then restarted
    lb = await make_lb(lb_target_groups=frozenset({web}))
    loop = asyncio.get_running_loop()

    started = loop.time()
    assert (
        await lb.balancers.take_out(NODE, FakeDrain(record_for(mine)), max_grace([pod(5)])) is True
    )

    assert loop.time() - started >= 1.0  # it waited for the draining target
    assert aws.calls.of("DeregisterTargets") == []
    assert aws.target_health(web) == {}
    assert lb.sample("lifecycled_lb_wait_seconds_count", outcome="unused") == 1


async def test_the_wait_is_capped_so_the_pods_grace_fits_before_the_deadline(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, _ = instances(aws, name)
    slow = target_group(aws, f"{name}-slow", delay=300, targets=[(mine, 30080)])
    lb = await make_lb(lb_target_groups=frozenset({slow}))
    # cutoff = now + 8 - 1; the pods need 5 s: evictions must start within about 2 s.
    drain = FakeDrain(record_for(mine, seconds=8), margin=1)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await lb.balancers.take_out(NODE, drain, max_grace([pod(2), pod(5)]))
    waited = loop.time() - started

    assert 1.5 <= waited <= 2.5
    assert aws.target_health(slow) == {(mine, 30080): "draining"}
    assert lb.sample("lifecycled_lb_wait_seconds_count", outcome="capped") == 1


async def test_max_wait_setting_bounds_the_wait(aws: AwsStack, name: str, make_lb) -> None:
    mine, _ = instances(aws, name)
    slow = target_group(aws, f"{name}-slow", delay=300, targets=[(mine, 30080)])
    lb = await make_lb(lb_target_groups=frozenset({slow}), lb_max_wait_seconds=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await lb.balancers.take_out(
        NODE, FakeDrain(record_for(mine, seconds=600)), max_grace([pod(30)])
    )
    assert loop.time() - started < 1.5
    assert lb.sample("lifecycled_lb_wait_seconds_count", outcome="capped") == 1


async def test_an_instance_in_no_group_is_not_held(aws: AwsStack, name: str, make_lb) -> None:
    mine, other = instances(aws, name)
    web = target_group(aws, f"{name}-web", targets=[(other, 30080)])
    lb = await make_lb(lb_target_groups=frozenset({web}), lb_classic_names=frozenset())
    assert (
        await lb.balancers.take_out(NODE, FakeDrain(record_for(mine)), max_grace([pod(5)])) is False
    )
    assert aws.calls.of("DeregisterTargets") == []
    assert lb.sample("lifecycled_lb_wait_seconds_count", outcome="unused") == 0


async def test_a_failing_load_balancer_never_stops_the_drain(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, _ = instances(aws, name)
    lb = await make_lb(lb_classic_names=frozenset({f"{name}-missing"}))
    assert (
        await lb.balancers.take_out(NODE, FakeDrain(record_for(mine)), max_grace([pod(5)])) is True
    )
    assert lb.sample("lifecycled_lb_errors_total") == 1


async def test_classic_load_balancers_are_left_too(aws: AwsStack, name: str, make_lb) -> None:
    mine, other = instances(aws, name)
    shop = classic(aws, f"{name}-shop", [mine, other], draining=1)
    unrelated = classic(aws, f"{name}-misc", [other])
    lb = await make_lb(lb_classic_names=frozenset({shop, unrelated}))

    await lb.balancers.take_out(NODE, FakeDrain(record_for(mine)), max_grace([pod(5)]))

    calls = aws.calls.of("DeregisterInstancesFromLoadBalancer")
    assert [
        (c.params["LoadBalancerName"], c.params["Instances.member.1.InstanceId"]) for c in calls
    ] == [(shop, mine)]
    members = aws.boto3_client("elb").describe_load_balancers(LoadBalancerNames=[shop])
    assert [i["InstanceId"] for i in members["LoadBalancerDescriptions"][0]["Instances"]] == [other]
    assert lb.sample("lifecycled_lb_deregistrations_total", kind="classic") == 1
    assert aws.calls.of("DescribeInstanceHealth")  # polled until it left


# --- a cancelled drain ---------------------------------------------------------------------


async def test_give_back_registers_the_targets_it_took_out(
    aws: AwsStack, name: str, make_lb
) -> None:
    mine, _ = instances(aws, name)
    web = target_group(aws, f"{name}-web", targets=[(mine, 30080), (mine, 30443)])
    shop = classic(aws, f"{name}-shop", [mine])
    lb = await make_lb(lb_target_groups=frozenset({web}), lb_classic_names=frozenset({shop}))
    await lb.balancers.take_out(NODE, FakeDrain(record_for(mine)), max_grace([pod(5)]))
    assert aws.target_health(web) == {}

    await lb.balancers.give_back(NODE)

    assert aws.target_health(web) == {(mine, 30080): "healthy", (mine, 30443): "healthy"}
    members = aws.boto3_client("elb").describe_load_balancers(LoadBalancerNames=[shop])
    assert [i["InstanceId"] for i in members["LoadBalancerDescriptions"][0]["Instances"]] == [mine]
    assert lb.sample("lifecycled_lb_registrations_total", kind="target_group") == 1
    assert lb.sample("lifecycled_lb_registrations_total", kind="classic") == 1


# --- the label -----------------------------------------------------------------------------


def node_with(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": NODE, "labels": labels, "annotations": annotations}}


def cordon_patch() -> dict[str, Any]:
    return {"metadata": {"annotations": {}}}


def settings(**overrides: Any) -> Settings:
    return Settings(queue_url="http://unused", **overrides)


def test_exclude_label_is_added_and_remembered_on_a_drain() -> None:
    balancers = LoadBalancers(None, None, settings(), Metrics())  # type: ignore[arg-type]
    patch = cordon_patch()
    balancers.exclude(node_with({}, {}), record_for("i-1"), patch)
    assert patch["metadata"]["labels"] == {EXCLUDE_LABEL: "true"}
    assert patch["metadata"]["annotations"] == {EXCLUDED_ANNOTATION: "true"}


def test_exclude_label_leaves_someone_elses_label_and_cordon_only_notices_alone() -> None:
    balancers = LoadBalancers(None, None, settings(), Metrics())  # type: ignore[arg-type]
    theirs = cordon_patch()
    balancers.exclude(node_with({EXCLUDE_LABEL: "true"}, {}), record_for("i-1"), theirs)
    assert theirs == cordon_patch()
    cordon_only = cordon_patch()
    balancers.exclude(node_with({}, {}), record_for("i-1", action=Action.CORDON), cordon_only)
    assert cordon_only == cordon_patch()
    off = LoadBalancers(None, None, settings(lb_exclude_label=False), Metrics())  # type: ignore[arg-type]
    disabled = cordon_patch()
    off.exclude(node_with({}, {}), record_for("i-1"), disabled)
    assert disabled == cordon_patch()


def test_include_removes_the_label_only_when_we_added_it() -> None:
    ours = cordon_patch()
    LoadBalancers.include(node_with({EXCLUDE_LABEL: "true"}, {EXCLUDED_ANNOTATION: "true"}), ours)
    assert ours["metadata"]["labels"] == {EXCLUDE_LABEL: None}
    assert ours["metadata"]["annotations"][EXCLUDED_ANNOTATION] is None
    theirs = cordon_patch()
    LoadBalancers.include(node_with({EXCLUDE_LABEL: "true"}, {}), theirs)
    assert "labels" not in theirs["metadata"]
