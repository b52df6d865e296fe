"""Notifications of drain outcomes: a webhook (templated; Slack and JSON presets) and SNS.

`Notifier.post` puts the notification on each sink's bounded queue and returns: a drain never
waits for a receiver. Each sink has its own worker, so a hanging webhook delays no SNS
publish. A delivery is retried with the configured pauses, each attempt under a timeout, then
given up; every outcome is counted in `lifecycled_notifications_total{sink,outcome}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.webhook import WebhookClient
from lifecycled.errors import ConfigError, PermanentError
from lifecycled.observe import Metrics, fields
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

EVENTS = (
    "drain_started",
    "drained",
    "deadline_missed",
    "forced_termination",
    "drain_failed",
    "hook_completed",
    "hook_abandoned",
)

SLACK = (
    '{% set bad = event in ("deadline_missed", "forced_termination", "drain_failed", '
    '"hook_abandoned") %}'
    '{% set text = (":rotating_light: " if bad else ":information_source: ") ~ "*lifecycled* `" '
    '~ event ~ "` node `" ~ node ~ "` (" ~ instance ~ ", " ~ kind ~ ") in " ~ (cluster or "-") '
    '~ ": deadline " ~ deadline ~ ", pods evicted " ~ pods_evicted ~ ", left " '
    '~ (pods_left | length) ~ ((": " ~ (pods_left[:10] | join(", "))) if pods_left else "") '
    '~ ((", ASG " ~ asg) if asg else "") ~ ((", hook " ~ hook) if hook else "") %}'
    '{"text": {{ text | tojson }}}'
)


@dataclass(frozen=True, slots=True)
class Notification:
    """One drain outcome, as every sink sends it."""

    event: str
    node: str
    instance: str
    kind: str
    deadline: str
    cluster: str | None = None
    pods_evicted: int = 0
    pods_left: tuple[str, ...] = ()
    asg: str | None = None
    hook: str | None = None
    outcome: str | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def document(self) -> dict[str, object]:
        data = asdict(self)
        data["pods_left"] = list(self.pods_left)
        return data


class Sink(Protocol):
    name: str

    async def send(self, note: Notification) -> None:
        """Deliver once; TemporaryError is retried, PermanentError is not."""

    async def close(self) -> None: ...


class Template:
    """`json`, `slack`, or a Jinja2 template (sandboxed; an unknown field is an error)."""

    def __init__(self, text: str) -> None:
        self.is_json = text == "json"
        env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        source = SLACK if text == "slack" else text
        try:
            self._template = None if self.is_json else env.from_string(source)
        except TemplateError as exc:
            raise ConfigError(f"notify_template: {exc}") from exc

    def render(self, note: Notification) -> bytes:
        if self._template is None:
            return json.dumps(note.document()).encode()
        try:
            return self._template.render(**note.document()).encode()
        except TemplateError as exc:
            raise PermanentError(f"notify_template: {exc}") from exc


class WebhookSink:
    name = "webhook"

    def __init__(
        self, url: str, template: Template, headers: Mapping[str, str], timeout: float
    ) -> None:
        self._url = url
        self._template = template
        self._headers = {"Content-Type": "application/json", **headers}
        self._client = WebhookClient(timeout)

    async def send(self, note: Notification) -> None:
        await self._client.post(self._url, self._template.render(note), self._headers)

    async def close(self) -> None:
        await self._client.close()


class SnsSink:
    name = "sns"

    def __init__(self, aws: AwsClients, topic_arn: str) -> None:
        self._aws = aws
        self._topic = topic_arn

    async def send(self, note: Notification) -> None:
        subject = f"lifecycled {note.event}: {note.node or note.instance}"
        await self._aws.sns.publish(self._topic, subject, json.dumps(note.document()))

    async def close(self) -> None:
        return None


def webhook_url(settings: Settings) -> str | None:
    """The URL from its mounted file (a Secret) when set, else from the setting."""
    path = settings.notify.webhook_url_file
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"notify_webhook_url_file: cannot read {path}: {exc}") from exc
    return settings.notify.webhook_url


def sinks_for(settings: Settings, aws: AwsClients | None) -> list[Sink]:
    found: list[Sink] = []
    url = webhook_url(settings)
    if url:
        headers = {k: v or "" for k, v in settings.notify.webhook_headers.items()}
        template = Template(settings.notify.template)
        found.append(WebhookSink(url, template, headers, settings.notify.timeout_seconds))
    if settings.notify.sns_topic_arn and aws is not None:
        found.append(SnsSink(aws, settings.notify.sns_topic_arn))
    return found


class Notifier:
    def __init__(
        self,
        sinks: Sequence[Sink],
        metrics: Metrics,
        *,
        queue_size: int = 1000,
        timeout: float = 5.0,
        retry_delays: Sequence[float] = (1.0, 2.0, 5.0),
        events: frozenset[str] = frozenset(),
    ) -> None:
        self._sinks = list(sinks)
        self._metrics = metrics
        self._timeout = timeout
        self._delays = tuple(retry_delays)
        self._events = events
        self._queues: list[asyncio.Queue[tuple[float, Notification]]] = [
            asyncio.Queue(queue_size) for _ in self._sinks
        ]

    @classmethod
    def of(cls, settings: Settings, metrics: Metrics, aws: AwsClients | None) -> Notifier:
        n = settings.notify
        return cls(
            sinks_for(settings, aws),
            metrics,
            queue_size=n.queue_size,
            timeout=n.timeout_seconds,
            retry_delays=n.retry_delays,
            events=n.events,
        )

    def post(self, note: Notification) -> None:
        """Queue for every sink; never blocks, never raises."""
        if self._events and note.event not in self._events:
            return
        now = time.monotonic()
        for sink, queue in zip(self._sinks, self._queues, strict=True):
            try:
                queue.put_nowait((now, note))
            except asyncio.QueueFull:
                self._metrics.notifications.labels(sink.name, "dropped_queue_full").inc()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Notifier]:
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._work(sink, queue), name=f"notify-{sink.name}")
                    for sink, queue in zip(self._sinks, self._queues, strict=True)
                ]
                try:
                    yield self
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            for sink in self._sinks:
                with contextlib.suppress(Exception):
                    await sink.close()

    async def flush(self) -> None:
        for queue in self._queues:
            await queue.join()

    async def _work(self, sink: Sink, queue: asyncio.Queue[tuple[float, Notification]]) -> None:
        while True:
            queued_at, note = await queue.get()
            try:
                outcome = await self._deliver(sink, note)
                self._metrics.notifications.labels(sink.name, outcome).inc()
                self._metrics.notification_duration.labels(sink.name).observe(
                    time.monotonic() - queued_at
                )
            finally:
                queue.task_done()

    async def _deliver(self, sink: Sink, note: Notification) -> str:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    await sink.send(note)
                return "sent"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                permanent = isinstance(exc, PermanentError)
                if permanent or attempt >= len(self._delays):
                    log.warning(
                        "notification not delivered",
                        extra=fields(
                            sink=sink.name, event=note.event, node=note.node, error=str(exc)
                        ),
                    )
                    return "failed"
                self._metrics.notifications.labels(sink.name, "retried").inc()
                await asyncio.sleep(self._delays[attempt])
                attempt += 1
