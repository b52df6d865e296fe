"""The only module that talks to AWS: aiobotocore clients behind small typed methods.

Endpoints, credentials and region follow botocore's own chain (AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_<SERVICE>, AWS_REGION, ...). botocore's "standard" retry mode retries
throttling and 5xx with backoff; what is left over becomes our Temporary/PermanentError.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from lifecycled.errors import NotFoundError, PermanentError, TemporaryError
from lifecycled.observe import Metrics
from lifecycled.settings import Settings

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


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    private_dns_name: str | None
    state: str | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class HookInfo:
    heartbeat_timeout: int
    global_timeout: int
    default_result: str


def translate(exc: Exception) -> Exception:
    """botocore's errors -> ours. Unknown client errors are permanent: retrying won't fix them."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"{code}: {error.get('Message', '')}"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TEMPORARY_CODES or status >= 500:
            return TemporaryError(message)
        if code in {"InvalidInstanceID.NotFound", "AWS.SimpleQueueService.NonExistentQueue"}:
            return NotFoundError(message)
        return PermanentError(message)
    if isinstance(exc, BotoCoreError):
        return TemporaryError(f"{type(exc).__name__}: {exc}")
    return exc


class AwsClients:
    """One client per service, opened for the life of the service."""

    def __init__(self, clients: dict[str, Any], metrics: Metrics) -> None:
        self._clients = clients
        self._metrics = metrics

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, metrics: Metrics, services: tuple[str, ...]
    ) -> AsyncIterator[AwsClients]:
        session = get_session()
        base = AioConfig(
            connect_timeout=settings.api_timeout_seconds,
            read_timeout=settings.api_timeout_seconds,
            retries={"mode": "standard", "max_attempts": 4},
        )
        # Long polls hold the connection for up to WaitTimeSeconds.
        sqs = base.merge(
            AioConfig(read_timeout=settings.sqs_wait_seconds + settings.api_timeout_seconds)
        )
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, Any] = {}
            for service in services:
                config = sqs if service == "sqs" else base
                clients[service] = await stack.enter_async_context(
                    session.create_client(  # type: ignore[call-overload]
                        service, region_name=settings.region, config=config
                    )
                )
            yield cls(clients, metrics)

    async def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._clients[service], operation)
        with self._metrics.api_call(service, operation):
            try:
                result: dict[str, Any] = await method(**params)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc) from exc
        return result

    # --- SQS -------------------------------------------------------------------------------

    async def receive(
        self, queue_url: str, *, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[QueueMessage]:
        reply = await self._call(
            "sqs",
            "receive_message",
            QueueUrl=queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m.get("Body", ""),
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in reply.get("Messages", [])
        ]

    async def delete_message(self, queue_url: str, receipt_handle: str) -> None:
        await self._call("sqs", "delete_message", QueueUrl=queue_url, ReceiptHandle=receipt_handle)

    async def change_visibility(self, queue_url: str, receipt_handle: str, seconds: int) -> None:
        await self._call(
            "sqs",
            "change_message_visibility",
            QueueUrl=queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=seconds,
        )

    async def has_dead_letter_queue(self, queue_url: str) -> bool:
        reply = await self._call(
            "sqs", "get_queue_attributes", QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]
        )
        return "RedrivePolicy" in reply.get("Attributes", {})

    async def send_message(
        self, queue_url: str, body: str, *, deduplication_id: str, group_id: str
    ) -> None:
        params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
        if queue_url.endswith(".fifo"):
            params["MessageDeduplicationId"] = deduplication_id[:128]
            params["MessageGroupId"] = group_id[:128]
        else:  # standard queues cannot deduplicate: the id travels for the consumer to check
            params["MessageAttributes"] = {
                "DeduplicationId": {"DataType": "String", "StringValue": deduplication_id}
            }
        await self._call("sqs", "send_message", **params)

    # --- EC2 -------------------------------------------------------------------------------

    async def describe_instance(self, instance_id: str) -> InstanceInfo | None:
        try:
            reply = await self._call("ec2", "describe_instances", InstanceIds=[instance_id])
        except NotFoundError:
            return None
        for reservation in reply.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                return InstanceInfo(
                    instance_id=inst["InstanceId"],
                    private_dns_name=inst.get("PrivateDnsName") or None,
                    state=inst.get("State", {}).get("Name"),
                    tags={t["Key"]: t["Value"] for t in inst.get("Tags", [])},
                )
        return None

    # --- Auto Scaling ----------------------------------------------------------------------

    async def describe_hook(self, group: str, hook: str) -> HookInfo | None:
        reply = await self._call(
            "autoscaling",
            "describe_lifecycle_hooks",
            AutoScalingGroupName=group,
            LifecycleHookNames=[hook],
        )
        for found in reply.get("LifecycleHooks", []):
            return HookInfo(
                heartbeat_timeout=int(found.get("HeartbeatTimeout", 3600)),
                global_timeout=int(found.get("GlobalTimeout", 172800)),
                default_result=str(found.get("DefaultResult", "ABANDON")),
            )
        return None

    async def record_heartbeat(self, group: str, hook: str, token: str, instance_id: str) -> None:
        await self._call(
            "autoscaling",
            "record_lifecycle_action_heartbeat",
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            LifecycleActionToken=token,
            InstanceId=instance_id,
        )

    async def complete_lifecycle_action(
        self, group: str, hook: str, token: str, instance_id: str, result: str
    ) -> None:
        await self._call(
            "autoscaling",
            "complete_lifecycle_action",
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            LifecycleActionToken=token,
            InstanceId=instance_id,
            LifecycleActionResult=result,
        )
