"""moto's threaded server, with our call recorder in front and request logging off."""

from __future__ import annotations

from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from .calls import CallLog, RecordingApp


class QuietRequestHandler(MotoRequestHandler):
    """No access log line per request: tests and the demo make thousands of calls."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class RecordingMotoServer(ThreadedMotoServer):
    def __init__(self, calls: CallLog, *, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._calls = calls

    def _server_entry(self) -> None:
        # Same as ThreadedMotoServer._server_entry, with the app wrapped.
        app: Any = RecordingApp(DomainDispatcherApplication(create_backend_app), self._calls)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=QuietRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()
