"""Timestamps in the two formats AWS uses for these events, read as aware UTC datetimes.

RFC 3339 (`2024-01-01T00:00:00Z`, fractional seconds, `+02:00` offsets) is EventBridge's
`time` and Auto Scaling's `Time`; RFC 1123 (`Tue, 19 Nov 2024 12:00:00 GMT`) is AWS
Health's `startTime`/`endTime`. The RFC 1123 weekday is not checked: AWS's own example
(`Sat, 05 Jun 2016`) names the wrong day.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_MAX_LEN = 64  # longer strings cannot be either format; refuse before any regex work

_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # `\d` must not match other scripts' digits
)
_RFC1123_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) (?:GMT|UTC|UT|Z|([+-])(\d{2})(\d{2}))",
    re.ASCII,
)
_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}


def parse_time(value: str) -> datetime | None:
    """An aware UTC datetime, or None when `value` is neither format (or not a real time)."""
    if len(value) > _MAX_LEN:
        return None
    try:
        return _rfc3339(value) or _rfc1123(value)
    except ValueError:  # day 31 of a 30-day month, hour 25, leap second...
        return None


def _rfc3339(value: str) -> datetime | None:
    m = _RFC3339_RE.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micros = int((m.group(7) or "0").ljust(6, "0")[:6])
    tz = UTC if m.group(8) else _offset(m.group(9), m.group(10), m.group(11))
    moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    return moment.astimezone(UTC)


def _rfc1123(value: str) -> datetime | None:
    m = _RFC1123_RE.fullmatch(value)
    if m is None:
        return None
    day, year = int(m.group(1)), int(m.group(3))
    hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
    tz = _offset(m.group(7), m.group(8), m.group(9)) if m.group(7) else UTC
    moment = datetime(year, _MONTHS[m.group(2)], day, hour, minute, second, tzinfo=tz)
    return moment.astimezone(UTC)


def _offset(sign: str, hours: str, minutes: str) -> timezone:
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError("offset out of range")
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z` suffix, as `lifecycled explain` prints it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
