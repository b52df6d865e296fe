"""The default action for a notice: DESIGN.md's table as one pure function."""

from __future__ import annotations

from lifecycled.events.model import Action, Notice, NoticeKind

DRAIN_STATES = frozenset({"stopping", "shutting-down"})
# The machine is already gone: draining is moot, but a drain still open is a *forced
# termination* worth recording. `stopped` is treated like `terminated`.
GONE_STATES = frozenset({"stopped", "terminated"})


def default_action(notice: Notice, *, rebalance_action: Action = Action.CORDON) -> Action:
    match notice.kind:
        case NoticeKind.SPOT_INTERRUPTION | NoticeKind.LIFECYCLE_TERMINATE:
            return Action.DRAIN
        case NoticeKind.REBALANCE_RECOMMENDATION:
            return rebalance_action
        case NoticeKind.SCHEDULED_CHANGE:
            return Action.NONE if notice.cancelled else Action.DRAIN
        case NoticeKind.INSTANCE_STATE_CHANGE:
            return _state_action(notice.state)
        case NoticeKind.LIFECYCLE_LAUNCH:
            return Action.COMPLETE_HOOK
        case NoticeKind.TEST_NOTIFICATION:
            return Action.NONE


def _state_action(state: str | None) -> Action:
    if state in DRAIN_STATES:
        return Action.DRAIN
    if state in GONE_STATES:
        return Action.RECORD
    return Action.NONE
