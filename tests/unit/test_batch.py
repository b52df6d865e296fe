"""Batcher: ten entries to a request, each caller hears its own entry's result."""

from __future__ import annotations

import asyncio

import pytest

from lifecycled.batch import Batcher
from lifecycled.clients.aws.sqs import dead_letter_url
from lifecycled.errors import PermanentError


async def test_entries_are_sent_ten_at_a_time_and_each_hears_its_own_result() -> None:
    calls: list[list[int]] = []

    async def flush(entries: list[int]) -> list[Exception | None]:
        calls.append(entries)
        return [PermanentError("odd") if e == 13 else None for e in entries]

    batcher: Batcher[int] = Batcher(flush, size=10, linger=0.01)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(25)), return_exceptions=True)
    assert [len(c) for c in calls] == [10, 10, 5]
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [13]


async def test_a_failed_request_fails_every_entry_in_it() -> None:
    async def flush(entries: list[int]) -> list[Exception | None]:
        raise PermanentError("AccessDenied")

    batcher: Batcher[int] = Batcher(flush)
    with pytest.raises(PermanentError):
        await batcher.submit(1)


def test_the_dead_letter_queue_url_is_on_the_notice_queue_endpoint() -> None:
    arn = "arn:aws:sqs:eu-west-1:123456789012:notices-dlq"
    real = "https://sqs.eu-west-1.amazonaws.com/123456789012/notices"
    assert (
        dead_letter_url(real, arn) == "https://sqs.eu-west-1.amazonaws.com/123456789012/notices-dlq"
    )
    local = "http://127.0.0.1:5000/123456789012/notices"
    assert dead_letter_url(local, arn) == "http://127.0.0.1:5000/123456789012/notices-dlq"
    assert dead_letter_url(real, "not-an-arn") is None
