"""Fixtures for the embedded Kubernetes API server tests: a server plus a real
kubernetes_asyncio client loaded from the kubeconfig the server writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config

from devstack.kube import KubeApiServer

T = TypeVar("T")


@dataclass
class Kube:
    server: KubeApiServer
    api: client.ApiClient
    kubeconfig: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def policy(self) -> client.PolicyV1Api:
        return client.PolicyV1Api(self.api)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)


async def connect(server: KubeApiServer, directory: Path) -> tuple[client.ApiClient, Path]:
    path = server.write_kubeconfig(directory / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    return client.ApiClient(configuration), path


async def _kube(tmp_path: Path, controllers: bool) -> AsyncIterator[Kube]:
    async with KubeApiServer(controllers=controllers, tick=0.02) as server:
        api, path = await connect(server, tmp_path)
        async with api:
            yield Kube(server, api, path)


@pytest_asyncio.fixture
async def kube(tmp_path: Path) -> AsyncIterator[Kube]:
    """Server with controllers running (scheduler, kubelet, workload controllers...)."""
    async for k in _kube(tmp_path, True):
        yield k


@pytest_asyncio.fixture
async def kube_static(tmp_path: Path) -> AsyncIterator[Kube]:
    """Server with no controllers: the store changes only when a client writes."""
    async for k in _kube(tmp_path, False):
        yield k


async def eventually(
    check: Callable[[], Awaitable[T]], within: float = 5.0, interval: float = 0.02
) -> T:
    """Retry `check` (which raises AssertionError until it holds) and return its result."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


def status_body(exc: Any) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(exc.body)
    return body


__all__ = [
    "Kube",
    "connect",
    "eventually",
    "kube",
    "kube_static",
    "pytest",
    "running_pod",
    "status_body",
]


async def running_pod(
    k: Kube,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    phase: str = "Running",
    namespace: str = "default",
    **pod_args: Any,
) -> None:
    """Seed a pod bound to a node with the given status (for servers without controllers)."""
    from devstack.kube import builders

    pod_args.setdefault("node_name", "n1")
    await k.server.add_object(builders.pod(name, namespace=namespace, labels=labels, **pod_args))
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]}
    await k.server.patch_object("pods", name, {"status": status}, namespace, subresource="status")
