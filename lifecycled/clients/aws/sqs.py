"""SQS: the notice queue (long polls, visibility, forwarding) and the requeue queues."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lifecycled.clients.aws.base import ServiceClient
from lifecycled.errors import PermanentError, TemporaryError

# How many times a message was passed on to other clusters' handlers (a shared queue).
FORWARDS_ATTRIBUTE = "lifecycled-forwards"
# On a rejected message moved to the dead-letter queue: why, and its id in the notice queue.
REJECTED_ATTRIBUTE = "lifecycled-rejected"
SOURCE_ID_ATTRIBUTE = "lifecycled-source-message-id"


@dataclass(frozen=True, slots=True)
class Redrive:
    max_receive_count: int
    dead_letter_url: str | None  # None: the policy names no queue we can address


def dead_letter_url(queue_url: str, arn: str) -> str | None:
    """`arn:aws:sqs:REGION:ACCOUNT:NAME` -> the queue's URL on the same endpoint as `queue_url`
    (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or a local endpoint's form)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs" or not parts[4] or not parts[5]:
        return None
    base = queue_url.rstrip("/").rsplit("/", 2)[0]
    region = queue_url_region(queue_url)
    if region is not None and region != parts[3]:
        base = base.replace(f".{region}.", f".{parts[3]}.")
    return f"{base}/{parts[4]}/{parts[5]}"


def queue_url_region(queue_url: str) -> str | None:
    host = queue_url.split("://", 1)[-1].split("/", 1)[0]
    labels = host.split(".")
    return labels[1] if len(labels) > 2 and labels[0] == "sqs" else None


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

    async def attributes(self, queue_url: str) -> dict[str, str]:
        """All the queue's attributes (`lifecycled check`)."""
        reply = await self._call("get_queue_attributes", QueueUrl=queue_url, AttributeNames=["All"])
        return {str(k): str(v) for k, v in reply.get("Attributes", {}).items()}

    async def has_dead_letter_queue(self, queue_url: str) -> bool:
        return (await self.redrive(queue_url)) is not None

    async def max_receive_count(self, queue_url: str) -> int | None:
        """The redrive policy's maxReceiveCount; None when the queue has no dead-letter queue."""
        policy = await self.redrive(queue_url)
        return policy.max_receive_count if policy is not None else None

    async def redrive(self, queue_url: str) -> Redrive | None:
        """The queue's redrive policy; None when it has no dead-letter queue."""
        reply = await self._call(
            "get_queue_attributes", QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]
        )
        text = reply.get("Attributes", {}).get("RedrivePolicy")
        if text is None:
            return None
        try:
            policy = json.loads(text)
            return Redrive(
                int(policy.get("maxReceiveCount", 1)),
                dead_letter_url(queue_url, str(policy.get("deadLetterTargetArn", ""))),
            )
        except (ValueError, TypeError, AttributeError):
            return Redrive(1, None)  # unreadable: assume the strictest policy

    async def delete_batch(
        self, queue_url: str, receipt_handles: list[str]
    ) -> list[Exception | None]:
        """DeleteMessageBatch (up to 10); one result per handle: None, or that entry's error."""
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles)]
        reply = await self._call("delete_message_batch", QueueUrl=queue_url, Entries=entries)
        return _per_entry(reply, len(entries))

    async def move_aside_batch(
        self, dead_letter_url: str, rejected: list[tuple[QueueMessage, str]]
    ) -> list[Exception | None]:
        """Copies of rejected messages into the dead-letter queue, each with why (up to 10);
        the caller then deletes the originals. The evidence is kept without the bodies being
        received again. One result per message: None, or that entry's error."""
        entries = []
        for i, (message, reason) in enumerate(rejected):
            entry: dict[str, Any] = {
                "Id": str(i),
                "MessageBody": message.body or "(empty)",
                "MessageAttributes": {
                    REJECTED_ATTRIBUTE: {"DataType": "String", "StringValue": reason},
                    SOURCE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message.message_id},
                },
            }
            if dead_letter_url.endswith(".fifo"):
                entry["MessageDeduplicationId"] = message.message_id[:128]
                entry["MessageGroupId"] = "rejected"
            entries.append(entry)
        reply = await self._call("send_message_batch", QueueUrl=dead_letter_url, Entries=entries)
        return _per_entry(reply, len(entries))

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


def _per_entry(reply: dict[str, Any], count: int) -> list[Exception | None]:
    results: list[Exception | None] = [None] * count
    for failed in reply.get("Failed", []):
        error = f"{failed.get('Code')}: {failed.get('Message', '')}"
        sender = bool(failed.get("SenderFault"))
        results[int(failed["Id"])] = PermanentError(error) if sender else TemporaryError(error)
    return results


def _forwards(message: dict[str, Any]) -> int:
    value = message.get("MessageAttributes", {}).get(FORWARDS_ATTRIBUTE, {}).get("StringValue")
    try:
        return max(0, int(value)) if value is not None else 0
    except ValueError:
        return 0
