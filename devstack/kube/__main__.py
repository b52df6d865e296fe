"""python -m devstack.kube: the Kubernetes API emulator in a process of its own.

    python -m devstack.kube --port 0 --kubeconfig /tmp/kubeconfig [--seed-nodes 1000]

prints `export KUBE_URL=...` and `export KUBECONFIG=...`, then `# ready` once it serves
(after seeding, when asked to), and serves until SIGTERM or SIGINT. Seed, inspect and steer
it through the admin API (devstack/kube/admin.py), or with `KubeApiProcess`
(devstack/kube/process.py), which starts it and speaks that API.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import admin, seeding
from .server import KubeApiServer


async def serve(args: argparse.Namespace) -> int:
    server = KubeApiServer(
        controllers=not args.no_controllers,
        tick=args.tick,
        host=args.host,
        port=args.port,
        record_limit=args.record_limit or None,
        freeze_after_seed=True,
    )
    await server.start()
    kubeconfig = Path(args.kubeconfig or Path(tempfile.mkdtemp(prefix="devstack-kube-")) / "kc")
    server.write_kubeconfig(kubeconfig)
    print(f"export KUBE_URL={shlex.quote(server.url)}")
    print(f"export KUBECONFIG={shlex.quote(str(kubeconfig))}")
    sys.stdout.flush()
    if args.seed_nodes:
        shape = seeding.Shape(nodes=args.seed_nodes, pods_per_node=args.pods_per_node)
        started = time.monotonic()
        admin.create_all(server, seeding.manifests(shape))
        waited = await admin.wait(server, {"pods_ready": shape.total_pods, "timeout": 600})
        admin.freeze()
        print(
            f"# seeded {shape.nodes} nodes, {shape.total_pods} pods in "
            f"{time.monotonic() - started:.1f} s (all ready: {waited['ok']})"
        )
    print("# ready")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.kube")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--kubeconfig", help="where to write the kubeconfig (default: a temp dir)")
    parser.add_argument("--tick", type=float, default=0.05, help="controller period, seconds")
    parser.add_argument("--no-controllers", action="store_true")
    parser.add_argument(
        "--record-limit",
        type=int,
        default=200_000,
        help="keep about this many recorded requests (0: all)",
    )
    parser.add_argument("--seed-nodes", type=int, default=0, help="seed a storm-shaped cluster")
    parser.add_argument("--pods-per-node", type=int, default=20)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--gc-threshold", type=int, default=50_000, help="gen-0 GC threshold")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    # This process holds a large, acyclic heap: collect the young generation less often, so
    # that request-scoped objects die young instead of being promoted into full collections.
    gc.set_threshold(args.gc_threshold, 10, 10)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
