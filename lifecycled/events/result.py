"""The typed result of parsing one message: a Notice, an Ignored or a Rejected.

Every source (SQS, instance metadata) produces these; nothing downstream knows where a
notice came from. Parsing is pure: no I/O, no clock reads except where passed in. `Notice`
itself is vocabulary (`lifecycled.model`); the other two never get past a source.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from lifecycled.model import InstanceId, Notice, NoticeKind


class RejectReason(enum.StrEnum):
    """Bounded reason codes: they are metric label values."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    DUPLICATE_KEYS = "duplicate_keys"
    NOT_AN_OBJECT = "not_an_object"
    BAD_SNS_ENVELOPE = "bad_sns_envelope"
    UNKNOWN_FORMAT = "unknown_format"
    FOREIGN_SOURCE = "foreign_source"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_INSTANCE_ID = "bad_instance_id"
    BAD_TIME = "bad_time"
    FOREIGN_ACCOUNT = "foreign_account"
    FOREIGN_REGION = "foreign_region"


class IgnoreReason(enum.StrEnum):
    """Well-formed messages that ask nothing of us (deleted, counted, not dead-lettered)."""

    UNHANDLED_SOURCE = "unhandled_source"  # another AWS service's event (aws.ecs, ...)
    UNHANDLED_DETAIL_TYPE = "unhandled_detail_type"
    UNHANDLED_HEALTH_EVENT = "unhandled_health_event"
    UNHANDLED_STATE = "unhandled_state"
    UNHANDLED_TRANSITION = "unhandled_transition"


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: IgnoreReason
    detail: str
    event_id: str | None = None
    # What could be read before deciding to ignore (shown by `lifecycled explain`).
    kind: NoticeKind | None = None
    instance_ids: tuple[InstanceId, ...] = ()
    event_time: datetime | None = None
    region: str | None = None
    account: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    detail: str


ParseResult = Notice | Ignored | Rejected
