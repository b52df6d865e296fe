"""An instance metadata service (IMDSv2) for one machine, on 127.0.0.1.

- Tokens: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` 1-21600
  (400 otherwise, 403 when the request was forwarded); every GET needs a live token (401
  otherwise: IMDSv1 is refused).
- Fixed paths: instance-id, placement, the identity document, instance tags (when enabled).
- Scripted paths, changed at any time (or `after` a delay) through the Python API: Spot
  instance-action, rebalance recommendation, scheduled maintenance events (and their
  history once cancelled or completed), Auto Scaling target lifecycle state.
- Faults: 5xx replies, slow replies (client timeouts), expiring every token at once.

The scripting API is thread-safe and independent of the event loop, so a test (same loop) or
the demo (server in a thread) drives it the same way. `AWS_EC2_METADATA_SERVICE_ENDPOINT`
pointed at `url` is all a client needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600

SPOT = "meta-data/spot/instance-action"
REBALANCE = "meta-data/events/recommendations/rebalance"
SCHEDULED = "meta-data/events/maintenance/scheduled"
HISTORY = "meta-data/events/maintenance/history"
TARGET_STATE = "meta-data/autoscaling/target-lifecycle-state"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def imds_time(moment: datetime) -> str:
    """IMDS's maintenance-event format: `21 Jan 2019 09:00:43 GMT`."""
    return moment.astimezone(UTC).strftime("%d %b %Y %H:%M:%S GMT")


@dataclass
class Fault:
    remaining: int
    path: str | None  # None: every request, token requests included
    status: int | None = None  # reply with this status
    delay: float = 0.0  # before replying

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or path == self.path)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    time: float


