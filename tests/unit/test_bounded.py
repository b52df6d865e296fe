"""Bounded state: a coordinator that hears of 100,000 distinct instances keeps its memory
flat (every map expires and is capped); Expiring forgets expired entries first."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from lifecycled.bounded import Expiring
from lifecycled.model import InstanceId, Notice, NoticeKind
from lifecycled.platforms import DrainState
from lifecycled.record import DrainRecord
from tests.unit.test_coordinator_controls import Hooks, Platform, coordinator

INSTANCES = 100_000


class Everything(Platform):
    """Every instance is ours and drains at once, except the odd ones: not in the cluster."""

    async def resolve(self, instance_id: InstanceId) -> str | None:
        return None if int(instance_id[-1], 16) % 2 else f"node-{instance_id}"

    async def write_record(self, target: str, record: DrainRecord, *, cordon: bool) -> None:
        pass  # nothing kept: the fake must not be what grows

    async def vacate(self, target: str, drain: DrainState) -> bool:
        return True


def spot(n: int) -> Notice:
    now = datetime.now(UTC)
    return Notice(
        kind=NoticeKind.SPOT_INTERRUPTION,
        instance_ids=(InstanceId(f"i-{n:017x}"),),
        event_id=f"event-{n}",
        event_time=now,
        deadline=now + timedelta(minutes=2),
    )


def test_expired_entries_go_first_then_the_oldest() -> None:
    now = [0.0]
    seen: Expiring[str] = Expiring(cap=10, clock=lambda: now[0])
    seen.add("short", 1)
    for key in "abcdefghi":
        seen.add(key, 100)
    now[0] = 2.0
    seen.add("j", 100)  # over the cap: the expired one goes, then the oldest, to 9/10 of it
    assert len(seen) == 9 and "short" not in seen and "a" not in seen
    assert all(k in seen for k in "bcdefghij")
    seen.add("k", 100)
    assert len(seen) == 10 and "k" in seen


async def test_memory_stays_flat_over_100000_distinct_instances(caplog: Any) -> None:
    caplog.set_level(logging.WARNING)  # the capture would keep every info line: not ours to count
    c = coordinator(Everything(), Hooks())
    objects: list[int] = []
    async with c.running():
        for n in range(INSTANCES):
            await c.submit(spot(n))
            if n % 1000 == 0:
                await asyncio.sleep(0)  # let finished drains go
            if n + 1 in (INSTANCES // 4, INSTANCES):
                await asyncio.sleep(0.1)
                gc.collect()
                objects.append(len(gc.get_objects()))
        assert c.open_drains == 0
    for memory in (c._seen, c._finished, c._threatened, c._foreign):
        assert len(memory) <= 10_000
    assert c._locks == {}
    grew = objects[1] - objects[0]
    assert grew < 5_000, f"{grew} more live objects at 100,000 instances than at 25,000"
