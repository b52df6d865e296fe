"""The coordinator's operator controls against a platform and hooks that only record calls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from lifecycled.coordinator import Coordinator
from lifecycled.model import Disposition, HookInfo, InstanceId, LifecycleAction, Notice, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.platforms import DrainState
from lifecycled.record import DrainRecord, HookRef
from lifecycled.settings import load_settings

INSTANCE = InstanceId("i-0123456789abcdef0")
HOOK = LifecycleAction("drain", "workers", "t" * 36, "autoscaling:EC2_INSTANCE_TERMINATING")


class Platform:
    def __init__(self) -> None:
        self.writes: list[DrainRecord] = []
        self.vacating = asyncio.Event()
        self.release = asyncio.Event()

    async def resolve(self, instance_id: InstanceId) -> str | None:
        return "node-1" if instance_id == INSTANCE else None

    async def write_record(self, target: str, record: DrainRecord, *, cordon: bool) -> None:
        self.writes.append(record)

    async def open_records(self) -> list[tuple[str, DrainRecord]]:
        return []

    async def uncordon(self, target: str, record: DrainRecord) -> None:
        self.writes.append(record)

    async def ready(self, target: str) -> bool:
        return True

    async def vacate(self, target: str, drain: DrainState) -> bool:
        self.vacating.set()
        await self.release.wait()
        return True


class Hooks:
    def __init__(self) -> None:
        self.completed: list[tuple[str, str]] = []
        self.done = asyncio.Event()

    async def info(self, hook: HookRef) -> HookInfo:
        return HookInfo(heartbeat_timeout=300, global_timeout=30000, default_result="ABANDON")

    async def hold(
        self, hook: HookRef, instance_id: str, done: asyncio.Event, on_error: object = None
    ) -> None:
        await done.wait()

    async def complete(self, hook: HookRef, instance_id: str, result: str = "CONTINUE") -> bool:
        self.completed.append((hook.name, result))
        self.done.set()
        return True


def notice(kind: NoticeKind, event_id: str, **fields: Any) -> Notice:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"deadline": now + timedelta(minutes=2)}
    values.update(fields)
    return Notice(kind=kind, instance_ids=(INSTANCE,), event_id=event_id, event_time=now, **values)


def coordinator(platform: Platform, hooks: Hooks, **settings: Any) -> Coordinator:
    return Coordinator(
        platform,
        hooks,  # type: ignore[arg-type]
        load_settings(queue_url="http://q", retry_delays=(0.01,), **settings),
        Metrics(),
    )


async def test_a_hook_with_action_none_is_released_by_the_drain_under_way() -> None:
    platform, hooks = Platform(), Hooks()
    c = coordinator(platform, hooks, lifecycle_terminate_action="none")
    async with c.running():
        assert await c.submit(notice(NoticeKind.SPOT_INTERRUPTION, "spot")) == [Disposition.OPENED]
        await platform.vacating.wait()
        terminate = notice(NoticeKind.LIFECYCLE_TERMINATE, "hook", deadline=None, lifecycle=HOOK)
        assert await c.submit(terminate) == [Disposition.MERGED]
        assert hooks.completed == []  # held while the drain runs
        platform.release.set()
        await asyncio.wait_for(hooks.done.wait(), 5)
    assert hooks.completed == [("drain", "CONTINUE")]


async def test_a_hook_with_action_none_and_no_drain_is_released_at_once() -> None:
    platform, hooks = Platform(), Hooks()
    c = coordinator(platform, hooks, lifecycle_terminate_action="none")
    async with c.running():
        terminate = notice(NoticeKind.LIFECYCLE_TERMINATE, "hook", deadline=None, lifecycle=HOOK)
        assert await c.submit(terminate) == [Disposition.RECORDED]
    assert hooks.completed == [("drain", "CONTINUE")]
    assert platform.writes == []


async def test_a_dry_run_writes_nothing_and_leaves_hooks_alone() -> None:
    platform, hooks = Platform(), Hooks()
    c = coordinator(platform, hooks, dry_run=True)
    async with c.running():
        spot = notice(NoticeKind.SPOT_INTERRUPTION, "spot")
        terminate = notice(NoticeKind.LIFECYCLE_TERMINATE, "hook", deadline=None, lifecycle=HOOK)
        assert await c.submit(spot) == [Disposition.DRY_RUN]
        assert await c.submit(terminate) == [Disposition.DRY_RUN]
        assert c.open_drains == 0
    assert platform.writes == [] and hooks.completed == []
    assert not platform.vacating.is_set()


async def test_a_notice_not_ours_is_not_mistaken_for_a_duplicate_when_it_comes_back() -> None:
    platform, hooks = Platform(), Hooks()
    c = coordinator(platform, hooks)
    stranger = Notice(
        kind=NoticeKind.SPOT_INTERRUPTION,
        instance_ids=(InstanceId("i-0fedcba9876543210"),),
        event_id="spot",
        event_time=datetime.now(UTC),
        deadline=None,
    )
    async with c.running():
        assert await c.submit(stranger) == [Disposition.NOT_OURS]
        assert await c.submit(stranger) == [Disposition.NOT_OURS]  # judged moments ago
        c._foreign.clear()  # the judgement expired: looked at afresh, not a duplicate
        assert await c.submit(stranger) == [Disposition.NOT_OURS]
    assert platform.writes == []
