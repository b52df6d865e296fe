"""Notification bodies: the presets render valid documents; a bad template is a clear error;
a receiver's 4xx is not retried, a 5xx is, and posting never waits; the URL can come from a
mounted Secret's file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from aiohttp import web

from lifecycled.errors import ConfigError
from lifecycled.notify import Notification, Notifier, Template, WebhookSink, webhook_url
from lifecycled.observe import Metrics
from lifecycled.settings import Settings

NOTE = Notification(
    event="deadline_missed",
    node="ip-10-0-1-2",
    instance="i-1",
    kind="spot_interruption",
    deadline="2026-01-01T00:02:00+00:00",
    cluster="prod",
    pods_evicted=3,
    pods_left=('web/a "quoted"', "api/b"),
    asg="workers",
    hook="drain",
)


def test_the_slack_preset_is_one_json_text_naming_the_node_and_the_pods_left() -> None:
    body = json.loads(Template("slack").render(NOTE))
    assert set(body) == {"text"}
    assert "ip-10-0-1-2" in body["text"] and 'web/a "quoted"' in body["text"]
    assert ":rotating_light:" in body["text"] and "ASG workers" in body["text"]


def test_the_json_preset_carries_every_field() -> None:
    assert json.loads(Template("json").render(NOTE)) == NOTE.document()


def test_a_template_that_does_not_parse_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Template("{{ node ")


async def test_a_4xx_is_given_up_at_once_and_a_5xx_is_retried(aiohttp_free_port: int) -> None:
    calls: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=400 if request.path == "/bad" else 500)

    app = web.Application()
    app.router.add_post("/bad", handle)
    app.router.add_post("/down", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", aiohttp_free_port)
    await site.start()
    metrics = Metrics()
    base = f"http://127.0.0.1:{aiohttp_free_port}"
    sinks = [WebhookSink(f"{base}/bad", Template("json"), {}, 2.0)]
    down = WebhookSink(f"{base}/down", Template("json"), {}, 2.0)
    down.name = "down"
    notifier = Notifier([*sinks, down], metrics, retry_delays=(0.01, 0.01))
    try:
        async with notifier.running():
            start = time.monotonic()
            notifier.post(NOTE)
            assert time.monotonic() - start < 0.05
            await notifier.flush()
    finally:
        await runner.cleanup()
    sample = metrics.registry.get_sample_value
    assert sample("lifecycled_notifications_total", {"sink": "webhook", "outcome": "failed"}) == 1
    assert sample("lifecycled_notifications_total", {"sink": "down", "outcome": "retried"}) == 2
    assert sample("lifecycled_notifications_total", {"sink": "down", "outcome": "failed"}) == 1
    assert len(calls) == 4  # 1 to /bad, 3 to /down


@pytest.fixture
def aiohttp_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_url_comes_from_a_mounted_secret_file_over_the_setting(tmp_path: Path) -> None:
    queue = {"queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}
    secret = tmp_path / "url"
    secret.write_text("https://hooks.example/secret\n")
    both = Settings(
        notify_webhook_url="https://plain.example/", notify_webhook_url_file=str(secret), **queue
    )
    assert webhook_url(both) == "https://hooks.example/secret"
    assert webhook_url(Settings(notify_webhook_url="https://plain.example/", **queue)) == (
        "https://plain.example/"
    )
    missing = Settings(notify_webhook_url_file=str(tmp_path / "gone"), **queue)
    with pytest.raises(ConfigError, match="notify_webhook_url_file"):
        webhook_url(missing)
