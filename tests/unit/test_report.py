"""What a drain tells operators: the node's Events about what was left (a drain that never
listed its pods does not claim that none were left), and the warnings and notifications when
a heartbeat, a drain or a hook's completion fails."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from lifecycled import report
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.notify import Notification
from lifecycled.observe import Metrics
from lifecycled.record import DrainRecord, HookRef, Outcome
from lifecycled.report import Progress, Reporter

RECORD = DrainRecord(
    instance_id=InstanceId("i-0123456789abcdef0"),
    kind=NoticeKind.SPOT_INTERRUPTION,
    action=Action.DRAIN,
    event_id="e-1",
    event_time=datetime(2026, 1, 1, tzinfo=UTC),
    deadline=datetime(2026, 1, 1, 0, 2, tzinfo=UTC),
)


class Events:
    def __init__(self) -> None:
        self.written: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def node(self, name: str, reason: str, message: str, *, warning: bool = False) -> None:
        self.written.append((reason, message))
        if warning:
            self.warnings.append(reason)


def told(progress: Progress, end: Any) -> str:
    events = Events()
    reporter = Reporter(Metrics(), events=events)  # type: ignore[arg-type]
    end(reporter, progress)
    (message,) = [m for r, m in events.written if r in (report.FORCED, report.DEADLINE_MISSED)]
    return message


def forced(reporter: Reporter, progress: Progress) -> None:
    reporter.forced("node-1", RECORD, progress)


def missed(reporter: Reporter, progress: Progress) -> None:
    reporter.drain_ended("node-1", RECORD, Outcome.DEADLINE_MISSED, progress)


def test_pods_never_listed_are_not_called_none() -> None:
    for end in (forced, missed):
        assert "not listed yet" in told(Progress(), end)
        assert "no pods" in told(Progress(left=[]), end)
        assert "1 pod(s) (shop/web-1)" in told(Progress(left=["shop/web-1"]), end)


class Notices:
    def __init__(self) -> None:
        self.posted: list[Notification] = []

    def post(self, notification: Notification) -> None:
        self.posted.append(notification)


HELD = dataclasses.replace(
    RECORD,
    kind=NoticeKind.LIFECYCLE_TERMINATE,
    hook=HookRef(group="workers", name="drain", token="t-1"),
)


def reporter() -> tuple[Reporter, Events, Notices]:
    events, notices = Events(), Notices()
    return Reporter(Metrics(), events=events, notifier=notices), events, notices  # type: ignore[arg-type]


def test_a_hook_we_could_not_complete_is_an_alert_not_a_completion() -> None:
    told, events, notices = reporter()
    told.hook_released("node-1", HELD, "CONTINUE", ok=False)
    assert [reason for reason, _ in events.written] == [report.HOOK_COMPLETE_FAILED]
    assert events.warnings == [report.HOOK_COMPLETE_FAILED]
    (sent,) = notices.posted
    assert sent.event == "hook_abandoned" and sent.asg == "workers" and sent.hook == "drain"

    told, events, notices = reporter()
    told.hook_released("node-1", HELD, "CONTINUE", ok=True)
    assert [reason for reason, _ in events.written] == [report.HOOK_COMPLETED]
    assert [n.event for n in notices.posted] == ["hook_completed"]


def test_a_failed_heartbeat_and_a_failed_drain_are_warnings_on_the_node() -> None:
    told, events, notices = reporter()
    told.heartbeat_failed("node-1", HELD, "No active Lifecycle Action found")
    told.drain_ended("node-1", HELD, Outcome.FAILED, Progress(evicted=2, left=["shop/web-3"]))
    assert events.warnings == [report.HEARTBEAT_FAILED, report.DRAIN_FAILED]
    assert "No active Lifecycle Action found" in events.written[0][1]
    (sent,) = notices.posted
    assert sent.event == "drain_failed" and sent.outcome == "failed"
    assert sent.pods_evicted == 2 and sent.pods_left == ("shop/web-3",)
