"""Secure by default: with no scope configured, a queue handler believes only notices that
name its own account and region. Whoever can send to the queue cannot drain our nodes by
claiming another account or region; opting out is an explicit setting."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from kubernetes_asyncio import client

from devstack.aws import payloads
from tests.scenarios.conftest import Stack, eventually, metric

SPOT = "spot_interruption"


def forged_warning(stack: Stack, instance_id: str, *, account: str, region: str) -> str:
    spec = payloads.spot_interruption(region, account, instance_id)
    body = payloads.envelope(
        spec, event_id=str(uuid.uuid4()), account=account, region=region, time=datetime.now(UTC)
    )
    return json.dumps(body)


async def cordoned(stack: Stack, instance_id: str) -> bool:
    node = await client.CoreV1Api(stack.api).read_node(stack.node_of[instance_id])
    return bool(node.spec.unschedulable)


async def test_a_warning_claiming_another_account_or_region_is_refused_by_default(
    stack: Stack, service_for
) -> None:
    sqs = stack.aws.boto3_client("sqs")
    forged = stack.machines[0].instance_id
    async with service_for() as service:
        for account, region in (
            ("999999999999", stack.aws.region),
            (stack.aws.account, "eu-west-9"),
        ):
            body = forged_warning(stack, forged, account=account, region=region)
            sqs.send_message(QueueUrl=stack.queue.url, MessageBody=body)
        real = stack.machines[1].instance_id
        stack.aws.send_spot_interruption(real)  # our own account and region: drained

        async def real_one_drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == 1

        await eventually(real_one_drained, within=30)

        async def both_refused() -> bool:
            accounts = metric(
                service, "lifecycled_rejected_messages_total", reason="foreign_account"
            )
            regions = metric(service, "lifecycled_rejected_messages_total", reason="foreign_region")
            return accounts == 1 and regions == 1

        await eventually(both_refused)
        assert not await cordoned(stack, forged)
        assert metric(service, "lifecycled_notices_total", kind=SPOT) == 1


async def test_accepting_any_account_and_region_is_an_explicit_choice(
    stack: Stack, service_for
) -> None:
    sqs = stack.aws.boto3_client("sqs")
    instance = stack.machines[0].instance_id
    async with service_for(any_account_or_region=True) as service:
        body = forged_warning(stack, instance, account="999999999999", region="eu-west-9")
        sqs.send_message(QueueUrl=stack.queue.url, MessageBody=body)

        async def drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == 1

        await eventually(drained, within=30)
    assert await cordoned(stack, instance)


async def test_the_cluster_name_is_read_off_the_nodes_when_not_configured(
    stack: Stack, service_for
) -> None:
    """No LIFECYCLED_CLUSTER_NAME: the nodes' instances say `kubernetes.io/cluster/prod`, so
    an instance without that tag is not ours even though it resolves to a node here."""
    ec2 = stack.aws.boto3_client("ec2")
    stray, *ours = [m.instance_id for m in stack.machines]
    ec2.create_tags(Resources=ours, Tags=[{"Key": "kubernetes.io/cluster/prod", "Value": "owned"}])
    async with service_for() as service:
        stack.aws.send_spot_interruption(stray)
        stack.aws.send_spot_interruption(ours[0])

        async def ours_drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == 1

        await eventually(ours_drained, within=30)

        async def stray_refused() -> bool:
            return metric(service, "lifecycled_unknown_instances_total", kind=SPOT) == 1

        await eventually(stray_refused)
        assert service.settings.scope.cluster_name == "prod"
    assert not await cordoned(stack, stray)
    assert await cordoned(stack, ours[0])
