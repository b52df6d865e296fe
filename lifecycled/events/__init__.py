"""Event parsing: message bodies in, typed notices out. Pure; no AWS calls."""

from lifecycled.events.actions import default_action
from lifecycled.events.decode import MAX_BODY_BYTES, MAX_CONTAINERS, MAX_DEPTH, MAX_MEMBERS
from lifecycled.events.model import (
    INSTANCE_ID_RE,
    Action,
    Ignored,
    IgnoreReason,
    InstanceId,
    LifecycleAction,
    Notice,
    NoticeKind,
    ParseResult,
    Rejected,
    RejectReason,
)
from lifecycled.events.parse import parse_message
from lifecycled.events.scope import check_scope

__all__ = [
    "INSTANCE_ID_RE",
    "MAX_BODY_BYTES",
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "MAX_MEMBERS",
    "Action",
    "IgnoreReason",
    "Ignored",
    "InstanceId",
    "LifecycleAction",
    "Notice",
    "NoticeKind",
    "ParseResult",
    "RejectReason",
    "Rejected",
    "check_scope",
    "default_action",
    "parse_message",
]
