"""Nodes are listed a page at a time (limit/continue), through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lifecycled.clients.kube as kube_module
from devstack.kube import KubeApiServer
from lifecycled.clients.kube import KubeClient
from lifecycled.observe import Metrics


@pytest.fixture
async def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(controllers=False) as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        for n in range(7):
            await server.add_node(f"node-{n}", instance_id=f"i-{n:017x}")
        yield server


async def test_every_node_is_listed_in_pages(
    kube: KubeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_module, "NODE_PAGE", 3)
    async with KubeClient.open(Metrics(), 5.0) as client:
        pages = [[n["metadata"]["name"] for n in page] async for page in client.node_pages()]
        everything = await client.list_nodes()
    assert [len(page) for page in pages] == [3, 3, 1]
    assert sorted(name for page in pages for name in page) == [f"node-{n}" for n in range(7)]
    assert len({n["metadata"]["name"] for n in everything}) == 7
    lists = [r for r in kube.requests if r.resource == "nodes" and r.verb == "list"]
    assert [r.query.get("limit") for r in lists] == ["3"] * 6
    assert sum(1 for r in lists if r.query.get("continue")) == 4
