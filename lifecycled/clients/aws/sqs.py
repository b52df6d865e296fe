"""SQS: the notice queue (long polls, visibility, forwarding) and the requeue queues."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lifecycled.clients.aws.base import ServiceClient

# How many times a message was passed on to other clusters' handlers (a shared queue).
FORWARDS_ATTRIBUTE = "lifecycled-forwards"


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    forwards: int = 0  # FORWARDS_ATTRIBUTE


class SqsClient(ServiceClient):
    service = "sqs"

    async def receive(
        self, queue_url: str, *, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[QueueMessage]:
        reply = await self._call(
            "receive_message",
            QueueUrl=queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=[FORWARDS_ATTRIBUTE],
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m.get("Body", ""),
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                forwards=_forwards(m),
            )
            for m in reply.get("Messages", [])
        ]

    async def delete_message(self, queue_url: str, receipt_handle: str) -> None:
        await self._call("delete_message", QueueUrl=queue_url, ReceiptHandle=receipt_handle)

    async def change_visibility(self, queue_url: str, receipt_handle: str, seconds: int) -> None:
        await self._call(
            "change_message_visibility",
            QueueUrl=queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=seconds,
        )

    async def has_dead_letter_queue(self, queue_url: str) -> bool:
        return await self.max_receive_count(queue_url) is not None

    async def max_receive_count(self, queue_url: str) -> int | None:
        """The redrive policy's maxReceiveCount; None when the queue has no dead-letter queue."""
        reply = await self._call(
            "get_queue_attributes", QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]
        )
        policy = reply.get("Attributes", {}).get("RedrivePolicy")
        if policy is None:
            return None
        try:
            return int(json.loads(policy).get("maxReceiveCount", 1))
        except (ValueError, TypeError, AttributeError):
            return 1  # unreadable: assume the strictest policy

    async def forward_message(
        self, queue_url: str, body: str, *, forwards: int, delay_seconds: int
    ) -> None:
        """A fresh copy of a message (receive count 0) for another consumer of the queue."""
        await self._call(
            "send_message",
            QueueUrl=queue_url,
            MessageBody=body,
            DelaySeconds=min(delay_seconds, 900),
            MessageAttributes={
                FORWARDS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(forwards)}
            },
        )

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
        await self._call("send_message", **params)


def _forwards(message: dict[str, Any]) -> int:
    value = message.get("MessageAttributes", {}).get(FORWARDS_ATTRIBUTE, {}).get("StringValue")
    try:
        return max(0, int(value)) if value is not None else 0
    except ValueError:
        return 0
