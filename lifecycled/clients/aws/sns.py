"""SNS: drain notifications published to a topic (optional, `notify_sns_topic_arn`)."""

from __future__ import annotations

from lifecycled.clients.aws.base import ServiceClient

SUBJECT_LIMIT = 100  # SNS refuses longer subjects


class SnsClient(ServiceClient):
    service = "sns"

    async def publish(self, topic_arn: str, subject: str, message: str) -> None:
        await self._call(
            "publish", TopicArn=topic_arn, Subject=subject[:SUBJECT_LIMIT], Message=message
        )
