"""Coalesce single calls into batch calls (SQS's DeleteMessageBatch, SendMessageBatch).

Each caller awaits its own entry and gets its own entry's error: batching changes the
number of requests, not what a caller sees. A batch goes out when it is full or `linger`
seconds after its first entry, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

# One result per entry, in order: None for success, else the entry's error.
Flush = Callable[[list[T]], Awaitable[Sequence[Exception | None]]]


class Batcher(Generic[T]):
    def __init__(self, flush: Flush[T], *, size: int = 10, linger: float = 0.02) -> None:
        self._flush = flush
        self._size = size
        self._linger = linger
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, entry: T) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((entry, done))
        if len(self._pending) >= self._size:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger, self._send)
        await done

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending[: self._size], self._pending[self._size :]
        if self._pending:  # more than a batch waiting: the rest goes out at once too
            asyncio.get_running_loop().call_soon(self._send)
        if batch:
            task = asyncio.create_task(self._deliver(batch), name="batch-flush")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            results = await self._flush([entry for entry, _ in batch])
        except Exception as exc:  # the whole call failed: every entry's caller hears it
            results = [exc] * len(batch)
        for (_, done), error in zip(batch, results, strict=True):
            if done.done():
                continue  # its caller was cancelled
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
