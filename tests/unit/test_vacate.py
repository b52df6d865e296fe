"""The one vacate loop against a fake item source: passes, the cutoff, retried failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from lifecycled.errors import PermanentError, TemporaryError
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.platforms.vacate import Items, Step, vacate_loop
from lifecycled.record import DrainRecord

POLL = 0.01


class Drain:
    """A drain whose cutoff comes `seconds` from now."""

    def __init__(self, seconds: float = 30.0) -> None:
        now = datetime.now(UTC)
        self.record = DrainRecord(
            instance_id=InstanceId("i-0123456789abcdef0"),
            kind=NoticeKind.SPOT_INTERRUPTION,
            action=Action.DRAIN,
            event_id="e-1",
            event_time=now,
            deadline=now + timedelta(seconds=seconds),
            hook=None,
        )
        self._cutoff = asyncio.get_running_loop().time() + seconds

    def cutoff(self) -> float:
        return self._cutoff

    def remaining(self) -> float:
        return self._cutoff - asyncio.get_running_loop().time()


class Fake(Items[str]):
    """Items that leave once their step ran; a listing or a step may be told to fail."""

    noun = "item"
    overlap = False

    def __init__(self, *names: str) -> None:
        self.where: dict[str, object] = {"node": "n1"}
        self.present = list(names)
        self.listings = 0
        self.list_errors: list[Exception] = []  # raised by the next listings, one each
        self.step_errors: dict[str, list[Exception]] = {}  # raised by the item's next steps
        self.steps: list[str] = []  # every step started, in order
        self.firsts = 0
        self.seen_passes: list[list[str]] = []
        self.stays: set[str] = set()  # their steps do nothing: they never leave
        self.durations: dict[str, float] = {}  # how long an item's step takes
        self.finished: list[str] = []  # steps that ran to their end

    def key(self, item: str) -> str:
        return item

    def label(self, item: str) -> str:
        return f"ns/{item}"

    async def left(self) -> list[str]:
        self.listings += 1
        if self.list_errors:
            raise self.list_errors.pop(0)
        return list(self.present)

    async def first_listing(self, items: list[str]) -> bool:
        self.firsts += 1
        return False

    def seen(self, items: list[str]) -> None:
        self.seen_passes.append(items)

    async def decide(self, item: str) -> Step | None:
        async def step() -> None:
            self.steps.append(item)
            await asyncio.sleep(self.durations.get(item, 0.0))
            queued = self.step_errors.get(item)
            if queued:
                raise queued.pop(0)
            if item not in self.stays:
                self.present.remove(item)
            self.finished.append(item)

        return step


async def run(items: Fake, drain: Drain, metrics: Metrics | None = None) -> bool:
    return await vacate_loop(
        items, drain, poll=POLL, retry_delays=(POLL,), metrics=metrics or Metrics()
    )


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


async def test_items_that_leave_over_passes_vacate_the_target() -> None:
    items = Fake("a", "b")
    items.step_errors = {"b": [TemporaryError("HTTP 500")]}  # b leaves a pass later
    assert await run(items, Drain()) is True
    assert items.steps == ["a", "b", "b"]
    assert items.seen_passes == [["a", "b"], ["b"], []]
    assert items.firsts == 1


async def test_cutoff_with_items_left_is_false_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lifecycled")
    items = Fake("a", "b")
    items.stays = {"b"}
    assert await run(items, Drain(seconds=0.1)) is False
    [record] = [r for r in caplog.records if r.getMessage().startswith("drain deadline")]
    assert record.getMessage() == "drain deadline reached with items left"
    assert record.fields == {"node": "n1", "items": ["ns/b"]}  # type: ignore[attr-defined]
    assert items.steps.count("b") > 1  # decided again on every pass until the cutoff


async def test_a_listing_temporary_error_fails_one_pass_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lifecycled")
    metrics = Metrics()
    items = Fake("a", "b")
    items.stays = {"b"}
    items.list_errors = [TemporaryError("HTTP 503")]  # the very first listing
    drain = Drain()

    async def later() -> None:
        await asyncio.sleep(POLL * 5)
        items.list_errors = [TemporaryError("HTTP 429", delay=POLL)]
        await asyncio.sleep(POLL * 5)
        items.stays.clear()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(later())
        assert await run(items, drain, metrics) is True
    assert messages(caplog).count("drain pass failed; will retry") == 2
    assert items.firsts == 1  # the loop's own bookkeeping survived the failed passes
    value = metrics.registry.get_sample_value
    kind = {"kind": "spot_interruption", "error": "temporary"}
    assert value("lifecycled_drain_errors_total", kind) == 2


async def test_a_listing_error_at_the_cutoff_is_the_drains_to_handle() -> None:
    items = Fake("a")
    items.stays = {"a"}
    drain = Drain(seconds=0.05)
    await asyncio.sleep(0.06)
    items.list_errors = [TemporaryError("HTTP 500")]
    with pytest.raises(TemporaryError):
        await run(items, drain)


async def test_a_permanent_listing_error_ends_the_vacate() -> None:
    items = Fake("a")
    items.list_errors = [PermanentError("HTTP 403: forbidden")]
    with pytest.raises(PermanentError):
        await run(items, Drain())


async def test_a_failed_step_is_logged_and_retried_on_a_later_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lifecycled")
    items = Fake("a", "b")
    items.step_errors = {"a": [TemporaryError("HTTP 500"), PermanentError("HTTP 422")]}
    assert await run(items, Drain()) is True
    assert items.steps == ["a", "b", "a", "a"]
    failed = [r for r in caplog.records if r.getMessage() == "item step failed; will retry"]
    assert [r.fields["error"] for r in failed] == ["HTTP 500", "HTTP 422"]  # type: ignore[attr-defined]


async def test_overlapping_steps_run_across_passes_and_are_cancelled_at_the_end() -> None:
    items = Fake("slow", "quick")
    items.overlap = True
    items.stays = {"slow"}
    items.durations = {"slow": 10.0}

    async def leave() -> None:
        await asyncio.sleep(POLL * 10)
        items.present.remove("slow")  # gone before its step is done (ECS moved it)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(leave())
        assert await run(items, Drain()) is True
    # Each step started once: no item is decided again while its step runs.
    assert sorted(items.steps) == ["quick", "slow"]
    assert items.listings > 3
    assert items.finished == ["quick"]  # the slow one's step was cancelled, not awaited


async def test_each_pass_runs_inside_a_turn_and_pauses_outside() -> None:
    class Turns(Fake):
        def __init__(self, *names: str) -> None:
            super().__init__(*names)
            self.inside = False
            self.turns = 0
            self.outside_turn: list[str] = []  # listings or steps seen outside a turn

        @contextlib.asynccontextmanager
        async def _turn(self) -> AsyncIterator[None]:
            self.turns += 1
            self.inside = True
            try:
                yield
            finally:
                self.inside = False

        def turn(self) -> contextlib.AbstractAsyncContextManager[None]:
            return self._turn()

        async def left(self) -> list[str]:
            if not self.inside:
                self.outside_turn.append("listing")
            return await super().left()

    items = Turns("a", "b")
    items.step_errors = {"b": [TemporaryError("HTTP 500")]}
    paused_inside: list[bool] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        if seconds > 0:  # the pauses between passes (the fake's steps sleep 0)
            paused_inside.append(items.inside)
        await real_sleep(seconds)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lifecycled.platforms.vacate.asyncio.sleep", sleep)
        assert await run(items, Drain()) is True
    assert items.turns == items.listings == 3
    assert items.outside_turn == []
    assert paused_inside and not any(paused_inside)
