"""A failed first attempt is retried as a first attempt; a drain survives temporary errors
and ends with an outcome (hook released) on a permanent one."""

from __future__ import annotations

import asyncio

import pytest

from lifecycled.errors import NotFoundError, PermanentError, TemporaryError
from lifecycled.model import Disposition, NoticeKind
from lifecycled.platforms import DrainState
from lifecycled.record import DrainRecord, Outcome, Phase
from tests.unit.test_coordinator_controls import HOOK, Hooks, Platform, coordinator, notice


class Flaky(Platform):
    """Raises the queued errors, one per call, at the named method."""

    def __init__(self, **errors: list[Exception]) -> None:
        super().__init__()
        self.release.set()
        self.errors = errors

    def _maybe_fail(self, where: str) -> None:
        queued = self.errors.get(where)
        if queued:
            raise queued.pop(0)

    async def resolve(self, instance_id):  # type: ignore[no-untyped-def]
        self._maybe_fail("resolve")
        return await super().resolve(instance_id)

    async def write_record(self, target: str, record: DrainRecord, *, cordon: bool) -> None:
        self._maybe_fail("write_record")
        await super().write_record(target, record, cordon=cordon)

    async def vacate(self, target: str, drain: DrainState) -> bool:
        self._maybe_fail("vacate")
        return await super().vacate(target, drain)


def closed(platform: Platform) -> list[Outcome | None]:
    return [r.outcome for r in platform.writes if r.phase is Phase.DONE]


@pytest.mark.parametrize("where", ["resolve", "write_record"])
async def test_a_failed_first_attempt_is_not_a_duplicate_when_redelivered(where: str) -> None:
    platform, hooks = Flaky(**{where: [TemporaryError("HTTP 429: throttled")]}), Hooks()
    c = coordinator(platform, hooks)
    spot = notice(NoticeKind.SPOT_INTERRUPTION, "spot")
    async with c.running():
        with pytest.raises(TemporaryError):
            await c.submit(spot)  # the source releases the message; SQS redelivers it
        assert await c.submit(spot) == [Disposition.OPENED]
        assert await c.submit(spot) == [Disposition.DUPLICATE]  # handled now: seen
        await asyncio.sleep(0.1)
    assert closed(platform) == [Outcome.DRAINED]


async def test_a_temporary_error_in_a_drain_is_retried_until_it_drains() -> None:
    errors: list[Exception] = [TemporaryError("HTTP 500"), TemporaryError("HTTP 503")]
    platform, hooks = Flaky(vacate=errors), Hooks()
    c = coordinator(platform, hooks)
    terminate = notice(NoticeKind.LIFECYCLE_TERMINATE, "hook", deadline=None, lifecycle=HOOK)
    async with c.running():
        assert await c.submit(terminate) == [Disposition.OPENED]
        await asyncio.wait_for(hooks.done.wait(), 5)
    assert closed(platform) == [Outcome.DRAINED]
    assert hooks.completed == [("drain", "CONTINUE")]
    assert (
        c._metrics.registry.get_sample_value(
            "lifecycled_drain_errors_total", {"kind": "lifecycle_terminate", "error": "temporary"}
        )
        == 2
    )


async def test_a_permanent_error_ends_the_drain_as_failed_and_releases_its_hook() -> None:
    platform, hooks = Flaky(vacate=[PermanentError("HTTP 403: forbidden")]), Hooks()
    c = coordinator(platform, hooks)
    terminate = notice(NoticeKind.LIFECYCLE_TERMINATE, "hook", deadline=None, lifecycle=HOOK)
    async with c.running():
        assert await c.submit(terminate) == [Disposition.OPENED]
        await asyncio.wait_for(hooks.done.wait(), 5)
        await asyncio.sleep(0.05)
        assert c.open_drains == 0
    assert closed(platform) == [Outcome.FAILED]
    assert hooks.completed == [("drain", "CONTINUE")]
    assert (
        c._metrics.registry.get_sample_value(
            "lifecycled_drain_errors_total", {"kind": "lifecycle_terminate", "error": "permanent"}
        )
        == 1
    )


async def test_a_hook_for_a_node_already_deleted_is_released_at_once() -> None:
    platform, hooks = Flaky(write_record=[NotFoundError("HTTP 404: node not found")]), Hooks()
    c = coordinator(platform, hooks)
    terminate = notice(NoticeKind.LIFECYCLE_TERMINATE, "hook", deadline=None, lifecycle=HOOK)
    async with c.running():
        assert await c.submit(terminate) == [Disposition.RECORDED]
        assert c.open_drains == 0
    assert hooks.completed == [("drain", "CONTINUE")]