class ImdsEmulator:
    def __init__(
        self,
        *,
        instance_id: str,
        region: str = "us-east-1",
        az: str | None = None,
        account: str = "123456789012",
        tags: dict[str, str] | None = None,  # None: instance tags not enabled in metadata
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instance_id = instance_id
        self.region = region
        self.az = az or f"{region}a"
        self.account = account
        self.url = ""
        self.requests: list[Request] = []
        self._tags = tags
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expiry (clock time)
        self._paths: dict[str, str] = {SCHEDULED: "[]", HISTORY: "[]"}
        self._pending: list[tuple[float, str, str | None]] = []  # (due, path, body)
        self._faults: list[Fault] = []
        self._scheduled: dict[str, dict[str, str]] = {}
        self._history: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    # --- lifetime ----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ImdsEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def env(self) -> dict[str, str]:
        """Point botocore-style clients (and lifecycled) at this emulator."""
        return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url}

    # --- scripting -----------------------------------------------------------------------

    def set_path(self, path: str, body: str | None, *, after: float = 0.0) -> None:
        """Serve `body` at /latest/<path> (None: 404), now or `after` seconds from now."""
        with self._lock:
            if after > 0:
                self._pending.append((self._clock() + after, path, body))
            else:
                self._set(path, body)

    def set_spot_action(
        self, action: str = "terminate", at: datetime | None = None, *, after: float = 0.0
    ) -> dict[str, str]:
        """A Spot interruption notice; `at` (default: two minutes from now) is when it happens."""
        when = at or datetime.now(UTC) + timedelta(seconds=120 + after)
        body = {"action": action, "time": rfc3339(when)}
        self.set_path(SPOT, json.dumps(body), after=after)
        return body

    def clear_spot_action(self, *, after: float = 0.0) -> None:
        self.set_path(SPOT, None, after=after)

    def set_rebalance(self, at: datetime | None = None, *, after: float = 0.0) -> dict[str, str]:
        body = {"noticeTime": rfc3339(at or datetime.now(UTC) + timedelta(seconds=after))}
        self.set_path(REBALANCE, json.dumps(body), after=after)
        return body

    def set_target_lifecycle_state(self, state: str | None, *, after: float = 0.0) -> None:
        self.set_path(TARGET_STATE, state, after=after)

    def add_scheduled_event(
        self,
        code: str = "system-reboot",
        *,
        not_before: datetime | None = None,
        duration: timedelta = timedelta(minutes=15),
        description: str = "scheduled reboot",
        event_id: str | None = None,
    ) -> str:
        """An active maintenance event (default: its window opens in one hour)."""
        start = not_before or datetime.now(UTC) + timedelta(hours=1)
        event_id = event_id or f"instance-event-{secrets.token_hex(9)[:17]}"
        event = {
            "NotBefore": imds_time(start),
            "Code": code,
            "Description": description,
            "EventId": event_id,
            "NotAfter": imds_time(start + duration),
            "State": "active",
        }
        with self._lock:
            self._scheduled[event_id] = event
            self._publish_events()
        return event_id

    def set_scheduled_state(self, event_id: str, state: str) -> None:
        """`canceled` or `completed`: the event stays listed with its new state."""
        with self._lock:
            event = self._scheduled[event_id]
            event["State"] = state
            if state != "active" and not event["Description"].startswith("["):
                event["Description"] = f"[{state.capitalize()}] {event['Description']}"
            self._publish_events()

    def remove_scheduled_event(self, event_id: str) -> None:
        with self._lock:
            self._scheduled.pop(event_id, None)
            self._publish_events()

    # --- faults --------------------------------------------------------------------------

    def fail(self, status: int = 500, *, times: int = 1, path: str | None = None) -> None:
        """The next `times` matching requests get `status`."""
        with self._lock:
            self._faults.append(Fault(times, path, status=status))

    def delay(self, seconds: float, *, times: int = 1, path: str | None = None) -> None:
        """The next `times` matching requests are answered after `seconds` (client timeouts)."""
        with self._lock:
            self._faults.append(Fault(times, path, delay=seconds))

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as if its TTL had passed)."""
        with self._lock:
            self._tokens.clear()

    def count(self, method: str, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.method == method and r.path == path and status in (None, r.status)
            )

    # --- serving -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix("/latest/")
        fault = self._take_fault(path)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            response = web.Response(status=fault.status, text="fault injected")
        elif request.method == "PUT" and path == "api/token":
            response = self._issue_token(request)
        elif request.method == "GET":
            response = self._serve(request, path)
        else:
            response = web.Response(status=405)
        with self._lock:
            self.requests.append(Request(request.method, path, response.status, self._clock()))
        return response

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    return fault
        return None

    def _issue_token(self, request: web.Request) -> web.Response:
        if "X-Forwarded-For" in request.headers:
            return web.Response(status=403, text="Forbidden")  # IMDS refuses proxied PUTs
        try:
            ttl = int(request.headers.get(TTL_HEADER, ""))
        except ValueError:
            return web.Response(status=400, text="Missing or invalid TTL")
        if not 1 <= ttl <= MAX_TTL:
            return web.Response(status=400, text="TTL out of range")
        token = secrets.token_urlsafe(40)
        with self._lock:
            self._tokens[token] = self._clock() + ttl
        return web.Response(text=token, headers={TTL_HEADER: str(ttl)})

    def _serve(self, request: web.Request, path: str) -> web.Response:
        token = request.headers.get(TOKEN_HEADER, "")
        with self._lock:
            now = self._clock()
            if self._tokens.get(token, 0.0) <= now:
                return web.Response(status=401, text="Unauthorized")
            self._apply_due(now)
            body = self._lookup(path)
        if body is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(text=body)

    def _apply_due(self, now: float) -> None:
        due = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        for _, path, body in sorted(due, key=lambda p: p[0]):
            self._set(path, body)

    def _set(self, path: str, body: str | None) -> None:
        if body is None:
            self._paths.pop(path, None)
        else:
            self._paths[path] = body

    def _lookup(self, path: str) -> str | None:
        fixed = self._fixed()
        if path in fixed:
            return fixed[path]
        if path in self._paths:
            return self._paths[path]
        return self._tag(path)

    def _fixed(self) -> dict[str, str]:
        document = {
            "accountId": self.account,
            "architecture": "x86_64",
            "availabilityZone": self.az,
            "imageId": "ami-12c6146b",
            "instanceId": self.instance_id,
            "instanceType": "m5.large",
            "region": self.region,
            "version": "2017-09-30",
        }
        return {
            "meta-data/instance-id": self.instance_id,
            "meta-data/placement/availability-zone": self.az,
            "meta-data/placement/region": self.region,
            "dynamic/instance-identity/document": json.dumps(document, indent=2),
        }

    def _tag(self, path: str) -> str | None:
        prefix = "meta-data/tags/instance"
        if self._tags is None or not path.startswith(prefix):
            return None
        key = path.removeprefix(prefix).strip("/")
        if not key:
            return "\n".join(sorted(self._tags))
        return self._tags.get(key)

    def _publish_events(self) -> None:
        # Ended events stay in `scheduled` with their state (as scripted); `history` lists
        # them too, as IMDS does once an event is cancelled or completed.
        self._set(SCHEDULED, json.dumps(list(self._scheduled.values()), indent=2))
        ended = [e for e in self._scheduled.values() if e["State"] != "active"]
        self._history += [e for e in ended if e not in self._history]
        self._set(HISTORY, json.dumps(self._history, indent=2))


@contextlib.contextmanager
def in_thread(emulator: ImdsEmulator) -> Iterator[ImdsEmulator]:
    """Serve `emulator` from its own thread and event loop (the demo's service is a subprocess)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(emulator.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(emulator.stop())

    thread = threading.Thread(target=run, name="imds-emulator", daemon=True)
    thread.start()
    started.wait()
    if failure:
        loop.close()
        raise RuntimeError("the IMDS emulator did not start") from failure[0]
    try:
        yield emulator
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
