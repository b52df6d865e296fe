"""Pacing for a storm: the Kubernetes request budget, and the order evictions go in.

- `RateLimiter`: one token bucket (QPS, burst) shared by every Kubernetes call, as client-go's
  and NTH's `kube-api-qps`/`-burst`. Callers wait in priority order, so a cordon or a hook's
  record never queues behind a thousand evictions; a 429 from the API server (priority and
  fairness) pauses the bucket for its Retry-After.
- `Evictions`: evictions cluster-wide are capped in flight, nearest deadline first; and none
  starts while cordons are still coming (`settle_seconds` after the last drain opened, at
  most `settle_max_seconds`), so evicted pods are not rescheduled onto nodes that are warned
  a moment later. Drains' passes take turns the same way (as many at once as evictions fly,
  nearest deadline first): a storm's other drains wait holding nothing but their record.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")

URGENT = 0  # cordons, drain records, node reads: the first call on a notice's path
NORMAL = 1  # evictions, pod lists, jobs


async def in_turn(items: Sequence[T], act: Callable[[T], Awaitable[None]], workers: int) -> None:
    """`act` on every item, `workers` at a time: a task per worker, not per item (a storm's
    drains hold tens of thousands of pending steps). `act` must not raise."""
    queue = iter(items)

    async def work() -> None:
        for item in queue:
            await act(item)

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(max(1, workers), len(items))):
            tg.create_task(work())


class _Waiters:
    """A priority queue of futures: (priority, arrival) order, cancelled ones skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def add(self, priority: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (priority, next(self._order), future))
        return future

    def pop(self) -> asyncio.Future[None] | None:
        while self._heap:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                return future
        return None

    def __len__(self) -> int:
        return len(self._heap)


class RateLimiter:
    """A token bucket with priorities; `qps <= 0` turns it off."""

    def __init__(self, qps: float, burst: int) -> None:
        self._qps = qps
        self._burst = max(1, burst)
        self._tokens = float(self._burst)
        self._stamp: float | None = None
        self._paused_until = 0.0
        self._waiters = _Waiters()
        self._pump: asyncio.Task[None] | None = None

    def _refill(self, now: float) -> None:
        if self._stamp is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._qps)
        self._stamp = now

    async def take(self, priority: int = NORMAL) -> None:
        if self._qps <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._refill(now)
        if not self._waiters and self._tokens >= 1 and now >= self._paused_until:
            self._tokens -= 1
            return
        future = self._waiters.add(priority)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve(), name="kube-rate-limiter")
        await future

    def pause(self, seconds: float) -> None:
        """The API server said 429 with Retry-After: nobody sends for that long."""
        if seconds > 0:
            loop = asyncio.get_running_loop()
            self._paused_until = max(self._paused_until, loop.time() + seconds)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            now = loop.time()
            self._refill(now)
            if now < self._paused_until:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._qps)
                continue
            future = self._waiters.pop()
            if future is None:
                return
            self._tokens -= 1
            future.set_result(None)
            await asyncio.sleep(0)  # let the woken caller send before the next


class _Gate:
    """At most `size` holders at once; waiters enter in priority order (lowest first)."""

    def __init__(self, size: int) -> None:
        self._free = max(1, size)
        self._waiters = _Waiters()

    async def enter(self, priority: float) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future = self._waiters.add(priority)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.leave()  # we were let in as we were cancelled
            raise

    def leave(self) -> None:
        future = self._waiters.pop()
        if future is None:
            self._free += 1
        else:
            future.set_result(None)


class Evictions:
    """Evictions across every drain: at most `in_flight` at once, nearest deadline first,
    and none before the storm's cordons have settled. Drains take turns as well (`turn`):
    as many drains work at once as evictions fly, so the thousand others of a storm wait
    holding no pod list, no plan and no waiting step."""

    def __init__(self, in_flight: int, settle_seconds: float, settle_max_seconds: float) -> None:
        self._slots = _Gate(in_flight)
        self._turns = _Gate(in_flight)
        self._settle = settle_seconds
        self._settle_max = settle_max_seconds
        self._last_open = float("-inf")

    def opened(self) -> None:
        """A drain was opened (its node cordoned): evictions wait a moment for the next."""
        self._last_open = asyncio.get_running_loop().time()

    async def settled(self, opened_at: float, cutoff: float) -> float:
        """Wait until no drain opened for `settle_seconds`, at most until `settle_max_seconds`
        after `opened_at` and never past a quarter of the time left before `cutoff`. Returns
        the seconds waited."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        latest = min(opened_at + self._settle_max, start + max(0.0, cutoff - start) / 4)
        while True:
            now = loop.time()
            quiet_at = self._last_open + self._settle
            if now >= quiet_at or now >= latest:
                return now - start
            await asyncio.sleep(min(quiet_at, latest) - now)

    async def quiet(self) -> None:
        """Until no drain opened for `settle_seconds`, at most `settle_max_seconds`: what can
        wait (Kubernetes Events) goes after a storm's cordons."""
        loop = asyncio.get_running_loop()
        latest = loop.time() + self._settle_max
        while (now := loop.time()) < latest:
            quiet_at = self._last_open + self._settle
            if now >= quiet_at:
                return
            await asyncio.sleep(min(quiet_at, latest) - now)

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """One eviction in flight; `deadline` (a timestamp) orders the waiters."""
        await self._slots.enter(deadline)
        try:
            yield
        finally:
            self._slots.leave()

    @asynccontextmanager
    async def turn(self, deadline: float, until: float) -> AsyncIterator[None]:
        """One drain's pass; `deadline` (a timestamp) orders the waiters. At `until` (loop
        time: the drain's cutoff) the pass goes ahead without a turn, to end the drain."""
        granted = True
        try:
            async with asyncio.timeout_at(until):
                await self._turns.enter(deadline)
        except TimeoutError:
            granted = False
        try:
            yield
        finally:
            if granted:
                self._turns.leave()
