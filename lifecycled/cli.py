"""The command line: `lifecycled run`, `check`, `explain`, `version` (and `--version`).

Every setting is a flag of `run` and `check`, built from the settings registry: its help is
the field's description, with its default and environment variable. Booleans are switches
(`--dry-run` / `--no-dry-run`); `--dry-run true` (a value, as the environment takes it) is
still accepted. Earlier names of a setting work but are left out of the usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Literal, get_args, get_origin

from lifecycled import __version__
from lifecycled.errors import ConfigError
from lifecycled.observe import fields, setup_logging
from lifecycled.settings import SETTINGS, Setting, Settings, load_settings

log = logging.getLogger("lifecycled")

# Exit codes. run: 0 stopped; 1 an unexpected error; 2 bad settings (or usage); 3 missing
# configuration (no kubeconfig or in-cluster account, no AWS credentials or region).
# check: 0 nothing failed (warnings allowed); 1 a check failed; 2 bad settings (or usage).
EXIT_UNEXPECTED, EXIT_SETTINGS, EXIT_CONFIG = 1, 2, 3
EXIT_CHECK_FAILED = 1

TRUE_WORDS = frozenset({"true", "1", "yes", "on", "t", "y"})
BOOL_WORDS = TRUE_WORDS | {"false", "0", "no", "off", "f", "n"}


def _help(setting: Setting) -> str:
    default = setting.default_text or "unset"
    env = " or ".join(setting.env)
    # argparse formats help with %: a literal one is written %%.
    return f"{setting.help} (default: {default}; env {env})".replace("%", "%%")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, grouped as the settings are."""
    groups: dict[str | None, argparse._ArgumentGroup] = {}
    for name, setting in SETTINGS.items():
        if setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(_group_title(setting.group))
        group = groups[setting.group]
        older = ["--" + o.replace("_", "-") for o in setting.older]
        if setting.is_switch:
            group.add_argument(
                setting.flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=_help(setting),
            )
            for flag in older:
                group.add_argument(
                    flag, dest=name, action=argparse.BooleanOptionalAction, help=argparse.SUPPRESS
                )
        else:
            metavar = _metavar(setting)
            group.add_argument(setting.flag, dest=name, metavar=metavar, help=_help(setting))
            for flag in older:  # earlier names (--rebalance-action): accepted, not shown
                group.add_argument(flag, dest=name, metavar=metavar, help=argparse.SUPPRESS)


def _metavar(setting: Setting) -> str:
    annotation = setting.field.annotation
    if get_origin(annotation) is Literal:
        return "{" + ",".join(map(str, get_args(annotation))) + "}"
    numbers = {int, float, int | None, float | None}
    return "N" if annotation in numbers else "VALUE"


def _group_title(group: str | None) -> str:
    if group is None:
        return "mode"
    model = Settings.model_fields[group].annotation
    doc = (model.__doc__ or group) if model is not None else group
    return f"{group}: {doc.strip().splitlines()[0].rstrip('.')}"


def _switch_flags() -> frozenset[str]:
    found = set()
    for setting in SETTINGS.values():
        if setting.is_switch:
            found |= {"--" + n.replace("_", "-") for n in setting.names}
    return frozenset(found)


def switches_with_values(argv: Sequence[str]) -> list[str]:
    """`--dry-run true` / `--dry-run=false` (a value, as before) -> `--dry-run` / `--no-dry-run`."""
    switches = _switch_flags()
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in switches and eq and value.lower() in BOOL_WORDS:
            out.append(_spelt(flag, value))
        elif arg in switches and i + 1 < len(argv) and argv[i + 1].lower() in BOOL_WORDS:
            out.append(_spelt(arg, argv[i + 1]))
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def _spelt(flag: str, value: str) -> str:
    return flag if value.lower() in TRUE_WORDS else "--no-" + flag.removeprefix("--")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifecycled",
        description="Drain Kubernetes nodes and ECS container instances before AWS takes "
        "the machine away.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"lifecycled {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="consume notices and drain machines",
        usage="%(prog)s [--SETTING VALUE | --SWITCH | --no-SWITCH ...]",
        description="Consume notices and drain machines. Every setting is also an environment "
        "variable; a flag wins over it.",
    )
    _add_settings(run)
    check = sub.add_parser(
        "check",
        help="check the surroundings of the configured mode (reads only)",
        description="Read-only preflight for the configured mode: one line per check (ok, "
        "warn or fail, and the fix). Exit 1 when a check fails, 2 on bad settings.",
    )
    check.usage = "%(prog)s [--output {text,json}] [--SETTING VALUE | --SWITCH ...]"
    check.add_argument("--output", choices=("text", "json"), default="text", help="default: text")
    _add_settings(check)
    explain = sub.add_parser("explain", help="parse one message body and print what we'd do")
    explain.add_argument("file", nargs="?", help="a file with one message body, or - for stdin")
    explain.add_argument("--node", help="what a live run would do to this node (reads only)")
    explain.add_argument("--deadline-seconds", help="with --node and no file: time to deadline")
    sub.add_parser("version", help="print the version")
    return parser


async def _serve(settings: Settings) -> None:
    from lifecycled.app import Service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Service(settings).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(switches_with_values(sys.argv[1:] if argv is None else argv))
    if args.command == "version":
        print(f"lifecycled {__version__}")
        return 0
    if args.command == "explain":
        return _explain(args)
    skip = {"command", "output"}
    overrides = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"lifecycled: invalid setting: {line}", file=sys.stderr)
        return EXIT_SETTINGS
    if args.command == "check":
        from lifecycled.preflight import main_check

        return main_check(settings, output=args.output)
    setup_logging(settings.observe.log_level, settings.observe.log_format)
    try:
        asyncio.run(_serve(settings))
    except BaseException as exc:
        return _exit_code(exc, traceback=settings.observe.log_format == "text")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from lifecycled.explain_cli import main as explain_main

    passed = [args.file] if args.file else []
    if args.node:
        passed += ["--node", args.node]
    if args.deadline_seconds:
        passed += ["--deadline-seconds", args.deadline_seconds]
    return explain_main(passed)


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
