"""Decisions as data: what to do about one notice for one instance, given what is known.

Pure: no I/O, no clock. The coordinator gathers the facts, asks `decide` for one `Step` and
executes it; `explain --node` asks the same function, so the two never disagree. A fact
that costs a call (whose instance this is, the target of an instance we already know, the
hook's timeouts, the drain a cancellation would undo) is gathered only when a decision
needs it: `decide` then answers `LookUp(need)` and is asked again once it is known.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from lifecycled.events.actions import CHOOSABLE, default_action
from lifecycled.model import TERMINATED_STATES, Action, HookInfo, InstanceId, Notice, NoticeKind
from lifecycled.record import DrainRecord, HookRef, Outcome
from lifecycled.settings import Settings

OPENING = frozenset({Action.DRAIN, Action.CORDON})  # the actions that open a drain
NOT_IN_CLUSTER = "instance is not in this cluster"


def action_table(settings: Settings) -> dict[NoticeKind, Action]:
    """Each choosable kind's action from `LIFECYCLED_<KIND>_ACTION`."""
    return {kind: Action(getattr(settings.drain, f"{kind.value}_action")) for kind in CHOOSABLE}


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings a decision depends on."""

    actions: Mapping[NoticeKind, Action]
    max_hold_seconds: float  # LIFECYCLED_LIFECYCLE_MAX_HOLD_SECONDS
    spot_notice_seconds: float  # LIFECYCLED_SPOT_NOTICE_SECONDS

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            actions=action_table(settings),
            max_hold_seconds=settings.hooks.max_hold_seconds,
            spot_notice_seconds=settings.drain.spot_notice_seconds,
        )


class DrainStage(enum.Enum):
    """Where this instance's drain (if any) is."""

    NONE = "none"  # none known: the instance is looked at afresh
    WORKING = "working"  # under way: a later notice merges into it
    WORK_DONE = "work_done"  # releasing its hook and closing: too late to merge
    ENDED = "ended"  # ended earlier: later notices are about a machine we drained


class Need(enum.Enum):
    """A fact that costs a call to gather."""

    OWNER = "owner"  # the tag check and the platform's target (an instance seen afresh)
    TARGET = "target"  # the target of an instance we know already
    HOOK = "hook"  # the lifecycle hook's timeouts
    UNDO = "undo"  # the drain a cancelled scheduled change would undo
    DRAIN_END = "drain_end"  # the drain closing: wait until it ended


@dataclass(frozen=True, slots=True)
class Facts:
    notice: Notice
    instance_id: InstanceId
    seen: bool = False  # this event was handled for this instance moments ago
    foreign: bool = False  # ... or judged not ours moments ago
    drain: DrainStage = DrainStage.NONE
    looked_up: frozenset[Need] = frozenset()
    why_not_ours: str | None = None  # Need.OWNER: None when ours
    target: str | None = None  # Need.OWNER or Need.TARGET: None when not in this cluster
    hook_info: HookInfo | None = None  # Need.HOOK: the notice's hook's timeouts
    undo: tuple[str, DrainRecord] | None = None  # Need.UNDO: a drain on the instance, if any


# --- steps ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LookUp:
    """Not decidable yet: gather `need`, then ask again."""

    need: Need


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Handled moments ago (a redelivery)."""


@dataclass(frozen=True, slots=True)
class NotOurs:
    """Someone else's instance: left alone. `why` is None when judged so moments ago."""

    why: str | None


@dataclass(frozen=True, slots=True)
class Forced:
    """The machine went while its drain was at work: end that drain as a forced termination."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """Nothing to do but say so."""

    why: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """AWS cancelled the scheduled change: end its drain and give the target back."""

    target: str
    record: DrainRecord


@dataclass(frozen=True, slots=True)
class Release:
    """A hooked notice whose action drains nothing: complete the hook at once."""

    instance_id: InstanceId
    hook: HookRef
    action: Action


@dataclass(frozen=True, slots=True)
class Merge:
    """Tighten the drain under way's deadline and/or hand it the hook to hold and release."""

    deadline: datetime | None
    hook: HookRef | None


@dataclass(frozen=True, slots=True)
class Open:
    """Record the drain's intent on the target, cordon it, and run the drain."""

    target: str
    record: DrainRecord


Step = Duplicate | NotOurs | Forced | Recorded | Cancel | Release | Merge | Open


