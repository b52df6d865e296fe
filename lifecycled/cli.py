"""`lifecycled run` and `lifecycled explain`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from lifecycled.errors import ConfigError
from lifecycled.observe import fields, setup_logging
from lifecycled.settings import SETTINGS, Settings, load_settings

log = logging.getLogger("lifecycled")


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="consume notices and drain machines")
    for name, setting in SETTINGS.items():
        run.add_argument(
            "--" + name.replace("_", "-"),
            # Earlier names (--rebalance-action), still accepted.
            *("--" + older.replace("_", "-") for older in setting.older),
            dest=name,
            default=None,
            help=f"{setting.field.description or ''} (env LIFECYCLED_{name.upper()})".strip(),
        )


async def _serve(settings: Settings) -> None:
    from lifecycled.app import Service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Service(settings).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifecycled")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    explain = sub.add_parser("explain", help="parse one message body and print what we'd do")
    explain.add_argument("file", nargs="?", help="a file with one message body, or - for stdin")
    explain.add_argument("--node", help="what a live run would do to this node (reads only)")
    explain.add_argument("--deadline-seconds", help="with --node and no file: time to deadline")
    args = parser.parse_args(argv)
    if args.command == "explain":
        from lifecycled.explain_cli import main as explain_main

        passed = [args.file] if args.file else []
        if args.node:
            passed += ["--node", args.node]
        if args.deadline_seconds:
            passed += ["--deadline-seconds", args.deadline_seconds]
        return explain_main(passed)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"lifecycled: invalid settings: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    setup_logging(settings.observe.log_level, settings.observe.log_format)
    try:
        asyncio.run(_serve(settings))
    except BaseException as exc:
        return _exit_code(exc, traceback=settings.observe.log_format == "text")
    return 0


# Exit codes: 0 stopped; 1 an unexpected error; 2 bad settings; 3 missing configuration
# (no kubeconfig or in-cluster account, no AWS credentials or region).
EXIT_UNEXPECTED, EXIT_SETTINGS, EXIT_CONFIG = 1, 2, 3


def _exit_code(exc: BaseException, *, traceback: bool) -> int:
    cause = _first_cause(exc)
    if isinstance(cause, KeyboardInterrupt | SystemExit):
        return 0 if isinstance(cause, KeyboardInterrupt) else int(cause.code or 0)
    if isinstance(cause, ConfigError):
        log.error("cannot start: %s", cause, extra=fields(exit_code=EXIT_CONFIG))
        return EXIT_CONFIG
    log.error(
        "stopped by an unexpected error",
        exc_info=cause if traceback else None,
        extra=fields(error=f"{type(cause).__name__}: {cause}", exit_code=EXIT_UNEXPECTED),
    )
    return EXIT_UNEXPECTED


def _first_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (a TaskGroup wraps what broke)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
