"""The only module that talks to Kubernetes: kubernetes_asyncio behind small methods.

Every call retries temporary errors (5xx, 429 with its Retry-After, timeouts, resets) with
the settings' delays: all of them are safe to repeat (reads; patches; creates whose
AlreadyExists is success; deletes whose NotFound is success). Not retried here: 409 (the
caller must read again) and the eviction API's 429 (a disruption budget: the drain loop
comes back to it).

Objects are plain JSON dicts: we read and patch a handful of fields, and the generated
models would cost a full (de)serialisation of every pod on every poll.
Configuration follows the ecosystem: KUBECONFIG / ~/.kube/config, else the in-cluster account.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config

from lifecycled.errors import (
    AlreadyExistsError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TemporaryError,
)
from lifecycled.observe import Metrics
from lifecycled.retry import retry

JsonDict = dict[str, Any]


class EvictionBlocked(TemporaryError):
    """429 from the eviction API: a PodDisruptionBudget does not allow it now."""


class TooManyRequests(TemporaryError):
    """HTTP 429: throttled (API priority and fairness), or, from the eviction API, a budget."""


class EvictOutcome(enum.StrEnum):
    EVICTED = "evicted"
    GONE = "gone"


def _error(status: int, body: bytes, headers: Any) -> Exception:
    try:
        status_body = json.loads(body)
        message = str(status_body.get("message", ""))[:300]
        reason = str(status_body.get("reason", ""))
    except (ValueError, AttributeError):
        message, reason = body[:300].decode("utf-8", "replace"), ""
    text = f"HTTP {status}: {message}"
    retry_after = headers.get("Retry-After") if headers is not None else None
    delay = float(retry_after) if retry_after and retry_after.isdigit() else None
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        return AlreadyExistsError(text) if reason == "AlreadyExists" else ConflictError(text)
    if status == 429:
        return TooManyRequests(text, delay=delay)
    if status >= 500:
        return TemporaryError(text, delay=delay)
    return PermanentError(text)


def kubeconfig_path() -> str | None:
    """KUBECONFIG (read now: the library reads it once, at import), else ~/.kube/config."""
    explicit = os.environ.get("KUBECONFIG")
    if explicit:
        return explicit
    default = os.path.expanduser("~/.kube/config")
    return default if os.path.exists(default) else None


async def load_configuration() -> client.Configuration:
    """The kubeconfig, else the in-cluster account; neither is a ConfigError (one line)."""
    configuration = client.Configuration()
    path = kubeconfig_path()
    try:
        if path:
            await config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as exc:
        where = f"kubeconfig {path}" if path else "the in-cluster service account (no KUBECONFIG)"
        raise ConfigError(f"cannot load {where}: {exc}") from exc
    return configuration


class KubeClient:
    def __init__(
        self,
        api: client.ApiClient,
        metrics: Metrics,
        timeout: float,
        delays: Sequence[float] = (),
    ) -> None:
        self.api = api  # for the library's leader election, which takes the ApiClient
        self._core = client.CoreV1Api(api)
        self._batch = client.BatchV1Api(api)
        self._metrics = metrics
        self._timeout = timeout
        self._delays = tuple(delays)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, metrics: Metrics, request_timeout: float, delays: Sequence[float] = ()
    ) -> AsyncIterator[KubeClient]:
        configuration = await load_configuration()
        async with client.ApiClient(configuration) as api:
            yield cls(api, metrics, request_timeout, delays)

    async def _request(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        never: tuple[type[TemporaryError], ...] = (ConflictError,),
        **kwargs: Any,
    ) -> JsonDict:
        async def once() -> JsonDict:
            return await self._once(operation, method, *args, **kwargs)

        return await retry(once, delays=self._delays, what=operation, never=never)

    async def _once(
        self, operation: str, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> JsonDict:
        with self._metrics.api_call("kubernetes", operation):
            try:
                response = await method(
                    *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
                )
                try:
                    body = await response.read()
                finally:
                    response.release()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TemporaryError(f"{operation}: {type(exc).__name__}: {exc}") from exc
            if not 200 <= response.status < 300:
                raise _error(response.status, body, response.headers)
            result: JsonDict = json.loads(body) if body else {}
            return result

    # --- nodes -----------------------------------------------------------------------------

    async def get_node(self, name: str) -> JsonDict:
        return await self._request("read_node", self._core.read_node, name)

    async def list_nodes(self, label_selector: str | None = None) -> list[JsonDict]:
        kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        reply = await self._request("list_node", self._core.list_node, **kwargs)
        items: list[JsonDict] = reply.get("items", [])
        return items

    async def patch_node(self, name: str, patch: JsonDict) -> JsonDict:
        """Strategic-merge patch; put metadata.resourceVersion in it for a precondition."""
        return await self._request("patch_node", self._core.patch_node, name, patch)

    # --- pods ------------------------------------------------------------------------------

    async def list_pods_on_node(self, node: str) -> list[JsonDict]:
        reply = await self._request(
            "list_pod",
            self._core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={node}",
        )
        items: list[JsonDict] = reply.get("items", [])
        return items

    async def evict(self, namespace: str, name: str) -> EvictOutcome:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        try:
            await self._request(
                "create_pod_eviction",
                self._core.create_namespaced_pod_eviction,
                name,
                namespace,
                body,
                never=(ConflictError, TooManyRequests),
            )
        except NotFoundError:
            return EvictOutcome.GONE
        except TooManyRequests as exc:
            raise EvictionBlocked(str(exc), delay=exc.delay) from exc
        return EvictOutcome.EVICTED

    async def get_pod(self, namespace: str, name: str) -> JsonDict:
        return await self._request("read_pod", self._core.read_namespaced_pod, name, namespace)

    async def patch_pod(self, namespace: str, name: str, patch: JsonDict) -> JsonDict:
        return await self._request(
            "patch_pod", self._core.patch_namespaced_pod, name, namespace, patch
        )

    async def create_pod(self, namespace: str, body: JsonDict) -> JsonDict:
        return await self._request("create_pod", self._core.create_namespaced_pod, namespace, body)

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self._request("delete_pod", self._core.delete_namespaced_pod, name, namespace)

    # --- jobs ------------------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> JsonDict:
        return await self._request("read_job", self._batch.read_namespaced_job, name, namespace)

    async def patch_job(self, namespace: str, name: str, patch: JsonDict) -> JsonDict:
        return await self._request(
            "patch_job", self._batch.patch_namespaced_job, name, namespace, patch
        )

    async def create_job(self, namespace: str, body: JsonDict) -> JsonDict:
        return await self._request("create_job", self._batch.create_namespaced_job, namespace, body)

    # --- events ----------------------------------------------------------------------------

    async def create_event(self, namespace: str, event: JsonDict) -> None:
        await self._request("create_event", self._core.create_namespaced_event, namespace, event)

    async def patch_event(self, namespace: str, name: str, patch: JsonDict) -> None:
        """An aggregated event: its count, last timestamp and newest message."""
        await self._request(
            "patch_event", self._core.patch_namespaced_event, name, namespace, patch
        )
