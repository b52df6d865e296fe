"""What fits in ECS attributes and task tags.

ECS attribute values: 1-128 characters of letters, digits, `- _ . @ / \\ :` and inner spaces;
at most 10 custom attributes per container instance. Task tag values: up to 256 characters of
letters, digits, spaces and `+ - = . _ : / @`. Both accept `[A-Za-z0-9-_.:@/]`, so records are
packed into that alphabet: fields joined by `/`, any other character escaped as `@XX` (UTF-8
bytes in hex). A drain record is split over numbered attributes; the first field of the packed
text says how many, so stale parts of a longer, older record are never read.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from lifecycled.jobs import RequeueRecord
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.record import RECORD_ANNOTATION, DrainRecord, HookRef, Outcome, Phase

SAFE = frozenset(string.ascii_letters + string.digits + "-_.:")
ESCAPE = "@"
SEP = "/"
VALUE_LIMIT = 128
MAX_PARTS = 8  # + the phase attribute: 9 of the 10 custom attributes ECS allows
VERSION = "1"

# `lifecycled.io/drain` holds the phase alone, so ListAttributes can find open drains by value.
PHASE_ATTRIBUTE = RECORD_ANNOTATION


def part_attribute(n: int) -> str:
    return f"{RECORD_ANNOTATION}.{n}"


def escape(value: str) -> str:
    return "".join(
        ch if ch in SAFE else "".join(f"{ESCAPE}{b:02X}" for b in ch.encode()) for ch in value
    )


def unescape(text: str) -> str:
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == ESCAPE:
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(text[i].encode())
            i += 1
    return out.decode()


def pack(values: Sequence[str]) -> str:
    return SEP.join(escape(v) for v in values)


def unpack(text: str) -> list[str]:
    return [unescape(part) for part in text.split(SEP)]


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def record_attributes(record: DrainRecord) -> dict[str, str]:
    """The record as container-instance attributes (phase + numbered parts)."""
    hook = record.hook
    body = pack(
        [
            VERSION,
            record.instance_id,
            record.kind,
            record.action,
            record.event_id,
            _time(record.event_time),
            _time(record.deadline),
            record.phase,
            record.outcome or "",
            hook.name if hook else "",
            hook.group if hook else "",
            hook.token if hook else "",
        ]
    )
    parts = math.ceil((len(body) + 2) / VALUE_LIMIT)
    if parts > MAX_PARTS:
        raise ValueError(f"drain record too long for ECS attributes ({len(body)} characters)")
    text = f"{parts}{SEP}{body}"
    values = {PHASE_ATTRIBUTE: str(record.phase)}
    for n in range(parts):
        values[part_attribute(n + 1)] = text[n * VALUE_LIMIT : (n + 1) * VALUE_LIMIT]
    return values


def record_from_attributes(attributes: Mapping[str, str]) -> DrainRecord | None:
    """The record on a container instance, or None when it carries none."""
    first = attributes.get(part_attribute(1))
    if not first:
        return None
    parts = int(first.split(SEP, 1)[0])
    text = "".join(attributes[part_attribute(n + 1)] for n in range(parts))
    fields = unpack(text.split(SEP, 1)[1])
    version, instance, kind, action, event_id, event_time, deadline = fields[:7]
    phase, outcome, hook_name, hook_group, token = fields[7:12]
    if version != VERSION:
        raise ValueError(f"unknown drain record version {version!r}")
    return DrainRecord(
        instance_id=InstanceId(instance),
        kind=NoticeKind(kind),
        action=Action(action),
        event_id=event_id,
        event_time=datetime.fromisoformat(event_time),
        deadline=datetime.fromisoformat(deadline),
        hook=HookRef(name=hook_name, group=hook_group, token=token) if hook_name else None,
        phase=Phase(phase),
        outcome=Outcome(outcome) if outcome else None,
    )


def requeue_tag(record: RequeueRecord) -> str:
    return pack([record.copy, str(record.attempt), record.reason, record.node, str(record.done)])


def requeue_from_tag(text: str) -> RequeueRecord:
    copy, attempt, reason, node, done = unpack(text)
    return RequeueRecord(copy, int(attempt), reason, node, done=done == "True")
