"""Waiting for conditions the stack reaches asynchronously (deliveries, timeouts)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Call predicate until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,  # noqa: ASYNC109 - same signature as wait_for
    interval: float = 0.05,
) -> T:
    """wait_for for async tests: the (blocking) predicate runs in a worker thread, so the
    event loop, and the service under test on it, keeps running meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
