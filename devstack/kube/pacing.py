"""Timers for what falls due later, and a pacer that spaces out an object's status writes."""

from __future__ import annotations

import heapq

Key = tuple[str, str]  # (namespace, name)


class Timers:
    """Due times per key; a key has at most one live entry (the earliest asked for)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, Key]] = []
        self._at: dict[Key, float] = {}

    def at(self, key: Key, due: float) -> None:
        current = self._at.get(key)
        if current is not None and current <= due:
            return
        self._at[key] = due
        heapq.heappush(self._heap, (due, key))

    def due(self, now: float) -> list[Key]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._at.get(key) == due:
                del self._at[key]
                out.append(key)
        return out

    def cancel(self, key: Key) -> None:
        self._at.pop(key, None)  # the heap entry is skipped when it comes up

    def __len__(self) -> int:
        return len(self._at)


class Pacer:
    """At most one write per key every `interval` seconds. The first change after a quiet
    period goes at once; a later one inside the interval waits for its end (`due` hands the
    key back then, to be synced again). Controllers use it for status writes only, never for
    the work itself (creating or deleting pods)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: dict[Key, float] = {}
        self.timers = Timers()

    def allow(self, key: Key, now: float) -> bool:
        last = self.last.get(key)
        if last is not None and now - last < self.interval:
            self.timers.at(key, last + self.interval)
            return False
        self.last[key] = now
        return True

    def due(self, now: float) -> list[Key]:
        return self.timers.due(now)

    def forget(self, key: Key) -> None:
        self.last.pop(key, None)
        self.timers.cancel(key)
