"""Recording every API call that reaches moto, at the WSGI layer."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The devstack's own helper clients add this to their User-Agent, so tests can tell the
# service's calls from the set-up and scenario calls.
DEVSTACK_AGENT = "lifecycled-devstack"
# Answered by the recorder itself, not moto (and not recorded): the calls counted so far, for
# benchmarks whose stack runs in another process (AwsStackProcess.call_summary()).
SUMMARY_PATH = "/devstack/calls/summary"


@dataclass(frozen=True)
class RecordedCall:
    service: str  # the SigV4 signing name: "autoscaling", "sqs", "events", "ec2", ...
    action: str  # "CompleteLifecycleAction", "ReceiveMessage", ...
    params: dict[str, Any]  # query params (flat, "A.member.1" keys) or the JSON body
    time: float  # time.monotonic() when the request arrived
    status: int
    user_agent: str = ""

    @property
    def from_devstack(self) -> bool:
        return DEVSTACK_AGENT in self.user_agent


class CallLog(list[RecordedCall]):
    """A list the server threads append to; read it with snapshot() while traffic flows."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def record(self, call: RecordedCall) -> None:
        with self._lock:
            self.append(call)

    def clear(self) -> None:
        with self._lock:
            super().clear()

    def snapshot(self) -> list[RecordedCall]:
        with self._lock:
            return list(self)

    def summary(self) -> dict[str, int]:
        """Count per "service Action status" of the calls not made by the devstack's helpers."""
        counts: dict[str, int] = {}
        for c in self.snapshot():
            if not c.from_devstack:
                key = f"{c.service} {c.action} {c.status}"
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def of(self, action: str, *, include_devstack: bool = False) -> list[RecordedCall]:
        return [
            c
            for c in self.snapshot()
            if c.action == action and (include_devstack or not c.from_devstack)
        ]


class RecordingApp:
    """WSGI middleware in front of moto's dispatcher."""

    def __init__(self, app: WsgiApp, log: CallLog) -> None:
        self._app = app
        self._log = log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == SUMMARY_PATH:
            body = json.dumps(self._log.summary()).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        started = time.monotonic()
        body = _read_body(environ)
        status: list[int] = []

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(status_line.split(" ", 1)[0]))
            return start_response(status_line, headers, exc_info)

        result = self._app(environ, capture)
        call = describe(environ, body, started, status[0] if status else 0)
        if call is not None:
            self._log.record(call)
        return result


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    return body


def describe(
    environ: dict[str, Any], body: bytes, started: float, status: int
) -> RecordedCall | None:
    path = str(environ.get("PATH_INFO", ""))
    if path.startswith("/moto-api"):
        return None
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    params = _params(environ, body)
    action = target.rsplit(".", 1)[-1] if target else str(params.pop("Action", ""))
    params.pop("Version", None)
    return RecordedCall(
        service=_service(environ),
        action=action,
        params=params,
        time=started,
        status=status,
        user_agent=str(environ.get("HTTP_USER_AGENT", "")),
    )


def _service(environ: dict[str, Any]) -> str:
    # "AWS4-HMAC-SHA256 Credential=KEY/20240101/us-east-1/autoscaling/aws4_request, ..."
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        return scope.split("/")[3]
    except IndexError:
        return ""


def _params(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    content_type = str(environ.get("CONTENT_TYPE", ""))
    text = body.decode("utf-8", "replace")
    if "json" in content_type and text:
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    query = text or str(environ.get("QUERY_STRING", ""))
    return dict(parse_qsl(query, keep_blank_values=True))
