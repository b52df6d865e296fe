"""One retry loop for the whole service, driven by a tuple of delays from settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from lifecycled.errors import TemporaryError
from lifecycled.observe import fields

T = TypeVar("T")

log = logging.getLogger(__name__)


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    delays: Sequence[float],
    what: str,
    deadline: float | None = None,
    on: type[TemporaryError] = TemporaryError,
    never: tuple[type[TemporaryError], ...] = (),
) -> T:
    """Run `call`; on TemporaryError wait the next delay (or the error's own hint) and retry.

        `deadline` is a loop-time limit: no retry starts that would sleep past it. `on` narrows
        what is retried here (e.g. ConflictError, when the client below already retries the rest);
    `never` lists temporary errors that are the caller's to handle (a 409 needs a fresh read).
        PermanentError and anything unexpected propagate at once.
    """
    attempts = len(delays) + 1
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except on as exc:
            if attempt == attempts or isinstance(exc, never):
                raise
            delay = exc.delay if exc.delay is not None else delays[attempt - 1]
            loop_time = asyncio.get_running_loop().time()
            if deadline is not None and loop_time + delay > deadline:
                raise
            log.info(
                "attempt failed; will retry",
                extra=fields(what=what, attempt=attempt, of=attempts, delay=delay, error=str(exc)),
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def keep_trying(call: Callable[[], Awaitable[T]], *, delays: Sequence[float], what: str) -> T:
    """Start-up steps: retry temporary errors for as long as it takes (the last delay
    repeating, at least 1 s), one log line per failed attempt. A handler that exits on a
    slow API server crash-loops with a growing back-off, during which warnings wait."""
    attempt = 0
    while True:
        try:
            return await call()
        except TemporaryError as exc:
            attempt += 1
            delay = exc.delay or max(1.0, delays[min(attempt, len(delays)) - 1] if delays else 1.0)
            log.warning(
                "start-up step failed; will retry",
                extra=fields(what=what, attempt=attempt, delay=delay, error=str(exc)),
            )
            await asyncio.sleep(delay)
