"""`lifecycled explain [FILE|-] [--node NAME]`: the command line over explain.py (a message)
and explain_node.py (a node), so neither of those imports the other's caller."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import BinaryIO

from lifecycled.events import MAX_BODY_BYTES
from lifecycled.explain import (
    EXIT_REJECTED,
    EXIT_UNREADABLE,
    actions_from_env,
    explain,
    scope_from_env,
)
from lifecycled.explain_node import main_node


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lifecycled explain",
        description="Parse one SQS message body as lifecycled would; print one JSON line.",
    )
    parser.add_argument("file", nargs="?", help="file holding the message body, or - for stdin")
    parser.add_argument("--node", help="also say what a live run would do to this node")
    parser.add_argument(
        "--deadline-seconds",
        type=float,
        default=None,
        help="with --node and no message: seconds to the drain's deadline (default: Spot's)",
    )
    try:
        args = parser.parse_args(argv)
        if args.file is None and args.node is None:
            parser.error("a message FILE, --node NAME, or both")
    except SystemExit as exit_:  # argparse exits on usage errors; return the code instead
        return exit_.code if isinstance(exit_.code, int) else EXIT_REJECTED
    body: bytes | None = None
    if args.file is not None:
        try:
            body = _read(args.file)
        except OSError as exc:
            print(f"lifecycled explain: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return EXIT_UNREADABLE
    if args.node is not None:
        return main_node(args.node, body, deadline_seconds=args.deadline_seconds)
    assert body is not None
    allowed_accounts, region = scope_from_env(os.environ)
    code, obj = explain(
        body, allowed_accounts=allowed_accounts, region=region, actions=actions_from_env(os.environ)
    )
    print(json.dumps(obj))
    return code


def _read(path: str) -> bytes:
    # Read one byte past the limit at most: enough to refuse, never unbounded memory.
    if path == "-":
        return _read_bounded(sys.stdin.buffer)
    with open(path, "rb") as file:
        return _read_bounded(file)


def _read_bounded(stream: BinaryIO) -> bytes:
    return stream.read(MAX_BODY_BYTES + 1)


if __name__ == "__main__":
    raise SystemExit(main())
