"""SNS envelopes: `{"Type": "Notification", "TopicArn": ..., "Message": "<json>"}`.

A queue subscribed to a topic without raw message delivery receives this envelope; with
raw delivery it receives the inner message alone (and the router never comes here). The
inner `Message` is decoded under the same size, depth and duplicate-key limits as a body.
"""

from __future__ import annotations

from lifecycled.events.context import Envelope
from lifecycled.events.decode import JsonObject, decode_json
from lifecycled.events.fields import Reject, arn_region_account, clip, opt_str
from lifecycled.events.result import Rejected, RejectReason

NOTIFICATION = "Notification"


def is_envelope(obj: JsonObject) -> bool:
    return "Type" in obj and "TopicArn" in obj


def unwrap(obj: JsonObject) -> tuple[JsonObject, Envelope]:
    """The decoded inner message and the envelope's fallbacks; raises `Reject`."""
    kind = opt_str(obj, "Type", "SNS envelope")
    if kind != NOTIFICATION:
        # e.g. a SubscriptionConfirmation: someone must confirm it out of band.
        shown = clip(kind) if kind is not None else "null"
        raise Reject(RejectReason.BAD_SNS_ENVELOPE, f"SNS message of Type {shown} is not a notice")
    envelope = Envelope(opt_str(obj, "MessageId", "SNS envelope"), *_topic(obj))
    inner = decode_json(_message(obj), where="SNS Message")
    if isinstance(inner, Rejected):
        raise Reject(inner.reason, inner.detail)
    if is_envelope(inner):
        raise Reject(RejectReason.BAD_SNS_ENVELOPE, "SNS Message is itself an SNS envelope")
    return inner, envelope


def _message(obj: JsonObject) -> str:
    message = obj.get("Message")
    if message is None or message == "":
        raise Reject(RejectReason.BAD_SNS_ENVELOPE, "SNS envelope has no Message")
    if not isinstance(message, str):
        raise Reject(RejectReason.WRONG_TYPE, "SNS envelope.Message is not a string")
    return message


def _topic(obj: JsonObject) -> tuple[str | None, str | None]:
    arn = opt_str(obj, "TopicArn", "SNS envelope")
    where = arn_region_account(arn, "sns") if arn is not None else None
    if where is None:
        raise Reject(RejectReason.BAD_SNS_ENVELOPE, "SNS envelope.TopicArn is not an SNS topic ARN")
    return where
