"""NTH's drain options: the eviction grace period override, the taint's key and effect."""

from __future__ import annotations

import time

from kubernetes_asyncio import client

from devstack.cluster import DEVSTACK
from tests.scenarios.conftest import Stack, eventually, metric, pods_on

SPOT = "spot_interruption"


async def slow_pod(stack: Stack, node: str, name: str) -> None:
    """A pod that ignores SIGTERM for 60 s, with a grace period of 90 s."""
    await client.CoreV1Api(stack.api).create_namespaced_pod(
        "default",
        {
            "metadata": {"name": name, "annotations": {DEVSTACK + "exit-seconds": "60"}},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 90,
                "containers": [{"name": "main", "image": "registry.example/app:1.0"}],
            },
        },
    )


async def test_pod_grace_seconds_and_the_taint_key_and_effect(stack: Stack, service_for) -> None:
    machine = stack.machines[0]
    node = stack.node_of[machine.instance_id]
    await slow_pod(stack, node, "slow")
    key = "aws-node-termination-handler/spot-itn"
    settings = {"pod_grace_seconds": 2, "taint_key": key, "taint_effect": "NoExecute"}
    async with service_for(**settings) as service:
        started = time.monotonic()
        stack.aws.send_spot_interruption(machine.instance_id)

        async def slow_pod_gone() -> bool:
            return "slow" not in [p.metadata.name for p in await pods_on(stack.api, node)]

        # Its own grace (90 s) and SIGTERM handling (60 s) would take 60 s; 2 s are given.
        await eventually(slow_pod_gone, within=40)
        assert time.monotonic() - started < 40

        async def drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == 1

        await eventually(drained, within=20)
        taints = (await client.CoreV1Api(stack.api).read_node(node)).spec.taints or []
        ours = [(t.key, t.effect, t.value) for t in taints if t.key == key]
        assert ours == [(key, "NoExecute", SPOT)]
        assert not [t for t in taints if t.key == "lifecycled.io/draining"]
