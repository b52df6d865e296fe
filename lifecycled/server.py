"""HTTP side: /healthz (the loop answers), /readyz (consuming), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lifecycled.observe import Metrics


@contextlib.asynccontextmanager
async def serve_http(
    host: str, port: int, metrics: Metrics, ready: asyncio.Event
) -> AsyncIterator[list[tuple[str, int]]]:
    """Serve until the context exits; yields the bound (host, port) addresses."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics_page(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield [(str(a[0]), int(a[1])) for a in runner.addresses]
    finally:
        await runner.cleanup()
