"""A small reverse proxy that injects HTTP faults in front of an emulator.

The service under test is pointed at the proxy instead of the emulator (its kubeconfig), so
its own code is untouched: it sees exactly what a throttling or failing API server sends.
A `Fault` names the requests it matches (method and a path pattern), which matching request
to fail first (`skip` lets earlier ones through), how many to fail, and the answer.
`Chaos` fails requests at random instead (a seed and a rate, for the chaos suite): 5xx, 429
with Retry-After (AWS: Throttling / RequestLimitExceeded), connection resets, slow answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
from collections import Counter
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
    # An AWS query-protocol call (Auto Scaling, ELB, EC2): only this Action, and the answer is
    # AWS's error document, with `code` (default: InternalFailure / ServiceUnavailable).
    action: str | None = None
    code: str | None = None
    seen: int = 0
    injected: int = 0

    def hit(self, method: str, path: str, body: bytes = b"") -> bool:
        if method != self.method or not re.fullmatch(self.path, path):
            return False
        if self.action is not None and f"Action={self.action}&".encode() not in body + b"&":
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


CHAOS_KINDS = ("5xx", "throttle", "reset", "slow")


@dataclass
class Chaos:
    """Random faults: each request fails with probability `rate`, the kind drawn from `kinds`.
    `flavour` shapes the answer: "kube" (a Status) or "aws" (the protocol's error document)."""

    seed: int
    rate: float = 0.2
    flavour: str = "kube"
    kinds: tuple[str, ...] = CHAOS_KINDS
    spare: str = r"/(devstack|healthz|readyz|livez|version).*"  # never the emulators' own
    injected: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def draw(self, path: str) -> str | None:
        if re.fullmatch(self.spare, path) or self._random.random() >= self.rate:
            return None
        kind = self._random.choice(self.kinds)
        self.injected[kind] += 1
        return kind

    def slow_seconds(self) -> float:
        return self._random.uniform(0.5, 2.5)

    def answer(self, kind: str, request: web.Request) -> web.Response:
        status = 429 if kind == "throttle" else self._random.choice((500, 502, 503))
        if self.flavour == "kube":
            fault = Fault(request.method, ".*", status=status, retry_after=1)
            return fault.answer()
        return aws_error(kind, status, request)


def aws_error(
    kind: str, status: int, request: web.Request, code: str | None = None
) -> web.Response:
    """The error document botocore parses for the request's protocol: JSON (SQS, ECS: an
    X-Amz-Target header) or query XML (EC2's own shape; Auto Scaling, ELB)."""
    scope = request.headers.get("Authorization", "")
    ec2 = "/ec2/aws4_request" in scope
    if code is None and kind == "throttle":
        code, status = ("RequestLimitExceeded", 503) if ec2 else ("Throttling", 400)
    elif code is None:
        code = "InternalFailure" if status == 500 else "ServiceUnavailable"
    message = f"injected fault ({code})"
    if "X-Amz-Target" in request.headers:
        body = json.dumps({"__type": f"com.amazonaws#{code}", "message": message})
        headers = {"x-amzn-query-error": f"{code};Sender"}
        return web.Response(
            status=status, text=body, content_type="application/x-amz-json-1.0", headers=headers
        )
    if ec2:
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>chaos</RequestID></Response>"
        )
    else:
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>chaos</RequestId></ErrorResponse>"
        )
    return web.Response(status=status, text=xml, content_type="text/xml")


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    chaos: Chaos | None = None
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
        # An AWS action is in the body (read once: aiohttp keeps it for the forward below).
        body = await request.read() if any(f.action for f in self.faults) else b""
        for fault in self.faults:
            if fault.hit(request.method, request.path, body):
                if fault.action is not None:
                    return aws_error("5xx", fault.status, request, code=fault.code)
                return fault.answer()
        kind = self.chaos.draw(request.path) if self.chaos is not None else None
        if kind == "reset":
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection reset
            return web.Response(status=500)  # written nowhere: the transport is gone
        if kind == "slow":
            assert self.chaos is not None
            await asyncio.sleep(self.chaos.slow_seconds())
        elif kind is not None:
            assert self.chaos is not None
            return self.chaos.answer(kind, request)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop("Host", None)
        try:
            body = await request.read()
        except ConnectionError:  # the client hung up while we were slow: nobody to answer
            return web.Response(status=499)
        try:
            return await self._forward(request, headers, body)
        except aiohttp.ServerDisconnectedError:
            # The upstream closed a kept-alive connection as we reused it (moto's server does):
            # a gateway answer, not a proxy crash; the client retries as it would on a 502.
            return web.Response(status=502)

    async def _forward(
        self, request: web.Request, headers: dict[str, str], body: bytes
    ) -> web.StreamResponse:
        assert self._session is not None
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():  # watches stream
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionError:  # the client gave up (a slow answer, its own time-out)
                pass
            return response
