"""`lifecycled explain FILE|-`: parse one message body exactly as the service would.

Prints one JSON object on one line and has no side effects. The scope check uses
`LIFECYCLED_ALLOWED_ACCOUNTS` (comma-separated) and `LIFECYCLED_REGION`, as the service does.

Exit codes and objects:

* 0, a notice: an object with exactly these keys:
  `{"kind", "instance_ids", "region", "account", "event_id", "event_time", "deadline",
  "lifecycle", "state", "action"}`; times are ISO-8601 UTC with a `Z` suffix.
* 0, an ignored message (well-formed, asks nothing of us; the service deletes it): the same
  keys, filled where the message said them (`kind` may be null), `"action": "none"`, plus
  `"ignored": "<reason-code>"` and `"detail": "..."`.
* 2, a rejected message (the service leaves it for the dead-letter queue):
  `{"rejected": "<reason-code>", "detail": "..."}`.
* 1, the file could not be read (message on stderr); 2 also for a usage error.

With `--node NAME` (and optionally FILE) it also reads the cluster — never writes — and
says what a live run would do to that node: see `lifecycled/explain_node.py`.

Per-kind actions follow `LIFECYCLED_<KIND>_ACTION` as the service's do.

The command line is `lifecycled/explain_cli.py`; run it as `python -m lifecycled.explain_cli
FILE` too. This module is the pure part: body in, exit code and object out.
"""

from __future__ import annotations

from collections.abc import Mapping

from lifecycled.events import (
    Ignored,
    Rejected,
    check_scope,
    default_action,
    parse_message,
)
from lifecycled.events.actions import CHOOSABLE
from lifecycled.events.times import format_time
from lifecycled.model import Action, LifecycleAction, Notice, NoticeKind

EXIT_PARSED = 0
EXIT_UNREADABLE = 1
EXIT_REJECTED = 2
ACTION_NAMES = frozenset({"drain", "cordon", "none"})


def explain(
    body: bytes,
    *,
    allowed_accounts: frozenset[str] = frozenset(),
    region: str | None = None,
    actions: Mapping[NoticeKind, Action] | None = None,
) -> tuple[int, dict[str, object]]:
    """The exit code and the JSON object `lifecycled explain` prints for `body`."""
    result = parse_message(body)
    if isinstance(result, Notice):
        result = check_scope(result, allowed_accounts=allowed_accounts, region=region)
    if isinstance(result, Rejected):
        return EXIT_REJECTED, {"rejected": result.reason.value, "detail": result.detail}
    if isinstance(result, Ignored):
        return EXIT_PARSED, _ignored_object(result)
    return EXIT_PARSED, _notice_object(result, actions)


def actions_from_env(env: Mapping[str, str]) -> dict[NoticeKind, Action]:
    """`LIFECYCLED_<KIND>_ACTION` (and the older `LIFECYCLED_REBALANCE_ACTION`) where set."""
    found: dict[NoticeKind, Action] = {}
    older = env.get("LIFECYCLED_REBALANCE_ACTION", "").strip().lower()
    if older in ACTION_NAMES:
        found[NoticeKind.REBALANCE_RECOMMENDATION] = Action(older)
    for kind in CHOOSABLE:
        value = env.get(f"LIFECYCLED_{kind.value.upper()}_ACTION", "").strip().lower()
        if value in ACTION_NAMES:
            found[kind] = Action(value)
    return found


def scope_from_env(env: Mapping[str, str]) -> tuple[frozenset[str], str | None]:
    """`(allowed_accounts, region)` from `LIFECYCLED_ALLOWED_ACCOUNTS` and `LIFECYCLED_REGION`."""
    accounts = env.get("LIFECYCLED_ALLOWED_ACCOUNTS", "").split(",")
    region = env.get("LIFECYCLED_REGION", "").strip()
    return frozenset(a.strip() for a in accounts if a.strip()), region or None


def _notice_object(
    notice: Notice, actions: Mapping[NoticeKind, Action] | None = None
) -> dict[str, object]:
    return {
        "kind": notice.kind.value,
        "instance_ids": list(notice.instance_ids),
        "region": notice.region,
        "account": notice.account,
        "event_id": notice.event_id,
        "event_time": format_time(notice.event_time),
        "deadline": format_time(notice.deadline) if notice.deadline else None,
        "lifecycle": _lifecycle_object(notice.lifecycle),
        "state": notice.state,
        "action": default_action(notice, actions=actions).value,
    }


def _ignored_object(ignored: Ignored) -> dict[str, object]:
    return {
        "kind": ignored.kind.value if ignored.kind else None,
        "instance_ids": list(ignored.instance_ids),
        "region": ignored.region,
        "account": ignored.account,
        "event_id": ignored.event_id,
        "event_time": format_time(ignored.event_time) if ignored.event_time else None,
        "deadline": None,
        "lifecycle": None,
        "state": ignored.state,
        "action": Action.NONE.value,
        "ignored": ignored.reason.value,
        "detail": ignored.detail,
    }


def _lifecycle_object(action: LifecycleAction | None) -> dict[str, str] | None:
    if action is None:
        return None
    return {
        "hook_name": action.hook_name,
        "group_name": action.group_name,
        "token": action.token,
        "transition": action.transition,
    }
