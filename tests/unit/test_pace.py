"""Storm pacing (lifecycled/pace.py): the request budget, the eviction slots, the settle gate."""

from __future__ import annotations

import asyncio

from lifecycled.pace import NORMAL, URGENT, Evictions, RateLimiter


async def test_the_budget_serves_urgent_callers_first() -> None:
    limiter = RateLimiter(qps=50, burst=1)
    await limiter.take()  # the burst is spent: everyone else waits for a token
    order: list[str] = []

    async def take(name: str, priority: int) -> None:
        await limiter.take(priority)
        order.append(name)

    tasks = [asyncio.create_task(take(f"evict-{n}", NORMAL)) for n in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("cordon", URGENT)))
    await asyncio.gather(*tasks)
    assert order[0] == "cordon"
    assert order[1:] == ["evict-0", "evict-1", "evict-2"]


async def test_a_429_pauses_the_budget() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(qps=1000, burst=1)
    await limiter.take()
    limiter.pause(0.3)
    started = loop.time()
    await limiter.take()
    assert loop.time() - started >= 0.29


async def test_eviction_slots_go_nearest_deadline_first() -> None:
    evictions = Evictions(in_flight=1, settle_seconds=0, settle_max_seconds=0)
    order: list[float] = []
    release = asyncio.Event()

    async def evict(deadline: float) -> None:
        async with evictions.slot(deadline):
            order.append(deadline)
            await release.wait()

    first = asyncio.create_task(evict(50.0))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(evict(d)) for d in (30.0, 10.0, 20.0)]
    await asyncio.sleep(0.01)
    assert order == [50.0]  # one in flight
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == [50.0, 10.0, 20.0, 30.0]


async def test_events_wait_while_drains_keep_opening_and_no_longer_than_the_cap() -> None:
    loop = asyncio.get_running_loop()
    evictions = Evictions(in_flight=1, settle_seconds=0.2, settle_max_seconds=0.6)
    started = loop.time()
    await evictions.quiet()
    assert loop.time() - started < 0.05  # nothing opened: no wait
    evictions.opened()
    started = loop.time()
    await evictions.quiet()
    assert 0.18 <= loop.time() - started < 0.4  # quiet once no drain opened for 0.2 s

    async def keep_opening() -> None:
        while True:
            evictions.opened()
            await asyncio.sleep(0.05)

    opener = asyncio.create_task(keep_opening())
    await asyncio.sleep(0)  # the first drain opens
    started = loop.time()
    await evictions.quiet()  # never quiet: the cap ends the wait
    opener.cancel()
    assert 0.55 <= loop.time() - started < 0.9


async def test_drains_take_turns_nearest_deadline_first() -> None:
    loop = asyncio.get_running_loop()
    evictions = Evictions(in_flight=2, settle_seconds=0, settle_max_seconds=0)
    order: list[float] = []
    inside = 0
    most = 0

    async def drain_pass(deadline: float) -> None:
        nonlocal inside, most
        async with evictions.turn(deadline, until=loop.time() + 5):
            inside += 1
            most = max(most, inside)
            order.append(deadline)
            await asyncio.sleep(0.02)
            inside -= 1

    first = [asyncio.create_task(drain_pass(d)) for d in (90.0, 80.0)]
    await asyncio.sleep(0)
    later = [asyncio.create_task(drain_pass(d)) for d in (30.0, 10.0, 20.0)]
    await asyncio.gather(*first, *later)
    assert most == 2
    assert order == [90.0, 80.0, 10.0, 20.0, 30.0]


async def test_a_pass_waiting_for_its_turn_goes_ahead_at_its_cutoff() -> None:
    loop = asyncio.get_running_loop()
    evictions = Evictions(in_flight=1, settle_seconds=0, settle_max_seconds=0)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with evictions.turn(1.0, until=loop.time() + 5):
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    started = loop.time()
    async with evictions.turn(2.0, until=loop.time() + 0.1):
        waited = loop.time() - started  # no turn was free: the cutoff let it in
    assert 0.09 <= waited < 0.5
    release.set()
    await holder
    # It took no turn, so it gave none back: still one pass at a time.
    holding.clear()
    release.clear()
    async with evictions.turn(3.0, until=loop.time() + 5):
        blocked = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        assert not holding.is_set()  # the next pass waits for this turn
    await asyncio.wait_for(holding.wait(), 1)
    release.set()
    await blocked
