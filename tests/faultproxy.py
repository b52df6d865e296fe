"""A small reverse proxy that injects HTTP faults in front of an emulator.

The service under test is pointed at the proxy instead of the emulator (its kubeconfig), so
its own code is untouched: it sees exactly what a throttling or failing API server sends.
A `Fault` names the requests it matches (method and a path pattern), which matching request
to fail first (`skip` lets earlier ones through), how many to fail, and the answer.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


@dataclass
class Fault:
    method: str
    path: str  # a regular expression, matched in full against the request path
    status: int = 500
    skip: int = 0  # matching requests let through before the first failure
    times: int = 1
    retry_after: int | None = None
    seen: int = 0
    injected: int = 0

    def hit(self, method: str, path: str) -> bool:
        if method != self.method or not re.fullmatch(self.path, path):
            return False
        self.seen += 1
        if self.seen <= self.skip or self.injected >= self.times:
            return False
        self.injected += 1
        return True

    def answer(self) -> web.Response:
        reason = "TooManyRequests" if self.status == 429 else "InternalError"
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": f"injected fault ({self.status})",
            "reason": reason,
            "code": self.status,
        }
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return web.Response(
            status=self.status,
            text=json.dumps(body),
            content_type="application/json",
            headers=headers,
        )


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    port: int = 0  # 0: any free port
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        for fault in self.faults:
            if fault.hit(request.method, request.path):
                return fault.answer()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop("Host", None)
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():  # watches stream
                await response.write(chunk)
            await response.write_eof()
            return response
