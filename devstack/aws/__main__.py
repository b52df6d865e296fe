"""python -m devstack.aws: run the stack and print its environment.

    eval "$(python -m devstack.aws --queue lifecycled --group demo:3)"

prints `export` lines first, then serves until interrupted (run it in the background or in
another terminal).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading

from .stack import AwsStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.aws")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--queue", help="create this queue (with DLQ) and route events to it")
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME:SIZE",
        help="create an Auto Scaling group with a 'drain' terminate hook (repeatable)",
    )
    args = parser.parse_args(argv)
    stack = AwsStack(region=args.region, port=args.port)
    stack.start()
    for key, value in stack.env().items():
        print(f"export {key}={shlex.quote(value)}")
    if args.queue:
        queue = stack.create_queue(args.queue)
        stack.route_events_to(queue)
        print(f"export LIFECYCLED_QUEUE_URL={shlex.quote(queue.url)}")
    for spec in args.group:
        name, _, size = spec.partition(":")
        for instance in stack.create_group(name, size=int(size or 1)):
            print(f"# {name}: {instance.id} {instance.private_dns_name} {instance.az}")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
