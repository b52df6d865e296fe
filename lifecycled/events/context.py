"""What every parser knows about a message besides its payload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lifecycled.events.result import Ignored, IgnoreReason
from lifecycled.model import InstanceId, NoticeKind


@dataclass(frozen=True, slots=True)
class Envelope:
    """What an SNS envelope adds: fallbacks for fields the inner message lacks."""

    message_id: str | None = None
    region: str | None = None
    account: str | None = None


NO_ENVELOPE = Envelope()


@dataclass(frozen=True, slots=True)
class EventMeta:
    """The common fields of one event, with the envelope's fallbacks applied."""

    event_id: str
    event_time: datetime
    region: str | None
    account: str | None

    def ignored(
        self,
        reason: IgnoreReason,
        detail: str,
        *,
        kind: NoticeKind | None = None,
        instance_ids: tuple[InstanceId, ...] = (),
        state: str | None = None,
    ) -> Ignored:
        return Ignored(
            reason,
            detail,
            event_id=self.event_id,
            kind=kind,
            instance_ids=instance_ids,
            event_time=self.event_time,
            region=self.region,
            account=self.account,
            state=state,
        )
