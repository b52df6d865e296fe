"""python -m devstack.aws: run the stack and print its environment.

    eval "$(python -m devstack.aws --queue lifecycled --group demo:3)"

prints `export` lines first, then `# <group>: <id> <dns> <az>` per instance, then `# ready`,
and serves until SIGTERM or SIGINT (run it in the background or in another terminal; or use
`AwsStackProcess` from devstack/aws/process.py, which starts it and connects helpers to it).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from types import FrameType

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
    parser.add_argument("--spot", action="store_true", help="the groups' instances are Spot")
    parser.add_argument("--heartbeat-timeout", type=int, default=300, help="the hooks', seconds")
    args = parser.parse_args(argv)
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
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
        created = stack.create_group(
            name,
            size=int(size or 1),
            spot=args.spot,
            heartbeat_timeout=args.heartbeat_timeout,
        )
        for instance in created:
            print(f"# {name}: {instance.id} {instance.private_dns_name} {instance.az}")
    print("# ready")
    sys.stdout.flush()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
