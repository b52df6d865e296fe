"""Start-up never gives up on a temporary fault, and every way out is one log line.

The API server is not reachable when the service starts; a Spot warning arrives meanwhile;
the API server comes up: the warning is drained, with no traceback and no exit. A missing
kubeconfig is one line and exit code 3."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.kube import KubeApiServer
from devstack.kube.server import write_kubeconfig
from lifecycled.app import Service
from tests.faultproxy import FaultProxy
from tests.scenarios.conftest import Stack, eventually, metric

SPOT = "spot_interruption"
DOWN_SECONDS = float(os.environ.get("LIFECYCLED_TEST_DOWN_SECONDS", "8"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_api_server_down_at_start_then_up_a_warning_is_still_drained(
    stack: Stack,
    kube: KubeApiServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    monkeypatch.setenv(
        "KUBECONFIG", str(write_kubeconfig(f"http://127.0.0.1:{port}", tmp_path / "later"))
    )
    instance = stack.machines[0].instance_id
    stack.aws.send_spot_interruption(instance)  # arrives while nothing can be drained
    caplog.set_level(logging.INFO, logger="lifecycled")
    service, stop = Service(stack.settings()), asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.sleep(DOWN_SECONDS)
    assert not task.done(), "start-up must wait for the API server, not exit"
    assert not service.ready.is_set(), "not ready while it cannot act"
    async with FaultProxy(kube.url, port=port):

        async def drained() -> bool:
            closed = "lifecycled_drain_duration_seconds_count"
            return metric(service, closed, kind=SPOT, outcome="drained") == 1

        try:
            await eventually(drained, within=45)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    retried = [r for r in caplog.records if r.getMessage() == "start-up step failed; will retry"]
    assert retried, "each failed attempt is a log line"
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("lifecycled")]


def test_no_kubeconfig_is_one_line_and_exit_code_3(stack: Stack, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KUBECONFIG": str(tmp_path / "missing"),
        "LIFECYCLED_QUEUE_URL": stack.queue.url,
        "LIFECYCLED_METRICS_ADDRESS": "127.0.0.1:0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "lifecycled", "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    errors = [json.loads(line) for line in done.stderr.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "kubeconfig" in errors[0]["event"], done.stderr
    assert "Traceback" not in done.stderr
