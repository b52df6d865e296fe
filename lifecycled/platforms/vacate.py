"""The vacate loop, one for every platform: move the work off a target until none is left.

A pass: list what is left -> at the cutoff, stop (the items left are logged) -> decide per
item -> act, in parallel -> wait `drain_poll_seconds` (never past the cutoff). Each pass runs
inside the platform's `turn` (Kubernetes: drains take turns in a storm), the wait outside.
True once nothing is left, False when the cutoff passed first.

The platform supplies the items (pods on a node, tasks on a container instance) through
`Items`: how to list, name and decide about them, and a few hooks. An item's step that fails
is logged and the item is decided again on a later pass. A pass that fails with a
TemporaryError (its listing, a decision) is logged and tried again, with the
`retry_delays` back-off, while before the cutoff: the loop and its platform keep their
bookkeeping. A PermanentError ends the vacate (and the drain, as failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lifecycled.errors import LifecycledError, PermanentError, TemporaryError
from lifecycled.observe import Metrics, fields
from lifecycled.pace import in_turn
from lifecycled.platforms import DrainState

log = logging.getLogger(__name__)

T = TypeVar("T")

Step = Callable[[], Awaitable[None]]  # what to do about one item now


class Items(Protocol[T]):
    """One target's work as the vacate loop sees it. The hooks do nothing unless overridden
    (subclass `Items` to inherit them)."""

    noun: str  # "pod", "task": log lines name the items ("... with pods left")
    where: dict[str, object]  # log fields naming the target
    # False: each pass finishes its steps before it pauses (a step is a few API calls).
    # True: a step may run on across passes (it waits, e.g. for a target group to drain);
    # its item is not decided again meanwhile, and a step still running when the loop
    # ends is cancelled.
    overlap: bool
    # Without overlap: at most this many steps at once (0: all of a pass's steps at once).
    parallel: int = 0

    def key(self, item: T) -> str:
        """The item's identity across listings (a pod's uid, a task's ARN)."""
        ...

    def label(self, item: T) -> str:
        """How log lines name the item."""
        ...

    async def left(self) -> list[T]:
        """What must still go, listed afresh; empty: the target is vacated."""
        ...

    async def decide(self, item: T) -> Step | None:
        """What to do about the item now, or None: wait (it is going, or may stay a while)."""
        ...

    async def first_listing(self, items: list[T]) -> bool:
        """Once, on the first listing, before anything else. True when time passed and the
        loop should list again at once (Kubernetes: the node out of its load balancers)."""
        return False

    def seen(self, items: list[T]) -> None:
        """Every listing, before the items are counted (Kubernetes: waited-for jobs no longer
        listed have finished)."""
        return None

    async def acting(self, items: list[T]) -> None:
        """A pass is about to start steps for these items."""
        return None

    def turn(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Entered around each pass, its listing to its last step (Kubernetes: a storm's
        drains take turns, so the waiting ones hold no listing)."""
        return contextlib.nullcontext()


async def vacate_loop(
    items: Items[T],
    drain: DrainState,
    *,
    poll: float,
    retry_delays: Sequence[float],
    metrics: Metrics,
) -> bool:
    """Pass after pass until nothing is left (True) or the cutoff passed first (False)."""
    running: dict[str, asyncio.Task[None]] = {}  # item key -> its step
    error: LifecycledError
    async with asyncio.TaskGroup() as tg:
        try:
            return await _passes(
                items, drain, tg, running, poll=poll, delays=retry_delays or (1.0,), metrics=metrics
            )
        except LifecycledError as exc:
            # Raised below, outside the group: escaping its body, it would reach the drain
            # wrapped in an ExceptionGroup, and the drain tells errors apart by their type.
            error = exc
        finally:
            for task in running.values():
                task.cancel()
    raise error


@dataclass(slots=True)
class _Passes:
    first: bool = True
    failures: int = 0  # passes failed in a row


async def _passes(
    items: Items[T],
    drain: DrainState,
    tg: asyncio.TaskGroup,
    running: dict[str, asyncio.Task[None]],
    *,
    poll: float,
    delays: Sequence[float],
    metrics: Metrics,
) -> bool:
    loop = asyncio.get_running_loop()
    passes = _Passes()
    while True:
        async with items.turn():
            outcome = await _pass(
                items, drain, tg, running, passes, poll=poll, delays=delays, metrics=metrics
            )
        if isinstance(outcome, bool):
            return outcome
        await asyncio.sleep(min(outcome, max(0.0, drain.cutoff() - loop.time())))


async def _pass(
    items: Items[T],
    drain: DrainState,
    tg: asyncio.TaskGroup,
    running: dict[str, asyncio.Task[None]],
    passes: _Passes,
    *,
    poll: float,
    delays: Sequence[float],
    metrics: Metrics,
) -> bool | float:
    """One pass: True/False when the vacate is over, else the seconds to pause before the next
    (never past the cutoff)."""
    loop = asyncio.get_running_loop()
    try:
        # Steps that ended before this listing: their effect shows in it. One that ends
        # while we list may not (a stale listing): it counts as running for one more pass.
        settled = {key for key, task in running.items() if task.done()}
        listed = await items.left()
        if passes.first:
            passes.first = False
            if await items.first_listing(listed):
                return 0.0  # time passed: list again
        items.seen(listed)
        if not listed:
            return True
        if loop.time() >= drain.cutoff():
            log.warning(
                f"drain deadline reached with {items.noun}s left",
                extra=fields(
                    **items.where,
                    **{f"{items.noun}s": [items.label(i) for i in listed][:20]},
                ),
            )
            return False
        plan = await _plan(items, listed, running, settled)
        if plan:
            await items.acting([item for item, _ in plan])
    except TemporaryError as exc:
        if loop.time() >= drain.cutoff():
            raise  # no pass left before the cutoff: the drain decides
        delay = exc.delay or delays[min(passes.failures, len(delays) - 1)]
        passes.failures += 1
        metrics.drain_errors.labels(drain.record.kind, "temporary").inc()
        log.warning(
            "drain pass failed; will retry",
            extra=fields(**items.where, attempt=passes.failures, delay=delay, error=str(exc)),
        )
        return delay
    passes.failures = 0
    if plan and not items.overlap and items.parallel:
        await in_turn(plan, lambda p: _guarded(items, *p), items.parallel)
        return poll
    started = []
    for item, step in plan:
        key = items.key(item)
        running[key] = tg.create_task(_guarded(items, item, step), name=f"vacate-{key}")
        started.append(running[key])
    if started and not items.overlap:
        await asyncio.wait(started)
    return poll


async def _plan(
    items: Items[T], listed: list[T], running: dict[str, asyncio.Task[None]], settled: set[str]
) -> list[tuple[T, Step]]:
    """This pass's steps: one per item that needs one now and has none still running."""
    plan: list[tuple[T, Step]] = []
    for key in settled:
        running.pop(key, None)
    for item in listed:
        if items.key(item) in running:
            continue
        step = await items.decide(item)
        if step is not None:
            plan.append((item, step))
    return plan


async def _guarded(items: Items[T], item: T, step: Step) -> None:
    """One item's step; a failure is logged and a later pass decides about the item again."""
    try:
        await step()
    except (TemporaryError, PermanentError) as exc:
        log.warning(
            f"{items.noun} step failed; will retry",
            extra=fields(**items.where, **{items.noun: items.label(item)}, error=str(exc)),
        )
