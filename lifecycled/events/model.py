"""The typed result of parsing one message: a Notice, an Ignored or a Rejected.

Every source (SQS, instance metadata) produces these; nothing downstream knows where a
notice came from. Parsing is pure: no I/O, no clock reads except where passed in.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NewType

InstanceId = NewType("InstanceId", str)

INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


class NoticeKind(enum.StrEnum):
    SPOT_INTERRUPTION = "spot_interruption"
    REBALANCE_RECOMMENDATION = "rebalance_recommendation"
    SCHEDULED_CHANGE = "scheduled_change"
    INSTANCE_STATE_CHANGE = "instance_state_change"
    LIFECYCLE_TERMINATE = "lifecycle_terminate"
    LIFECYCLE_LAUNCH = "lifecycle_launch"
    TEST_NOTIFICATION = "test_notification"


class Action(enum.StrEnum):
    """What the service does about a notice (`events.default_action` picks it per kind)."""

    DRAIN = "drain"
    CORDON = "cordon"
    COMPLETE_HOOK = "complete-hook"
    RECORD = "record"
    NONE = "none"


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

    UNHANDLED_DETAIL_TYPE = "unhandled_detail_type"
    UNHANDLED_HEALTH_EVENT = "unhandled_health_event"
    UNHANDLED_STATE = "unhandled_state"
    UNHANDLED_TRANSITION = "unhandled_transition"


@dataclass(frozen=True, slots=True)
class LifecycleAction:
    hook_name: str
    group_name: str
    token: str
    transition: str  # "autoscaling:EC2_INSTANCE_TERMINATING" | "autoscaling:EC2_INSTANCE_LAUNCHING"


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    instance_ids: tuple[InstanceId, ...]
    event_id: str
    event_time: datetime  # timezone-aware, UTC
    deadline: datetime | None  # when the machine is expected to go; None = no fixed deadline
    region: str | None = None
    account: str | None = None
    lifecycle: LifecycleAction | None = None
    state: str | None = None  # instance state (state-change) or Health status code
    cancelled: bool = False  # a scheduled change that AWS cancelled


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
