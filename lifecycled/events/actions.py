"""The action for a notice: the per-kind table (docs/configuration.md, "Per-kind actions")
as one pure function, each kind's action configurable (`LIFECYCLED_<KIND>_ACTION`)."""

from __future__ import annotations

from collections.abc import Mapping

from lifecycled.model import DOWN_STATES, GOING_STATES, Action, Notice, NoticeKind

# The defaults (the table in docs/configuration.md), for the kinds whose action an operator
# may choose.
DEFAULT_ACTIONS: Mapping[NoticeKind, Action] = {
    NoticeKind.SPOT_INTERRUPTION: Action.DRAIN,
    NoticeKind.REBALANCE_RECOMMENDATION: Action.CORDON,
    NoticeKind.SCHEDULED_CHANGE: Action.DRAIN,
    NoticeKind.INSTANCE_STATE_CHANGE: Action.DRAIN,
    NoticeKind.LIFECYCLE_TERMINATE: Action.DRAIN,
}
CHOOSABLE = frozenset(DEFAULT_ACTIONS)


def default_action(
    notice: Notice,
    *,
    actions: Mapping[NoticeKind, Action] | None = None,
    rebalance_action: Action | None = None,
) -> Action:
    """`actions` overrides the defaults per kind; `rebalance_action` is the older spelling of
    `actions={REBALANCE_RECOMMENDATION: ...}`."""
    table = dict(DEFAULT_ACTIONS)
    table.update(actions or {})
    if rebalance_action is not None:
        table[NoticeKind.REBALANCE_RECOMMENDATION] = rebalance_action
    match notice.kind:
        case (
            NoticeKind.SPOT_INTERRUPTION
            | NoticeKind.LIFECYCLE_TERMINATE
            | NoticeKind.REBALANCE_RECOMMENDATION
        ):
            return table[notice.kind]
        case NoticeKind.SCHEDULED_CHANGE:
            return Action.NONE if notice.cancelled else table[notice.kind]
        case NoticeKind.INSTANCE_STATE_CHANGE:
            return _state_action(notice.state, table[notice.kind])
        case NoticeKind.LIFECYCLE_LAUNCH:
            return Action.COMPLETE_HOOK
        case NoticeKind.TEST_NOTIFICATION:
            return Action.NONE


def _state_action(state: str | None, drain_action: Action) -> Action:
    if state in GOING_STATES:
        return drain_action
    if state in DOWN_STATES:
        return Action.RECORD
    return Action.NONE
