"""The demos' shared part: run the real `lifecycled run` as a subprocess, read its JSON log
lines into a timeline, scrape its /metrics, and stop it with SIGTERM as Kubernetes would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Values = dict[tuple[str, tuple[Any, ...]], float]
READY_SECONDS = 30.0
STOP_SECONDS = 30.0


class LogSink(Protocol):
    def add(self, entry: dict[str, Any]) -> None: ...


def say(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def total(values: Values, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbl), v in values.items() if n == name and want <= set(lbl))


def verdict(failures: list[str]) -> int:
    for failure in failures:
        say(f"DEMO FAILED: {failure}")
    return 1 if failures else 0


async def read_logs(stream: asyncio.StreamReader, sink: LogSink, raw: Path) -> None:
    with raw.open("w") as out:
        while line := await stream.readline():
            out.write(line.decode())
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "time" in entry:
                sink.add(entry)


@dataclass
class ServiceProcess:
    proc: asyncio.subprocess.Process
    url: str
    session: aiohttp.ClientSession
    log: Path
    code: int | None = None

    async def scrape(self) -> Values:
        async with self.session.get(self.url + "/metrics") as reply:
            text = await reply.text()
        values: Values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return values

    async def wait_for(self, done: Callable[[Values], bool], within: float) -> Values:
        """Scrape until `done(values)`, or for `within` seconds; the last values either way."""
        end = time.monotonic() + within
        values = await self.scrape()
        while not done(values) and time.monotonic() < end:
            await asyncio.sleep(0.5)
            values = await self.scrape()
        return values

    async def _wait_ready(self) -> None:
        end = time.monotonic() + READY_SECONDS
        while time.monotonic() < end:
            if self.proc.returncode is not None:
                raise RuntimeError(f"lifecycled exited early with {self.proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(self.url + "/readyz") as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"lifecycled did not become ready within {READY_SECONDS:.0f} s")


@contextlib.asynccontextmanager
async def service_process(
    env: dict[str, str], sink: LogSink, workdir: Path
) -> AsyncIterator[ServiceProcess]:
    """`lifecycled run` with `env` on top of ours, ready to serve; SIGTERM'd on exit."""
    port = free_port()
    full_env = {
        **os.environ,
        "LIFECYCLED_METRICS_ADDRESS": f"127.0.0.1:{port}",
        "LIFECYCLED_DRAIN_POLL_SECONDS": "0.5",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifecycled.cli", "run", env=full_env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    log = workdir / "lifecycled.log"
    reader = asyncio.create_task(read_logs(proc.stderr, sink, log))
    async with aiohttp.ClientSession() as session:
        running = ServiceProcess(proc, f"http://127.0.0.1:{port}", session, log)
        try:
            await running._wait_ready()
            yield running
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            running.code = await asyncio.wait_for(proc.wait(), STOP_SECONDS)
            await reader
