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
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
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
from lifecycled.pace import NORMAL, URGENT, RateLimiter
from lifecycled.retry import retry

JsonDict = dict[str, Any]
# The first calls on a notice's path (resolve, record, cordon): ahead of evictions and lists.
URGENT_OPERATIONS = frozenset({"read_node", "list_node", "patch_node"})
NODE_PAGE = 500  # nodes per list request
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")


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


def _no_proxy_lookups(api: client.ApiClient, configuration: client.Configuration) -> None:
    """The library's session reads proxy and netrc settings from the environment on every
    request (a thread-pool hop each, ~30% of a storm's profile); without a proxy configured
    there is nothing to look up."""
    if configuration.proxy or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return
    session = api.rest_client.pool_manager
    if hasattr(session, "_trust_env"):
        session._trust_env = False


class KubeClient:
    def __init__(
        self,
        api: client.ApiClient,
        metrics: Metrics,
        timeout: float,
        delays: Sequence[float] = (),
        limiter: RateLimiter | None = None,
    ) -> None:
        self.api = api  # for the library's leader election, which takes the ApiClient
        self._core = client.CoreV1Api(api)
        self._batch = client.BatchV1Api(api)
        self._metrics = metrics
        self._timeout = timeout
        self._delays = tuple(delays)
        self._limiter = limiter or RateLimiter(0, 1)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        metrics: Metrics,
        request_timeout: float,
        delays: Sequence[float] = (),
        *,
        limiter: RateLimiter | None = None,
        connections: int | None = None,
    ) -> AsyncIterator[KubeClient]:
        configuration = await load_configuration()
        if connections:
            configuration.connection_pool_maxsize = connections
        async with client.ApiClient(configuration) as api:
            _no_proxy_lookups(api, configuration)
            yield cls(api, metrics, request_timeout, delays, limiter)

    async def _request(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        never: tuple[type[TemporaryError], ...] = (ConflictError,),
        parse: bool = True,
        **kwargs: Any,
    ) -> JsonDict:
        async def once() -> JsonDict:
            return await self._once(operation, method, parse, *args, **kwargs)

        return await retry(once, delays=self._delays, what=operation, never=never)

    async def _once(
        self,
        operation: str,
        method: Callable[..., Awaitable[Any]],
        parse: bool,
        *args: Any,
        **kwargs: Any,
    ) -> JsonDict:
        """One call; `parse` False: the reply's body is not wanted (a storm's 20,000 pod
        patches would each parse a whole pod only to drop it)."""
        priority = URGENT if operation in URGENT_OPERATIONS else NORMAL
        waited = time.monotonic()
        await self._limiter.take(priority)
        self._metrics.kube_throttled.labels("urgent" if priority == URGENT else "normal").observe(
            time.monotonic() - waited
        )
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
                error = _error(response.status, body, response.headers)
                if isinstance(error, TooManyRequests) and operation != "create_pod_eviction":
                    self._limiter.pause(error.delay or 1.0)  # priority and fairness: back off
                raise error
            result: JsonDict = json.loads(body) if body and parse else {}
            return result

    # --- nodes -----------------------------------------------------------------------------

    async def get_node(self, name: str) -> JsonDict:
        return await self._request("read_node", self._core.read_node, name)

    async def node_pages(
        self, label_selector: str | None = None
    ) -> AsyncGenerator[list[JsonDict], None]:
        """The nodes, NODE_PAGE at a time (limit/continue, as client-go's informers list): a
        caller that keeps a slim copy of each never holds a large cluster's list whole."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": NODE_PAGE}
            kwargs |= {"label_selector": label_selector} if label_selector else {}
            kwargs |= {"_continue": token} if token else {}
            reply = await self._request("list_node", self._core.list_node, **kwargs)
            yield reply.get("items", [])
            token = (reply.get("metadata") or {}).get("continue")
            if not token:
                return

    async def list_nodes(self, label_selector: str | None = None) -> list[JsonDict]:
        return [node async for page in self.node_pages(label_selector) for node in page]

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

    async def evict(
        self, namespace: str, name: str, *, grace_seconds: int | None = None
    ) -> EvictOutcome:
        """grace_seconds: deleteOptions.gracePeriodSeconds; None: the pod's own."""
        body: JsonDict = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if grace_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_seconds}
        try:
            await self._request(
                "create_pod_eviction",
                self._core.create_namespaced_pod_eviction,
                name,
                namespace,
                body,
                never=(ConflictError, TooManyRequests),
                parse=False,
            )
        except NotFoundError:
            return EvictOutcome.GONE
        except TooManyRequests as exc:
            raise EvictionBlocked(str(exc), delay=exc.delay) from exc
        return EvictOutcome.EVICTED

    async def get_pod(self, namespace: str, name: str) -> JsonDict:
        return await self._request("read_pod", self._core.read_namespaced_pod, name, namespace)

    async def patch_pod(self, namespace: str, name: str, patch: JsonDict) -> None:
        await self._request(
            "patch_pod", self._core.patch_namespaced_pod, name, namespace, patch, parse=False
        )

    async def create_pod(self, namespace: str, body: JsonDict) -> JsonDict:
        return await self._request("create_pod", self._core.create_namespaced_pod, namespace, body)

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self._request(
            "delete_pod", self._core.delete_namespaced_pod, name, namespace, parse=False
        )

    # --- jobs ------------------------------------------------------------------------------

    async def get_job(self, namespace: str, name: str) -> JsonDict:
        return await self._request("read_job", self._batch.read_namespaced_job, name, namespace)

    async def patch_job(self, namespace: str, name: str, patch: JsonDict) -> None:
        await self._request(
            "patch_job", self._batch.patch_namespaced_job, name, namespace, patch, parse=False
        )

    async def create_job(self, namespace: str, body: JsonDict) -> JsonDict:
        return await self._request("create_job", self._batch.create_namespaced_job, namespace, body)

    # --- events ----------------------------------------------------------------------------

    async def can(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        subresource: str = "",
        namespace: str = "",
        name: str = "",
    ) -> bool:
        """Whether our account may `verb` the resource (SelfSubjectAccessReview; `lifecycled
        check`). Namespace "": in every namespace; name "": any object (a Role's rule with
        resourceNames allows only a review that names one of them)."""
        attributes = {"verb": verb, "group": group, "resource": resource}
        attributes |= {"subresource": subresource} if subresource else {}
        attributes |= {"namespace": namespace} if namespace else {}
        attributes |= {"name": name} if name else {}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview"}
        body["spec"] = {"resourceAttributes": attributes}  # type: ignore[assignment]
        api = client.AuthorizationV1Api(self.api)
        reply = await self._request(
            "create_self_subject_access_review", api.create_self_subject_access_review, body
        )
        return bool((reply.get("status") or {}).get("allowed"))

    async def create_event(self, namespace: str, event: JsonDict) -> None:
        await self._request(
            "create_event", self._core.create_namespaced_event, namespace, event, parse=False
        )

    async def patch_event(self, namespace: str, name: str, patch: JsonDict) -> None:
        """An aggregated event: its count, last timestamp and newest message."""
        await self._request(
            "patch_event", self._core.patch_namespaced_event, name, namespace, patch, parse=False
        )
