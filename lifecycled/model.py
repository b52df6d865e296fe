"""The vocabulary every layer speaks: instances, notices, actions, what became of a notice.

Below everything else: sources, events, the planner, the coordinator and the platforms all
import it; it imports nothing from lifecycled. Where a notice came from, and how it was
parsed, is not said here (`lifecycled.events`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NewType

InstanceId = NewType("InstanceId", str)

INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")

# EC2 instance states a state-change notice may carry, grouped by what they mean to us.
# On its way down: drained (the kind's action).
GOING_STATES = frozenset({"stopping", "shutting-down"})
# Down already: nothing left to drain, the notice is recorded. `stopped` counts as down.
DOWN_STATES = frozenset({"stopped", "terminated"})
# Terminated, or being terminated: past saving. A drain still at work was overtaken (a
# forced termination); one whose work is done just saw its machine go.
TERMINATED_STATES = frozenset({"shutting-down", "terminated"})


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


class Disposition(enum.StrEnum):
    """What became of a notice, per instance: the coordinator's answer to a source."""

    OPENED = "opened"
    MERGED = "merged"
    DUPLICATE = "duplicate"
    FORCED = "forced"
    RECORDED = "recorded"
    NOT_OURS = "not_ours"
    CANCELLED = "cancelled"
    DRY_RUN = "dry_run"


@dataclass(frozen=True, slots=True)
class HookInfo:
    """An Auto Scaling lifecycle hook's timeouts (seconds) and what AWS does when they pass."""

    heartbeat_timeout: int
    global_timeout: int
    default_result: str
