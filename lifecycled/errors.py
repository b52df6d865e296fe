"""Our own error types: the client layer translates library errors into these."""

from __future__ import annotations


class LifecycledError(Exception):
    """Base class for errors lifecycled raises on purpose."""


class TemporaryError(LifecycledError):
    """Worth retrying; `delay` is the server's own hint (Retry-After), if it gave one."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(LifecycledError):
    """Retrying will not help: bad request, forbidden, invalid."""


class NotFoundError(PermanentError):
    """The object is gone (or never was)."""


class ConflictError(TemporaryError):
    """Optimistic-concurrency conflict: re-read and try again."""


class ConfigError(LifecycledError):
    """Settings are missing or contradict each other."""


class AlreadyExistsError(PermanentError):
    """Create refused: an object with that name exists (for idempotent creates, success)."""
