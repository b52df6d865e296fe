"""One HTTP POST to a pod's checkpoint endpoint, with a timeout; our errors, never aiohttp's.

Not retried: a checkpoint is not assumed idempotent, and its wait is short and capped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from lifecycled.errors import PermanentError, TemporaryError
from lifecycled.observe import Metrics

BACKSTOP_SECONDS = 300.0


class CheckpointClient:
    """A session for the life of the service; each call names its own timeout."""

    def __init__(self, session: aiohttp.ClientSession, metrics: Metrics) -> None:
        self._session = session
        self._metrics = metrics

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, metrics: Metrics) -> AsyncIterator[CheckpointClient]:
        # No proxy or netrc: pod IPs are reached directly. The callers bound each call with
        # their own (shorter) wait; this is the backstop.
        timeout = aiohttp.ClientTimeout(total=BACKSTOP_SECONDS)
        async with aiohttp.ClientSession(trust_env=False, timeout=timeout) as session:
            yield cls(session, metrics)

    async def post(self, url: str, document: dict[str, Any]) -> None:
        """TemporaryError on a network error or 5xx; PermanentError on other non-2xx
        replies. The caller bounds the wait (asyncio.timeout)."""
        body = json.dumps(document).encode()
        headers = {"Content-Type": "application/json"}
        with self._metrics.api_call("checkpoint", "post"):
            try:
                async with self._session.post(url, data=body, headers=headers) as reply:
                    status = reply.status
                    text = (await reply.text())[:200]
            except TimeoutError:
                raise  # some of aiohttp's timeouts are ClientErrors too: keep them timeouts
            except aiohttp.ClientError as exc:
                raise TemporaryError(f"checkpoint: {type(exc).__name__}: {exc}") from exc
        if status >= 500:
            raise TemporaryError(f"checkpoint: HTTP {status}: {text}")
        if status >= 300:
            raise PermanentError(f"checkpoint: HTTP {status}: {text}")
