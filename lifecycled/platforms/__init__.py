"""Platforms act on machines; the coordinator tells them which, and until when."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lifecycled.model import InstanceId
from lifecycled.record import DrainRecord
from lifecycled.report import Progress


class DrainState(Protocol):
    """What a platform may see of the drain it works for (the record can change under it:
    a later notice may tighten the deadline or attach a hook)."""

    @property
    def record(self) -> DrainRecord: ...

    @property
    def progress(self) -> Progress:
        """Where the platform notes pods evicted and left (read when the drain ends)."""
        ...

    def cutoff(self) -> float:
        """Loop time after which no new eviction starts (the deadline minus the margin)."""
        ...

    def remaining(self) -> float:
        """Seconds until the drain's deadline (negative once it passed)."""
        ...


class Platform(Protocol):
    async def resolve(self, instance_id: InstanceId) -> str | None:
        """The target (node, container instance) behind an instance, or None if not ours."""

    async def write_record(self, target: str, record: DrainRecord, *, cordon: bool) -> None:
        """Persist the drain's intent on the target (and stop new work landing there)."""

    async def open_records(self) -> list[tuple[str, DrainRecord]]:
        """Every drain record found on the platform, for resuming after a restart."""

    async def uncordon(self, target: str, record: DrainRecord) -> None:
        """Give the target back (its change was cancelled): lift our cordon, write `record`."""

    async def ready(self, target: str) -> bool:
        """Whether the target accepts work (a node Ready and schedulable; an ACTIVE instance)."""

    async def vacate(self, target: str, drain: DrainState) -> bool:
        """Move the work off; True once it is gone, False if the cutoff passed first."""


@runtime_checkable
class Previewer(Protocol):
    """A platform that can say what a drain would do without doing it (dry run, explain)."""

    async def preview(self, target: str, record: DrainRecord) -> list[dict[str, str]]:
        """One entry per workload: what a drain with this record would do to it, and why."""
