"""One HTTP POST to a notification webhook, with a timeout; our errors, never aiohttp's."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from lifecycled.errors import PermanentError, TemporaryError


class WebhookClient:
    """A session for the life of the service (connections reused)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """TemporaryError on a network error, a timeout, 429 or 5xx; PermanentError on other
        4xx (retrying the same document would not help)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, data=body, headers=dict(headers)) as reply:
                status = reply.status
                text = (await reply.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryError(f"webhook: {type(exc).__name__}: {exc}") from exc
        if status == 429 or status >= 500:
            raise TemporaryError(f"webhook: HTTP {status}: {text}")
        if status >= 400:
            raise PermanentError(f"webhook: HTTP {status}: {text}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
