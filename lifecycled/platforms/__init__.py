"""Platforms act on machines; the coordinator tells them which, and until when."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from lifecycled.events.model import InstanceId
from lifecycled.record import DrainRecord


class Platform(Protocol):
    async def resolve(self, instance_id: InstanceId) -> str | None:
        """The target (node, container instance) behind an instance, or None if not ours."""

    async def write_record(self, target: str, record: DrainRecord, *, cordon: bool) -> None:
        """Persist the drain's intent on the target (and stop new work landing there)."""

    async def open_records(self) -> list[tuple[str, DrainRecord]]:
        """Every drain record found on the platform, for resuming after a restart."""

    async def evict_pods(self, target: str, cutoff: Callable[[], float]) -> bool:
        """Move the work off; True once it is gone, False if `cutoff()` (loop time) passed."""
