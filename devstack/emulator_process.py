"""Start an emulator (`python -m devstack.kube`, `python -m devstack.aws`) in a process of its
own, so that it has a core and an event loop to itself. The child prints `export KEY=VALUE`
lines, then `# ready`; `env` holds the exported values."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parent.parent  # where `devstack` is importable from


class EmulatorProcess:
    module = ""  # e.g. "devstack.kube"

    def __init__(
        self,
        args: list[str] | None = None,
        *,
        python: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.args = list(args or [])
        self.python = python or sys.executable
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.env: dict[str, str] = {}  # what the child exported
        self.notes: list[str] = []  # its `# ...` lines
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        return [self.python, "-m", self.module, *self.args]

    def start(self) -> None:
        if self._proc is not None:
            return
        env = dict(os.environ, **self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT
        )
        threading.Thread(target=self._read, name=f"{self.module}-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TimeoutError(f"{self.module} did not get ready") from None
            if line is None:
                code = self._proc.wait()
                self._proc = None
                raise RuntimeError(f"{self.module} exited ({code}) before it was ready")
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                self.env[key] = shlex.split(value)[0] if value else ""
            elif line == "# ready":
                return
            elif line.startswith("#"):
                self.notes.append(line[1:].strip())

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:  # keeps draining after `# ready`: the pipe never fills
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
