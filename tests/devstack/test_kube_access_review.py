"""SelfSubjectAccessReview, as kube-apiserver answers it, through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from devstack.kube import KubeApiServer
from lifecycled.clients.kube import KubeClient, load_configuration
from lifecycled.observe import Metrics


@pytest.fixture
async def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(controllers=False) as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


async def _review(verb: str, resource: str, **attrs: str) -> client.V1SelfSubjectAccessReview:
    configuration = await load_configuration()
    async with client.ApiClient(configuration) as api:
        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, resource=resource, **attrs
                )
            )
        )
        return await client.AuthorizationV1Api(api).create_self_subject_access_review(body)


async def test_everything_is_allowed_but_what_was_denied(kube: KubeApiServer) -> None:
    allowed = await _review("create", "pods", subresource="eviction")
    assert allowed.status.allowed is True
    assert allowed.spec.resource_attributes.subresource == "eviction"
    kube.deny("create", "pods", subresource="eviction")
    denied = await _review("create", "pods", subresource="eviction")
    assert denied.status.allowed is False and denied.status.reason
    # Only that verb on that subresource: the pods themselves are still allowed.
    assert (await _review("create", "pods")).status.allowed is True
    kube.deny("update", "leases", group="coordination.k8s.io")
    assert (await _review("update", "leases", group="coordination.k8s.io")).status.allowed is False
    assert (await _review("update", "leases")).status.allowed is True  # another group


async def test_the_service_client_asks(kube: KubeApiServer) -> None:
    async with KubeClient.open(Metrics(), 5.0) as kube_client:
        assert await kube_client.can("patch", "nodes")
        kube.deny("patch", "nodes")
        assert not await kube_client.can("patch", "nodes")
        assert await kube_client.can("get", "nodes")


async def test_a_namespace_or_a_name_can_be_refused(kube: KubeApiServer) -> None:
    kube.deny("create", "pods", namespace="batch")
    assert (await _review("create", "pods", namespace="batch")).status.allowed is False
    assert (await _review("create", "pods")).status.allowed is False  # not in every namespace
    assert (await _review("create", "pods", namespace="web")).status.allowed is True
    # A Role rule with resourceNames: only a review naming that object is allowed.
    kube.only_named("get", "leases", {"mine"}, group="coordination.k8s.io")
    lease = {"group": "coordination.k8s.io", "namespace": "kube-system"}
    assert (await _review("get", "leases", **lease)).status.allowed is False
    assert (await _review("get", "leases", name="other", **lease)).status.allowed is False
    assert (await _review("get", "leases", name="mine", **lease)).status.allowed is True
