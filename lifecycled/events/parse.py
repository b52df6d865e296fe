"""`parse_message`: one SQS message body in, a `Notice`, `Ignored` or `Rejected` out.

Pure (no I/O, no clock) and total: it never raises.
"""

from __future__ import annotations

from lifecycled.events import asg, eventbridge, sns
from lifecycled.events.context import NO_ENVELOPE, Envelope
from lifecycled.events.decode import JsonObject, decode_json
from lifecycled.events.fields import Reject
from lifecycled.events.result import Ignored, Rejected, RejectReason
from lifecycled.model import Notice


def parse_message(body: str | bytes) -> Notice | Ignored | Rejected:
    try:
        return _parse(body)
    except Reject as problem:
        return problem.rejected
    except Exception:
        # A parser bug must not stop the consumer loop: the message goes to the DLQ as
        # evidence instead. Tests assert this branch is never reached.
        return Rejected(RejectReason.UNKNOWN_FORMAT, "internal parser error")


def _parse(body: str | bytes) -> Notice | Ignored | Rejected:
    obj = decode_json(body)
    if isinstance(obj, Rejected):
        return obj
    if sns.is_envelope(obj):
        inner, envelope = sns.unwrap(obj)
        return _route(inner, envelope)
    return _route(obj, NO_ENVELOPE)


def _route(obj: JsonObject, envelope: Envelope) -> Notice | Ignored:
    if eventbridge.is_event(obj):
        return eventbridge.parse_event(obj, envelope)
    if asg.is_direct(obj):
        return asg.parse_direct(obj, envelope)
    raise Reject(
        RejectReason.UNKNOWN_FORMAT,
        "neither an EventBridge event, an SNS notification nor an Auto Scaling message",
    )
