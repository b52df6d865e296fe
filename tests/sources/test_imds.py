"""The IMDS source against the IMDS emulator: which notices it hands over, and how it
survives 404s, 5xx, timeouts and expired tokens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.imds import SPOT, TARGET_STATE, ImdsEmulator
from lifecycled.clients.aws.ec2 import InstanceInfo
from lifecycled.errors import PermanentError, TemporaryError
from lifecycled.events.fields import Reject
from lifecycled.events.imds import Identity, maintenance_time, scheduled_notices, spot_notice
from lifecycled.lifecycle import HookFinder
from lifecycled.model import InstanceId, LifecycleAction, Notice, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.platforms.kube_pods import is_skipped
from lifecycled.settings import Settings
from lifecycled.sources.imds import ImdsSource

INSTANCE = "i-0123456789abcdef0"
ME = Identity(InstanceId(INSTANCE), "us-east-1", "123456789012")
POLL = 0.05


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "source": "imds",
        "node_name": "ip-10-0-1-1.ec2.internal",
        "imds_poll_seconds": POLL,
        "api_timeout_seconds": 0.3,
        "retry_delays": (0.05, 0.1),
    }
    values.update(overrides)
    return Settings(**values)


# --- pure parsing -----------------------------------------------------------------------


def test_maintenance_times_are_read_in_the_imds_format() -> None:
    assert maintenance_time("21 Jan 2019 09:00:43 GMT", "x") == datetime(
        2019, 1, 21, 9, 0, 43, tzinfo=UTC
    )
    assert maintenance_time("5 Feb 2019 09:00:43 GMT", "x").day == 5
    for bad in ("2019-01-21T09:00:43Z", "31 Feb 2019 09:00:43 GMT", "21 Jan 2019 09:00:43"):
        with pytest.raises(Reject):
            maintenance_time(bad, "x")


def test_a_spot_action_is_due_at_its_time_and_identified_by_its_content() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    body = '{"action": "terminate", "time": "2026-01-01T12:01:30Z"}'
    notice = spot_notice(body, ME, now, timedelta(seconds=120))
    assert notice.kind is NoticeKind.SPOT_INTERRUPTION
    assert notice.deadline == datetime(2026, 1, 1, 12, 1, 30, tzinfo=UTC)
    assert notice.event_time == datetime(2026, 1, 1, 11, 59, 30, tzinfo=UTC)
    assert notice.instance_ids == (INSTANCE,) and notice.state == "terminate"
    later = spot_notice(body, ME, now + timedelta(seconds=30), timedelta(seconds=120))
    assert later.event_id == notice.event_id


def test_scheduled_events_cancelled_or_completed_are_cancellations() -> None:
    body = """[
      {"NotBefore": "21 Jan 2019 09:00:43 GMT", "Code": "system-reboot",
       "EventId": "instance-event-0d59937288b749b32", "State": "active"},
      {"NotBefore": "29 Jan 2019 09:00:43 GMT", "Code": "system-reboot",
       "EventId": "instance-event-0e439355b779n26", "State": "canceled"},
      {"NotBefore": "1 Feb 2019 09:00:43 GMT", "Code": "instance-stop",
       "EventId": "instance-event-0ab", "State": "completed"}
    ]"""
    seen = datetime(2019, 1, 1, tzinfo=UTC)
    notices = scheduled_notices(body, ME, lambda _: seen)
    assert [n.cancelled for n in notices] == [False, True, True]
    assert notices[0].deadline == datetime(2019, 1, 21, 9, 0, 43, tzinfo=UTC)
    assert notices[0].event_time == seen
    assert len({n.event_id for n in notices}) == 3
    assert scheduled_notices("[]", ME, lambda _: seen) == []


@pytest.mark.parametrize("body", ["{", "[1]", '[{"EventId": "x"}]', '{"a": 1}'])
def test_unreadable_scheduled_events_are_rejected(body: str) -> None:
    with pytest.raises(Reject):
        scheduled_notices(body, ME, lambda _: datetime.now(UTC))


def test_the_handlers_own_pod_is_never_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    pod = {"metadata": {"name": "lifecycled-x1", "namespace": "kube-system"}}
    assert is_skipped(pod) is None
    monkeypatch.setenv("POD_NAME", "lifecycled-x1")
    monkeypatch.setenv("POD_NAMESPACE", "kube-system")
    assert is_skipped(pod) == "self"
    monkeypatch.setenv("POD_NAMESPACE", "default")
    assert is_skipped(pod) is None


# --- the source against the emulator -------------------------------------------------------


class Recorder:
    """Stands in for the coordinator: records notices; can refuse the first few."""

    def __init__(self, refuse: int = 0) -> None:
        self.notices: list[Notice] = []
        self.refuse = refuse
        self.changed = asyncio.Event()

    async def __call__(self, notice: Notice) -> None:
        if self.refuse:
            self.refuse -= 1
            raise TemporaryError("not now")
        self.notices.append(notice)
        self.changed.set()

    async def wait_for(self, check: Callable[[list[Notice]], bool], within: float = 5) -> None:
        end = time.monotonic() + within
        while not check(self.notices):
            self.changed.clear()
            left = end - time.monotonic()
            assert left > 0, f"not seen in {within}s: {self.notices}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def kinds(self) -> list[NoticeKind]:
        return [n.kind for n in self.notices]


@pytest.fixture
async def imds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ImdsEmulator]:
    async with ImdsEmulator(instance_id=INSTANCE) as emulator:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", emulator.url)
        yield emulator


@contextlib.asynccontextmanager
async def polling(source: ImdsSource) -> AsyncIterator[asyncio.Event]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(source.run(stop, ready))
    try:
        yield ready
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def no_hooks() -> HookFinder:
    """A hook lookup for tests that never see the target state Terminated."""
    return HookFinder(FakeAws([]))  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], within: float = 5) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, "condition not met"
        await asyncio.sleep(0.02)


async def test_a_spot_action_is_handed_over_once(imds: ImdsEmulator) -> None:
    handle, metrics = Recorder(), Metrics()
    async with polling(ImdsSource(settings(), metrics, handle, hooks=no_hooks())) as ready:
        await asyncio.wait_for(ready.wait(), 5)
        assert handle.notices == []
        action = imds.set_spot_action()
        await handle.wait_for(lambda ns: len(ns) == 1)
        polls = imds.count("GET", SPOT)
        await eventually(lambda: imds.count("GET", SPOT) >= polls + 3)
    [notice] = handle.notices
    assert notice.kind is NoticeKind.SPOT_INTERRUPTION
    assert notice.deadline == datetime.fromisoformat(action["time"].replace("Z", "+00:00"))
    assert notice.region == "us-east-1" and notice.account == "123456789012"
    assert (
        metrics.registry.get_sample_value("lifecycled_notices_total", {"kind": "spot_interruption"})
        == 1
    )


async def test_a_notice_refused_by_the_coordinator_comes_again(imds: ImdsEmulator) -> None:
    handle = Recorder(refuse=2)
    imds.set_rebalance()
    async with polling(ImdsSource(settings(), Metrics(), handle, hooks=no_hooks())):
        await handle.wait_for(lambda ns: len(ns) == 1)
    assert handle.kinds() == [NoticeKind.REBALANCE_RECOMMENDATION]
    assert handle.refuse == 0


async def test_a_scheduled_event_then_its_cancellation(imds: ImdsEmulator) -> None:
    handle = Recorder()
    window = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    async with polling(ImdsSource(settings(), Metrics(), handle, hooks=no_hooks())):
        first = imds.add_scheduled_event("system-maintenance", not_before=window)
        await handle.wait_for(lambda ns: len(ns) == 1)
        imds.set_scheduled_state(first, "canceled")
        await handle.wait_for(lambda ns: len(ns) == 2)
        # An event that just leaves the list before its window was cancelled too.
        second = imds.add_scheduled_event("instance-reboot", not_before=window)
        await handle.wait_for(lambda ns: len(ns) == 3)
        imds.remove_scheduled_event(second)
        await handle.wait_for(lambda ns: len(ns) == 4)
    active, cancelled, active2, gone = handle.notices
    assert (active.cancelled, cancelled.cancelled) == (False, True)
    assert active.deadline == cancelled.deadline == window
    assert active.event_time == cancelled.event_time  # first seen, kept
    assert cancelled.state == "canceled"
    assert not active2.cancelled and gone.cancelled and gone.state == "canceled"
    assert {n.kind for n in handle.notices} == {NoticeKind.SCHEDULED_CHANGE}


async def test_after_a_restart_the_history_says_the_change_is_over(imds: ImdsEmulator) -> None:
    event_id = imds.add_scheduled_event("system-reboot")
    imds.set_scheduled_state(event_id, "completed")
    imds.remove_scheduled_event(event_id)  # only the history still lists it
    handle = Recorder()
    async with polling(ImdsSource(settings(), Metrics(), handle, hooks=no_hooks())):
        await handle.wait_for(lambda ns: len(ns) == 1)
    [notice] = handle.notices
    assert notice.kind is NoticeKind.SCHEDULED_CHANGE
    assert notice.cancelled and notice.state == "completed"


async def test_faults_are_survived_and_counted(imds: ImdsEmulator) -> None:
    handle, metrics = Recorder(), Metrics()
    async with polling(ImdsSource(settings(), metrics, handle, hooks=no_hooks())) as ready:
        await asyncio.wait_for(ready.wait(), 5)
        imds.fail(500, times=3)
        imds.delay(0.6, times=1, path=SPOT)  # longer than the 0.3 s timeout
        imds.expire_tokens()
        imds.set_spot_action()
        await handle.wait_for(lambda ns: len(ns) == 1)
    errors = metrics.registry.get_sample_value("lifecycled_imds_polls_total", {"outcome": "error"})
    assert errors and errors >= 1
    assert imds.count("PUT", "api/token", 200) >= 2  # a fresh token after the expiry
    assert any(r.method == "GET" and r.status == 401 for r in imds.requests)
    timeouts = metrics.registry.get_sample_value(
        "lifecycled_api_requests_total",
        {"api": "imds", "operation": SPOT, "outcome": "TemporaryError"},
    )
    assert timeouts and timeouts >= 1


async def test_ready_only_after_a_whole_poll_succeeded(imds: ImdsEmulator) -> None:
    imds.fail(503, times=6)
    async with polling(ImdsSource(settings(), Metrics(), Recorder(), hooks=no_hooks())) as ready:
        await eventually(lambda: imds.count("PUT", "api/token", 503) + imds.count("GET", SPOT) > 0)
        assert not ready.is_set()
        await asyncio.wait_for(ready.wait(), 5)


class FakeAws:
    """Stands in for AwsClients: its EC2 and Auto Scaling clients."""

    def __init__(self, hooks: list[str] | Exception) -> None:
        self.hooks = hooks
        self.calls: list[str] = []
        self.ec2 = self.autoscaling = self

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        self.calls.append("describe_instance")
        tags = {"aws:autoscaling:groupName": "workers"}
        return InstanceInfo(instance_id, "ip-10-0-1-1.ec2.internal", "running", tags)

    async def terminating_hooks(self, group: str) -> list[str]:
        self.calls.append(f"terminating_hooks {group}")
        if isinstance(self.hooks, Exception):
            raise self.hooks
        return self.hooks


async def terminate_notice_with(imds: ImdsEmulator, aws: FakeAws) -> Notice:
    handle = Recorder()
    imds.set_target_lifecycle_state("InService")
    source = ImdsSource(settings(), Metrics(), handle, hooks=HookFinder(aws))  # type: ignore[arg-type]
    async with polling(source) as ready:
        await asyncio.wait_for(ready.wait(), 5)
        imds.set_target_lifecycle_state("Terminated")
        await handle.wait_for(lambda ns: len(ns) == 1)
        polls = imds.count("GET", TARGET_STATE)
        await eventually(lambda: imds.count("GET", TARGET_STATE) >= polls + 2)
    assert len(handle.notices) == 1
    return handle.notices[0]


async def test_target_state_terminated_with_the_groups_one_terminating_hook(
    imds: ImdsEmulator,
) -> None:
    aws = FakeAws(["drain-me"])
    notice = await terminate_notice_with(imds, aws)
    assert notice.kind is NoticeKind.LIFECYCLE_TERMINATE
    assert notice.lifecycle == LifecycleAction(
        hook_name="drain-me",
        group_name="workers",
        token="",
        transition="autoscaling:EC2_INSTANCE_TERMINATING",
    )
    assert aws.calls == ["describe_instance", "terminating_hooks workers"]  # looked up once


@pytest.mark.parametrize(
    "hooks", [["a", "b"], [], PermanentError("AccessDenied: not authorized")], ids=str
)
async def test_no_hook_is_named_unless_there_is_exactly_one_we_may_see(
    imds: ImdsEmulator, hooks: list[str] | Exception
) -> None:
    notice = await terminate_notice_with(imds, FakeAws(hooks))
    assert notice.kind is NoticeKind.LIFECYCLE_TERMINATE
    assert notice.lifecycle is None


async def test_the_group_comes_from_instance_tags_when_metadata_has_them() -> None:
    tags = {"aws:autoscaling:groupName": "tagged"}
    async with ImdsEmulator(instance_id=INSTANCE, tags=tags) as emulator:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", emulator.url)
            aws = FakeAws(["hook"])
            notice = await terminate_notice_with(emulator, aws)
    assert notice.lifecycle is not None and notice.lifecycle.group_name == "tagged"
    assert aws.calls == ["terminating_hooks tagged"]