def decide(facts: Facts, rules: Rules) -> Step | LookUp:
    """The one next step for this notice and instance, or the fact it waits for."""
    gate = _gate(facts)
    if gate is not None:
        return gate
    notice = facts.notice
    if notice.cancelled:
        return _cancel(facts)
    gone = notice.kind is NoticeKind.INSTANCE_STATE_CHANGE and notice.state in TERMINATED_STATES
    if gone and facts.drain is not DrainStage.NONE:
        if facts.drain is DrainStage.WORKING:
            return Forced()
        return Recorded("instance went after its drain")
    action = default_action(notice, actions=rules.actions)
    hook = HookRef.of(notice.lifecycle) if notice.lifecycle else None
    if action in OPENING:
        return _drain(facts, rules, action, hook)
    return _no_drain(facts, action, hook)


def ours(step: Step | LookUp) -> bool:
    """Whether `decide` got past the ownership gate with this step."""
    return not isinstance(step, Duplicate | NotOurs) and step != LookUp(Need.OWNER)


def deadline(notice: Notice, hook: HookInfo | None, rules: Rules) -> datetime:
    """The drain's deadline; `hook` is the notice's lifecycle hook, when it has one."""
    hold = timedelta(seconds=rules.max_hold_seconds)
    if hook is not None:
        # Never hold past the hook's global timeout: AWS would apply its default result.
        return notice.event_time + min(hold, timedelta(seconds=hook.global_timeout))
    if notice.deadline is not None:
        return notice.deadline
    if notice.kind is NoticeKind.INSTANCE_STATE_CHANGE:
        return notice.event_time + timedelta(seconds=rules.spot_notice_seconds)
    return notice.event_time + hold


def undoes(notice: Notice, record: DrainRecord) -> bool:
    """Whether cancelling this scheduled change undoes the drain `record` describes."""
    # A different window, or a tighter notice (a Spot warning) merged in: not ours to undo.
    same_window = notice.deadline is None or record.deadline == notice.deadline
    undoable = record.outcome not in (Outcome.CANCELLED, Outcome.FORCED)
    return record.kind is NoticeKind.SCHEDULED_CHANGE and same_window and undoable


def _gate(facts: Facts) -> Step | LookUp | None:
    """Seen before, or not ours: decided before anything else is looked at."""
    if facts.foreign:
        return NotOurs(None)
    if facts.seen:
        return Duplicate()
    if facts.drain is not DrainStage.NONE:
        return None  # a drain of ours: no second look at whose it is
    if Need.OWNER not in facts.looked_up:
        return LookUp(Need.OWNER)  # ours only if tagged as ours and on our platform
    if facts.why_not_ours is not None:
        return NotOurs(facts.why_not_ours)
    return None


def _no_drain(facts: Facts, action: Action, hook: HookRef | None) -> Step:
    if hook is None:
        return Recorded(f"action {action}")
    # Never leave a hook to time out silently: a drain at work holds and releases it;
    # otherwise it is released at once.
    if facts.drain is DrainStage.WORKING:
        return Merge(None, hook)
    return Release(facts.instance_id, hook, action)


def _cancel(facts: Facts) -> Step | LookUp:
    if Need.UNDO not in facts.looked_up:
        return LookUp(Need.UNDO)
    if facts.undo is None or not undoes(facts.notice, facts.undo[1]):
        return Recorded("no drain of this change to undo")
    return Cancel(*facts.undo)


def _drain(facts: Facts, rules: Rules, action: Action, hook: HookRef | None) -> Step | LookUp:
    if facts.drain is DrainStage.WORKING:
        return Merge(facts.notice.deadline, hook)
    if facts.drain is DrainStage.WORK_DONE:
        return LookUp(Need.DRAIN_END)  # it is finishing; this notice opens a new one
    if not facts.looked_up & {Need.OWNER, Need.TARGET}:
        return LookUp(Need.TARGET)
    if facts.target is None:
        return NotOurs(NOT_IN_CLUSTER)
    if hook is not None and Need.HOOK not in facts.looked_up:
        return LookUp(Need.HOOK)
    notice = facts.notice
    record = DrainRecord(
        instance_id=facts.instance_id,
        kind=notice.kind,
        action=action,
        event_id=notice.event_id,
        event_time=notice.event_time,
        deadline=deadline(notice, facts.hook_info if hook else None, rules),
        hook=hook,
    )
    return Open(facts.target, record)
