"""A Drain's durable intent: what it is for, until when, and which hook it must release.

It lives on the machine itself (node annotation, ECS attribute), written before the SQS
message is deleted, so a restarted handler can resume every open drain.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from lifecycled.model import Action, InstanceId, LifecycleAction, NoticeKind

PREFIX = "lifecycled.io/"
RECORD_ANNOTATION = PREFIX + "drain"
DRAINING_TAINT = PREFIX + "draining"


class Phase(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


class Outcome(enum.StrEnum):
    DRAINED = "drained"  # every evicted pod is gone (and the hook released)
    CORDONED = "cordoned"  # cordon-only notices
    DEADLINE_MISSED = "deadline_missed"
    FORCED = "forced_termination"  # the machine went while the drain was open
    FAILED = "failed"  # a permanent error (forbidden, invalid) ended the drain; hook released
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"  # AWS cancelled the scheduled change: the node was given back
    UNCORDONED = "uncordoned"  # a rebalance recommendation that never became an interruption


@dataclass(frozen=True, slots=True)
class HookRef:
    name: str
    group: str
    token: str

    @classmethod
    def of(cls, action: LifecycleAction) -> HookRef:
        return cls(name=action.hook_name, group=action.group_name, token=action.token)


class ReplacementState(enum.StrEnum):
    PLANNED = "planned"  # about to raise the group's desired capacity
    REQUESTED = "requested"  # raised (or at MaxSize: nothing to give back)
    SETTLED = "settled"  # the instance was terminated with the capacity decremented


@dataclass(frozen=True, slots=True)
class Replacement:
    """Replace-ahead's intent (replace.py): which group was raised for this instance."""

    group: str
    state: ReplacementState
    raised: bool = False  # the raise took (False at MaxSize: no decrement owed)


@dataclass(frozen=True, slots=True)
class DrainRecord:
    instance_id: InstanceId
    kind: NoticeKind
    action: Action  # DRAIN or CORDON
    event_id: str
    event_time: datetime
    deadline: datetime
    hook: HookRef | None = None
    phase: Phase = Phase.OPEN
    outcome: Outcome | None = None
    replacement: Replacement | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["event_time"] = self.event_time.isoformat()
        data["deadline"] = self.deadline.isoformat()
        if self.replacement is None:
            del data["replacement"]  # records without one read as before
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DrainRecord:
        data = json.loads(text)
        hook = data.get("hook")
        outcome = data.get("outcome")
        replacement = data.get("replacement")
        return cls(
            instance_id=InstanceId(data["instance_id"]),
            kind=NoticeKind(data["kind"]),
            action=Action(data["action"]),
            event_id=str(data["event_id"]),
            event_time=datetime.fromisoformat(data["event_time"]),
            deadline=datetime.fromisoformat(data["deadline"]),
            hook=HookRef(**hook) if hook else None,
            phase=Phase(data.get("phase", Phase.OPEN)),
            outcome=Outcome(outcome) if outcome else None,
            replacement=Replacement(
                group=str(replacement["group"]),
                state=ReplacementState(replacement["state"]),
                raised=bool(replacement.get("raised", False)),
            )
            if replacement
            else None,
        )

    def closed(self, outcome: Outcome) -> DrainRecord:
        return replace(self, phase=Phase.DONE, outcome=outcome)
