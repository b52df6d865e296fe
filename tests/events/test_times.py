from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lifecycled.events.times import format_time, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01t00:00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2022-01-31T23:07:47.872Z", datetime(2022, 1, 31, 23, 7, 47, 872000, tzinfo=UTC)),
        ("2024-01-01T00:00:00.123456789Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-01T02:30:00+02:30", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2023-12-31T20:00:00-04:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("Tue, 19 Nov 2024 12:00:00 GMT", datetime(2024, 11, 19, 12, tzinfo=UTC)),
        ("Sat, 05 Jun 2016 15:10:09 GMT", datetime(2016, 6, 5, 15, 10, 9, tzinfo=UTC)),
        ("Wed, 1 Oct 2026 12:00:00 GMT", datetime(2026, 10, 1, 12, tzinfo=UTC)),
        ("Tue, 19 Nov 2024 14:00:00 +0200", datetime(2024, 11, 19, 12, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-01-01 00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00+25:00",
        "2024-01-01T00:00:00.1234567890Z",
        "1704067200",
        "Tue, 19 November 2024 12:00:00 GMT",
        "19 Nov 2024 12:00:00 GMT",
        "Tue, 19 Nov 2024 12:00:00 PST",
        "2024-01-01T00:00:00Z" + " " * 100,
        "٢٠٢٤-01-01T00:00:00Z",  # non-ASCII digits match \d but are not RFC 3339
    ],
)
def test_bad_times(text: str) -> None:
    assert parse_time(text) is None


def test_format_time() -> None:
    assert format_time(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00Z"
    moment = parse_time("2024-01-01T02:00:00.5+02:00")
    assert moment is not None
    assert format_time(moment) == "2024-01-01T00:00:00.500000Z"
