"""A map whose entries expire and whose size is capped: the coordinator's memory of what it
saw stays flat however many instances a long-lived handler hears about."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_CAP = 10_000


class Expiring(Generic[K]):
    """key -> expiry (monotonic seconds). Over `cap`, expired entries go first, then the
    oldest: a forgotten entry only costs a second look, never a wrong action."""

    def __init__(self, cap: int = DEFAULT_CAP, clock: Callable[[], float] = time.monotonic) -> None:
        self._cap = cap
        self._clock = clock
        self._until: dict[K, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, key: object) -> bool:
        until = self._until.get(key)  # type: ignore[arg-type]
        return until is not None and until > self._clock()

    def add(self, key: K, ttl: float) -> None:
        self._until.pop(key, None)  # re-added: now the newest
        self._until[key] = self._clock() + ttl
        if len(self._until) > self._cap:
            self._shrink()

    def clear(self) -> None:
        self._until.clear()

    def discard(self, key: K) -> None:
        self._until.pop(key, None)

    def _shrink(self) -> None:
        # To nine tenths of the cap, so the scan is paid once per cap/10 additions, not each.
        now = self._clock()
        self._until = {k: v for k, v in self._until.items() if v > now}
        keep = self._cap - self._cap // 10
        for key in list(self._until)[: max(0, len(self._until) - keep)]:
            del self._until[key]
