"""The only module that talks to the instance metadata service: IMDSv2 over aiohttp.

Every GET carries a session token from `PUT /latest/api/token`; the token is renewed before
it expires and whenever IMDS answers 401. IMDSv1 (no token) is never used.
The endpoint follows botocore's convention: AWS_EC2_METADATA_SERVICE_ENDPOINT, default
http://169.254.169.254.

Hop limit: IMDS sends the PUT's reply with an IP TTL of the instance's
`HttpPutResponseHopLimit`. A pod that is not on hostNetwork sits one hop further away (its
own network namespace), so it needs a hop limit of 2 or more; with a limit of 1 the token
request times out. GETs are not limited that way, but without a token they get nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from lifecycled.errors import PermanentError, TemporaryError
from lifecycled.observe import Metrics

ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_TTL_SECONDS = 21600  # IMDS's maximum: six hours
RENEW_AT = 0.8  # renew once this fraction of the token's life has passed
DEFAULT_TIMEOUT = 2.0  # IMDS is on the machine: anything slower is a failure


def endpoint_from_env() -> str:
    return os.environ.get(ENDPOINT_VARIABLE, DEFAULT_ENDPOINT).rstrip("/")


def _error(operation: str, status: int, text: str) -> Exception:
    message = f"IMDS {operation}: HTTP {status}: {text[:200]}"
    if status >= 500 or status in (401, 429):  # 401 twice in a row: token trouble, transient
        return TemporaryError(message)
    return PermanentError(message)


class ImdsClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        *,
        endpoint: str,
        token_ttl: int = TOKEN_TTL_SECONDS,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._endpoint = endpoint
        self._token_ttl = token_ttl
        self._token: str | None = None
        self._renew_at = 0.0  # loop time
        self._lock = asyncio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        metrics: Metrics,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT,
        endpoint: str | None = None,
        token_ttl: int = TOKEN_TTL_SECONDS,
    ) -> AsyncIterator[ImdsClient]:
        limits = aiohttp.ClientTimeout(total=timeout_seconds, connect=timeout_seconds)
        # IMDS must be reached directly: no HTTP(S)_PROXY from the environment.
        async with aiohttp.ClientSession(timeout=limits, trust_env=False) as session:
            yield cls(
                session, metrics, endpoint=endpoint or endpoint_from_env(), token_ttl=token_ttl
            )

    async def get(self, path: str) -> str | None:
        """GET /latest/<path>; None when IMDS has nothing there (404)."""
        with self._metrics.api_call("imds", path):
            status, text = await self._get(path, await self._valid_token())
            if status == 401:
                # The token expired early or IMDS restarted: one fresh token, one more try.
                status, text = await self._get(path, await self._new_token())
            if status == 404:
                return None
            if status != 200:
                raise _error(path, status, text)
            return text

    async def get_json(self, path: str) -> Any:
        """The JSON document at `path`, None when absent; PermanentError when it is not JSON."""
        text = await self.get(path)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PermanentError(f"IMDS {path}: not JSON: {exc}") from exc

    async def _get(self, path: str, token: str) -> tuple[int, str]:
        url = f"{self._endpoint}/latest/{path}"
        try:
            async with self._session.get(url, headers={TOKEN_HEADER: token}) as reply:
                return reply.status, await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemporaryError(f"IMDS {path}: {type(exc).__name__}: {exc}") from exc

    async def _valid_token(self) -> str:
        loop = asyncio.get_running_loop()
        if self._token is not None and loop.time() < self._renew_at:
            return self._token
        return await self._new_token()

    async def _new_token(self) -> str:
        async with self._lock:
            with self._metrics.api_call("imds", "put_token"):
                token = await self._put_token()
            self._token = token
            loop = asyncio.get_running_loop()
            self._renew_at = loop.time() + self._token_ttl * RENEW_AT
            return token

    async def _put_token(self) -> str:
        url = f"{self._endpoint}/latest/api/token"
        try:
            async with self._session.put(url, headers={TTL_HEADER: str(self._token_ttl)}) as reply:
                text = await reply.text()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            # With a hop limit of 1 and a pod off hostNetwork, this is where it ends.
            raise TemporaryError(f"IMDS token: {type(exc).__name__}: {exc}") from exc
        if status != 200 or not text:
            self._token = None
            raise _error("token", status, text)
        return text

    def forget_token(self) -> None:
        """Drop the cached token (tests; and after a suspected IMDS restart)."""
        self._token = None
