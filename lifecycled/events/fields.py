"""Typed access to decoded JSON objects, failing with a short, bounded reason.

Parsers call these helpers and let `Reject` carry the first problem out; `parse_message`
turns it into a `Rejected`. Details name our own field paths, never large body values.
"""

from __future__ import annotations

from datetime import datetime

from lifecycled.events.decode import JsonObject
from lifecycled.events.result import Rejected, RejectReason
from lifecycled.events.times import parse_time
from lifecycled.model import INSTANCE_ID_RE, InstanceId

# Names, tokens and ids are short in practice (ASG and hook names: 255 characters).
MAX_FIELD_CHARS = 512


class Reject(Exception):
    """Internal: the first reason a message cannot be a notice."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.rejected = Rejected(reason, detail)


def clip(value: str, limit: int = 40) -> str:
    """A short, printable quote of an untrusted value for a detail string."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)


def req_str(obj: JsonObject, key: str, where: str) -> str:
    value = opt_str(obj, key, where)
    if value is None or value == "":
        raise Reject(RejectReason.MISSING_FIELD, f"{where}.{key} is missing or empty")
    return value


def opt_str(obj: JsonObject, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Reject(RejectReason.WRONG_TYPE, f"{where}.{key} is not a string")
    if len(value) > MAX_FIELD_CHARS:
        raise Reject(RejectReason.WRONG_TYPE, f"{where}.{key} is longer than {MAX_FIELD_CHARS}")
    return value


def req_obj(obj: JsonObject, key: str, where: str) -> JsonObject:
    value = obj.get(key)
    if value is None:
        raise Reject(RejectReason.MISSING_FIELD, f"{where}.{key} is missing")
    if not isinstance(value, dict):
        raise Reject(RejectReason.WRONG_TYPE, f"{where}.{key} is not an object")
    return value


def req_list(obj: JsonObject, key: str, where: str) -> list[object]:
    value = obj.get(key)
    if value is None:
        raise Reject(RejectReason.MISSING_FIELD, f"{where}.{key} is missing")
    if not isinstance(value, list):
        raise Reject(RejectReason.WRONG_TYPE, f"{where}.{key} is not an array")
    return value


def req_time(obj: JsonObject, key: str, where: str) -> datetime:
    value = req_str(obj, key, where)
    moment = parse_time(value)
    if moment is None:
        raise Reject(RejectReason.BAD_TIME, f"{where}.{key} is not an RFC 3339/1123 time")
    return moment


def instance_id(value: str, where: str) -> InstanceId:
    if INSTANCE_ID_RE.fullmatch(value) is None:
        raise Reject(RejectReason.BAD_INSTANCE_ID, f"{where} is not an instance id: {clip(value)}")
    return InstanceId(value)


def req_instance_id(obj: JsonObject, key: str, where: str) -> InstanceId:
    return instance_id(req_str(obj, key, where), f"{where}.{key}")


def arn_region_account(arn: str, service: str) -> tuple[str | None, str | None] | None:
    """(region, account) of an ARN of `service`, or None when `arn` is not one.

    Used only for where a message was sent from (SNS topic, Auto Scaling group), never
    for instance ids.
    """
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != service or not parts[5]:
        return None
    return parts[3] or None, parts[4] or None
