"""The embedded stack for scenario tests: moto's server + the Kubernetes emulator, and the
real service (`app.running`) pointed at them through the ecosystems' own settings."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from devstack.aws import AwsStack
from devstack.cluster import Machine, Workloads, seed, wait_running
from devstack.kube import KubeApiServer
from lifecycled.app import Service, running
from lifecycled.clients.kube import load_configuration
from lifecycled.settings import Settings

_names = itertools.count()


@pytest.fixture(scope="session")
def aws() -> Iterator[AwsStack]:
    with AwsStack() as stack:
        yield stack


@pytest.fixture
def aws_env(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> AwsStack:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    return aws


@pytest.fixture
async def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer() as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(path))
        yield server


@pytest.fixture
async def api(kube: KubeApiServer) -> AsyncIterator[client.ApiClient]:
    configuration = await load_configuration()
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@dataclass
class Stack:
    aws: AwsStack
    kube: KubeApiServer
    api: client.ApiClient
    queue: Any
    group: str
    machines: list[Machine]
    node_of: dict[str, str]

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queue_url": self.queue.url,
            "metrics_address": "127.0.0.1:0",
            "sqs_wait_seconds": 1,
            "drain_poll_seconds": 0.2,
            "eviction_retry_seconds": 0.3,
            "retry_delays": (0.1, 0.2, 0.5),
            "shutdown_grace_seconds": 2,
        }
        values.update(overrides)
        return Settings(**values)


async def build_stack(
    aws: AwsStack,
    kube: KubeApiServer,
    api: client.ApiClient,
    *,
    size: int,
    workloads: Workloads,
    heartbeat_timeout: int = 300,
    tags: dict[str, str] | None = None,
) -> Stack:
    n = next(_names)
    queue = aws.create_queue(f"notices-{n}", dlq=True, max_receive_count=2)
    aws.route_events_to(queue)
    group = f"workers-{n}"
    instances = aws.create_group(group, size=size, heartbeat_timeout=heartbeat_timeout, tags=tags)
    machines = [Machine(i.id, i.private_dns_name, i.az) for i in instances]
    await seed(api, machines, workloads)
    expected = size + workloads.web_replicas + workloads.api_replicas + workloads.job_parallelism
    assert await wait_running(api, expected, within=30) >= expected
    return Stack(
        aws,
        kube,
        api,
        queue,
        group,
        machines,
        {m.instance_id: m.private_dns_name for m in machines},
    )


SMALL = Workloads(
    web_replicas=6,
    web_max_unavailable=1,
    api_replicas=8,
    job_parallelism=0,
    exit_seconds=0.3,
    grace_seconds=5,
)


@pytest.fixture
async def stack(aws_env: AwsStack, kube: KubeApiServer, api: client.ApiClient) -> Stack:
    return await build_stack(aws_env, kube, api, size=4, workloads=SMALL)


@pytest.fixture
def service_for(stack: Stack) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        return running(stack.settings(**overrides))

    return make


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 20.0, every: float = 0.1
) -> None:
    end = time.monotonic() + within
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {within}s: {check.__name__}")
        await asyncio.sleep(every)


def metric(service: Service, name: str, **labels: str) -> float:
    registry: CollectorRegistry = service.metrics.registry
    value = registry.get_sample_value(name, labels)
    return value or 0.0


async def pods_on(api: client.ApiClient, node: str) -> list[Any]:
    core = client.CoreV1Api(api)
    reply = await core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
    return list(reply.items)


def owner_kind(pod: Any) -> str | None:
    refs = pod.metadata.owner_references or []
    return refs[0].kind if refs else None
