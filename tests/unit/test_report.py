"""The node's Events about what was left: a drain that never listed its pods does not claim
that none were left."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lifecycled import report
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.record import DrainRecord, Outcome
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

    def node(self, name: str, reason: str, message: str, *, warning: bool = False) -> None:
        self.written.append((reason, message))


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
