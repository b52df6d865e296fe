"""Load balancer targets, shared by both platforms: deregister, then wait until they left.

A deregistered target keeps serving its open connections while it drains (`draining`) for
up to the target group's deregistration delay; only then is it `unused`. The callers decide
what "long enough" means (ECS: the task's stopTimeout must still fit before the cutoff;
Kubernetes: the pods' grace periods must).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.elbv2 import InvalidTargetError, LbTarget

K = TypeVar("K")
V = TypeVar("V")

OUT_OF_GROUP_STATES = frozenset({"unused"})  # `unused` + Target.NotRegistered: out of the group


class WaitOutcome(enum.StrEnum):
    UNUSED = "unused"  # every target left its group (or load balancer)
    DELAY_PASSED = "delay_passed"  # the deregistration delay ran out first
    CAPPED = "capped"  # cut short: the pods (or task) need the time left


class Cache(Generic[K, V]):
    """A small time-bounded cache (task definitions, services, target group delays)."""

    def __init__(self, max_age: float) -> None:
        self._max_age = max_age
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] > self._max_age:
            return None
        return hit[1]

    def put(self, key: K, value: V) -> V:
        if len(self._items) > 1000:
            self._items.clear()
        self._items[key] = (time.monotonic(), value)
        return value


class TargetGroups:
    """DeregisterTargets / DescribeTargetHealth / the deregistration delay (cached)."""

    def __init__(self, aws: AwsClients, cache_seconds: float) -> None:
        self._aws = aws
        self._delays: Cache[str, float] = Cache(cache_seconds)

    async def deregister(self, group: str, targets: list[LbTarget]) -> None:
        # InvalidTarget: not registered (any more); someone, or an earlier attempt, was first.
        with contextlib.suppress(InvalidTargetError):
            await self._aws.elbv2.deregister_targets(group, targets)

    async def gone(self, group: str, targets: list[LbTarget]) -> bool:
        states = await self._aws.elbv2.target_states(group, targets)
        return all(states.get(t, "unused") in OUT_OF_GROUP_STATES for t in targets)

    async def delay(self, group: str) -> float:
        cached = self._delays.get(group)
        if cached is None:
            cached = self._delays.put(group, await self._aws.elbv2.deregistration_delay(group))
        return cached


async def wait_gone(
    checks: Sequence[Callable[[], Awaitable[bool]]],
    *,
    delay: float,
    limit: Callable[[], float],
    poll: float,
) -> tuple[WaitOutcome, float]:
    """Poll `checks` (each True once its targets left) until all pass, the deregistration
    `delay` has run out (plus one poll: AWS reports `unused` just after), or loop time
    `limit()` — read on every round, since a tighter notice can move it. Returns the
    outcome and the seconds waited."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = list(checks)
    while True:
        pending = [check for check in pending if not await check()]
        now = loop.time()
        if not pending:
            return WaitOutcome.UNUSED, now - started
        delay_end, cap = started + delay + poll, limit()
        if now >= min(delay_end, cap):
            outcome = WaitOutcome.DELAY_PASSED if delay_end <= cap else WaitOutcome.CAPPED
            return outcome, now - started
        await asyncio.sleep(max(0.0, min(poll, delay_end - now, cap - now)))
