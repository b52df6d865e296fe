"""What every AWS service client shares: the session and its config, the metrics around each
call, and the one translation of botocore's errors into ours.

Endpoints, credentials and region follow botocore's own chain (AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_<SERVICE>, AWS_REGION, ...). botocore's "standard" retry mode retries
throttling and 5xx with backoff; what is left over becomes our Temporary/PermanentError.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from lifecycled.errors import ConfigError, NotFoundError, PermanentError, TemporaryError
from lifecycled.observe import Metrics
from lifecycled.settings import Settings

T = TypeVar("T")

# Service models cut down to the operations we call (tools/aws_models.py): EC2's whole
# model costs ~15 MiB for one operation. botocore reads its data path before its own.
TRIMMED_MODELS = Path(__file__).resolve().parent / "models"

TEMPORARY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "AWS.SimpleQueueService.NonExistentQueue",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
    }
)


# A service's own permanent errors: (error code, message) -> a PermanentError subclass, or None.
Classify = Callable[[str, str], type[PermanentError] | None]


MISSING_CONFIGURATION = (NoCredentialsError, PartialCredentialsError, NoRegionError)


def translate(exc: Exception, classify: Classify | None = None) -> Exception:
    """botocore's errors -> ours. Unknown client errors are permanent: retrying won't fix them.
    `classify` may name a more specific permanent error for a service's own codes."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        detail = str(error.get("Message", ""))
        message = f"{code}: {detail}"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TEMPORARY_CODES or status >= 500:
            return TemporaryError(message)
        specific = classify(code, detail) if classify is not None else None
        if specific is not None:
            return specific(message)
        if code in NOT_FOUND_CODES:
            return NotFoundError(message)
        return PermanentError(message)
    if isinstance(exc, MISSING_CONFIGURATION):
        return ConfigError(f"AWS: {exc}")  # no retry fixes these: exit with its code
    if isinstance(exc, BotoCoreError):
        return TemporaryError(f"{type(exc).__name__}: {exc}")
    return exc


class ServiceClient:
    """One AWS service's client: `_call(operation, **params)` -> the reply, timed and counted,
    its errors translated. `client` is None when the service was not opened (KeyError)."""

    service: ClassVar[str]

    def __init__(self, client: Any | None, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    def classify(self, code: str, message: str) -> type[PermanentError] | None:
        """A specific error for a client error `code` of this service; None: the generic one."""
        return None

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        if self._client is None:
            raise KeyError(self.service)
        method = getattr(self._client, operation)
        with self._metrics.api_call(self.service, operation):
            try:
                result: dict[str, Any] = await method(**params)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, self.classify) from exc
        return result


@contextlib.asynccontextmanager
async def open_clients(
    settings: Settings, services: tuple[str, ...]
) -> AsyncIterator[dict[str, Any]]:
    """aiobotocore clients for `services`, by service name, open until the context ends."""
    session = get_session()
    _add_trimmed_models(session)
    region = region_of(settings)
    # A connection per notice handled at once (botocore's default is 10: a storm's calls
    # would queue for one inside the call's timeout).
    base = AioConfig(
        connect_timeout=settings.calls.timeout_seconds,
        read_timeout=settings.calls.timeout_seconds,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=max(10, settings.queue.concurrency),
    )
    # Long polls hold their connections for up to WaitTimeSeconds: those come on top.
    sqs = base.merge(
        AioConfig(
            read_timeout=settings.queue.wait_seconds + settings.calls.timeout_seconds,
            max_pool_connections=settings.queue.receivers + max(10, settings.queue.concurrency),
        )
    )
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, Any] = {}
        for service in services:
            config = sqs if service == "sqs" else base
            try:
                clients[service] = await stack.enter_async_context(
                    session.create_client(  # type: ignore[call-overload]
                        service, region_name=region, config=config
                    )
                )
            except NoRegionError as exc:
                raise ConfigError(f"AWS: {exc} (set LIFECYCLED_REGION or AWS_REGION)") from exc
        yield clients


def _add_trimmed_models(session: Any) -> None:
    """Our trimmed models after the user's own data path (AWS_DATA_PATH), if any."""
    theirs = session.get_config_variable("data_path")
    paths = [p for p in (theirs, str(TRIMMED_MODELS)) if p]
    session.set_config_variable("data_path", os.pathsep.join(paths))


def region_of(settings: Settings) -> str | None:
    """LIFECYCLED_REGION, else AWS_REGION (what the other SDKs and EKS's webhooks set, and
    botocore alone ignores), else None: botocore's chain (AWS_DEFAULT_REGION, config file)."""
    return settings.scope.region or os.environ.get("AWS_REGION") or None


def region_known(settings: Settings) -> bool:
    return bool(region_of(settings) or get_session().get_config_variable("region"))


def page(token: str | None) -> dict[str, str]:
    return {"nextToken": token} if token else {}


def batches(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
