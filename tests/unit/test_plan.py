"""The planner: a table of facts -> step, the deadline, and the service's deadline for a hook
whose global timeout is shorter than the longest hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifecycled.model import Action, HookInfo, InstanceId, LifecycleAction, Notice, NoticeKind
from lifecycled.plan import (
    NOT_IN_CLUSTER,
    Cancel,
    DrainStage,
    Duplicate,
    Facts,
    Forced,
    LookUp,
    Merge,
    Need,
    NotOurs,
    Open,
    Recorded,
    Release,
    Rules,
    Step,
    action_table,
    deadline,
    decide,
    ours,
)
from lifecycled.record import DrainRecord, HookRef, Outcome
from lifecycled.settings import load_settings
from tests.unit.test_coordinator_controls import Hooks, Platform, coordinator

INSTANCE = InstanceId("i-0123456789abcdef0")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SOON = T0 + timedelta(minutes=2)
ACTION = LifecycleAction("drain", "workers", "t" * 36, "autoscaling:EC2_INSTANCE_TERMINATING")
HOOK = HookRef.of(ACTION)
SHORT_HOOK = HookInfo(heartbeat_timeout=6, global_timeout=600, default_result="ABANDON")
LONG_HOOK = HookInfo(heartbeat_timeout=300, global_timeout=30000, default_result="ABANDON")
RULES = Rules.of(load_settings(queue_url="http://q"))  # max hold 3600 s, Spot notice 120 s
NONE_FOR_HOOKS = replace(
    RULES, actions={**RULES.actions, NoticeKind.LIFECYCLE_TERMINATE: Action.NONE}
)
# Everything looked up for an instance of ours on node-1, unless a case says otherwise.
KNOWN = frozenset({Need.OWNER, Need.HOOK})


def notice(kind: NoticeKind, **fields: Any) -> Notice:
    values: dict[str, Any] = {"deadline": SOON}
    values.update(fields)
    return Notice(kind=kind, instance_ids=(INSTANCE,), event_id="e", event_time=T0, **values)


SPOT = notice(NoticeKind.SPOT_INTERRUPTION)
HOOKED = notice(NoticeKind.LIFECYCLE_TERMINATE, deadline=None, lifecycle=ACTION)
REBALANCE = notice(NoticeKind.REBALANCE_RECOMMENDATION, deadline=None)
SCHEDULED = notice(NoticeKind.SCHEDULED_CHANGE, deadline=T0 + timedelta(days=3))
CANCELLED = replace(SCHEDULED, cancelled=True)
TEST = notice(NoticeKind.TEST_NOTIFICATION, deadline=None)


def state(name: str) -> Notice:
    return notice(NoticeKind.INSTANCE_STATE_CHANGE, deadline=None, state=name)


def facts(n: Notice, **fields: Any) -> Facts:
    values: dict[str, Any] = {"looked_up": KNOWN, "target": "node-1"}
    values.update(fields)
    return Facts(n, INSTANCE, **values)


def record(n: Notice, action: Action, at: datetime, hook: HookRef | None = None) -> DrainRecord:
    return DrainRecord(INSTANCE, n.kind, action, n.event_id, n.event_time, at, hook)


SCHEDULED_DRAIN = record(SCHEDULED, Action.DRAIN, SCHEDULED.deadline or T0)
W, D, E = DrainStage.WORKING, DrainStage.WORK_DONE, DrainStage.ENDED


def case(name: str, facts: Facts, step: Step | LookUp, rules: Rules = RULES) -> Any:
    return pytest.param(facts, step, rules, id=name)


def opens(n: Notice, action: Action, at: datetime, hook: HookRef | None = None) -> Open:
    return Open("node-1", record(n, action, at, hook))


TABLE = [
    # The gates: seen before, whose instance.
    case("judged foreign moments ago", facts(SPOT, foreign=True, seen=True), NotOurs(None)),
    case("handled moments ago", facts(SPOT, seen=True), Duplicate()),
    case("afresh: ownership first", facts(SPOT, looked_up=frozenset()), LookUp(Need.OWNER)),
    case(
        "afresh, untagged", facts(SPOT, why_not_ours="lacks tag", target=None), NotOurs("lacks tag")
    ),
    case(
        "known: no second ownership look",
        facts(SPOT, looked_up=frozenset(), drain=W),
        Merge(SOON, None),
    ),
    # Opening a drain.
    case("spot", facts(SPOT), opens(SPOT, Action.DRAIN, SOON)),
    case(
        "rebalance cordons",
        facts(REBALANCE),
        opens(REBALANCE, Action.CORDON, T0 + timedelta(hours=1)),
    ),
    case("scheduled change", facts(SCHEDULED), Open("node-1", SCHEDULED_DRAIN)),
    case(
        "hook timeouts before opening",
        facts(HOOKED, looked_up=frozenset({Need.OWNER})),
        LookUp(Need.HOOK),
    ),
    case(
        "hook clamps the hold",
        facts(HOOKED, hook_info=SHORT_HOOK),
        opens(HOOKED, Action.DRAIN, T0 + timedelta(seconds=600), HOOK),
    ),
    case(
        "hook longer than the hold",
        facts(HOOKED, hook_info=LONG_HOOK),
        opens(HOOKED, Action.DRAIN, T0 + timedelta(hours=1), HOOK),
    ),
    case(
        "stopping drains",
        facts(state("stopping")),
        opens(state("stopping"), Action.DRAIN, T0 + timedelta(seconds=120)),
    ),
    case(
        "shutting-down afresh drains",
        facts(state("shutting-down")),
        opens(state("shutting-down"), Action.DRAIN, T0 + timedelta(seconds=120)),
    ),
    # A drain under way, finishing, or over.
    case("merges into the drain at work", facts(HOOKED, drain=W), Merge(None, HOOK)),
    case("waits for a finishing drain", facts(SPOT, drain=D), LookUp(Need.DRAIN_END)),
    case(
        "target of a known instance",
        facts(SPOT, drain=E, looked_up=frozenset()),
        LookUp(Need.TARGET),
    ),
    case(
        "known instance, node gone",
        facts(SPOT, drain=E, looked_up=frozenset({Need.TARGET}), target=None),
        NotOurs(NOT_IN_CLUSTER),
    ),
    case(
        "known instance, new drain",
        facts(SPOT, drain=E, looked_up=frozenset({Need.TARGET})),
        opens(SPOT, Action.DRAIN, SOON),
    ),
    # The machine went.
    case("terminated while draining", facts(state("terminated"), drain=W), Forced()),
    case("shutting-down while draining", facts(state("shutting-down"), drain=W), Forced()),
    case(
        "terminated once the work was done",
        facts(state("terminated"), drain=D),
        Recorded("instance went after its drain"),
    ),
    case(
        "terminated after the drain",
        facts(state("terminated"), drain=E),
        Recorded("instance went after its drain"),
    ),
    case("terminated, never drained", facts(state("terminated")), Recorded("action record")),
    case("stopped is no forced end", facts(state("stopped"), drain=W), Recorded("action record")),
    # Nothing to drain; a hook is never left to time out.
    case("test notification", facts(TEST), Recorded("action none")),
    case("hook, action none", facts(HOOKED), Release(INSTANCE, HOOK, Action.NONE), NONE_FOR_HOOKS),
    case(
        "hook, action none, drain at work",
        facts(HOOKED, drain=W),
        Merge(None, HOOK),
        NONE_FOR_HOOKS,
    ),
    case(
        "hook, action none, drain finishing",
        facts(HOOKED, drain=D),
        Release(INSTANCE, HOOK, Action.NONE),
        NONE_FOR_HOOKS,
    ),
    # Cancelled scheduled changes.
    case("cancel: find the drain", facts(CANCELLED), LookUp(Need.UNDO)),
    case(
        "cancel: no drain",
        facts(CANCELLED, looked_up=KNOWN | {Need.UNDO}),
        Recorded("no drain of this change to undo"),
    ),
    case(
        "cancel: its drain",
        facts(CANCELLED, looked_up=KNOWN | {Need.UNDO}, undo=("node-1", SCHEDULED_DRAIN)),
        Cancel("node-1", SCHEDULED_DRAIN),
    ),
    case(
        "cancel: another window",
        facts(
            replace(CANCELLED, deadline=T0),
            looked_up=KNOWN | {Need.UNDO},
            undo=("node-1", SCHEDULED_DRAIN),
        ),
        Recorded("no drain of this change to undo"),
    ),
    case(
        "cancel: a Spot warning's drain",
        facts(
            CANCELLED,
            looked_up=KNOWN | {Need.UNDO},
            undo=("node-1", record(SPOT, Action.DRAIN, SOON)),
        ),
        Recorded("no drain of this change to undo"),
    ),
    case(
        "cancel: forced already",
        facts(
            CANCELLED,
            looked_up=KNOWN | {Need.UNDO},
            undo=("node-1", SCHEDULED_DRAIN.closed(Outcome.FORCED)),
        ),
        Recorded("no drain of this change to undo"),
    ),
]


@pytest.mark.parametrize(("facts", "step", "rules"), TABLE)
def test_decide(facts: Facts, step: Step | LookUp, rules: Rules) -> None:
    assert decide(facts, rules) == step


def test_ours_is_past_the_ownership_gate() -> None:
    assert not ours(Duplicate()) and not ours(NotOurs("x")) and not ours(LookUp(Need.OWNER))
    assert ours(LookUp(Need.TARGET)) and ours(Recorded("x")) and ours(Merge(None, None))


@pytest.mark.parametrize(
    ("n", "hook", "expected"),
    [
        (HOOKED, SHORT_HOOK, T0 + timedelta(seconds=600)),  # the hook's global timeout
        (HOOKED, LONG_HOOK, T0 + timedelta(hours=1)),  # LIFECYCLED_LIFECYCLE_MAX_HOLD_SECONDS
        (SPOT, None, SOON),  # the notice's own
        (state("stopping"), None, T0 + timedelta(seconds=120)),  # LIFECYCLED_SPOT_NOTICE_SECONDS
        (REBALANCE, None, T0 + timedelta(hours=1)),
    ],
)
def test_deadline(n: Notice, hook: HookInfo | None, expected: datetime) -> None:
    assert deadline(n, hook, RULES) == expected


def test_rules_follow_the_settings() -> None:
    settings = load_settings(queue_url="http://q", lifecycle_max_hold_seconds=90)
    assert Rules.of(settings) == Rules(action_table(settings), 90, 120)


class ShortHooks(Hooks):
    async def info(self, hook: HookRef) -> HookInfo:
        return SHORT_HOOK


async def test_the_service_holds_a_hook_no_longer_than_its_global_timeout() -> None:
    platform, hooks = Platform(), ShortHooks()
    c = coordinator(platform, hooks)  # max hold 3600 s: the hook's 600 s is shorter
    now = datetime.now(UTC)
    hooked = replace(HOOKED, event_time=now)
    async with c.running():
        await c.submit(hooked)
        platform.release.set()
    assert platform.writes[0].deadline == now + timedelta(seconds=600)
    assert platform.writes[0].deadline == deadline(hooked, SHORT_HOOK, c._rules)
