"""Parsing speed: every real payload in tests/fixtures/events, and hostile bodies.

Targets (checked; exit 1 when missed): a real payload parses in under 1 ms at the 99th
percentile; a hostile 1 MiB body is refused in under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from lifecycled.events import parse_message

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "events"
P99_LIMIT_MS = 1.0
HOSTILE_LIMIT_MS = 50.0


def timed(body: str, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        parse_message(body)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def hostile_bodies() -> dict[str, str]:
    mib = 1024 * 1024
    return {
        "1 MiB string": json.dumps({"detail-type": "x" * mib}),
        "deep nesting": "[" * 100_000 + "]" * 100_000,
        "1 MiB garbage": "\x00{" * (mib // 2),
        "many keys": json.dumps({f"k{i}": i for i in range(60_000)}),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    failures = []
    all_samples: list[float] = []
    for path in sorted(FIXTURES.glob("*.json")):
        samples = timed(path.read_text(), args.rounds)
        all_samples += samples
        print(f"  {path.stem:38s} median {statistics.median(samples) * 1000:7.1f} µs")
    p99 = statistics.quantiles(all_samples, n=100)[98]
    rate = len(all_samples) / (sum(all_samples) / 1000)
    print(f"real payloads: p99 {p99 * 1000:.1f} µs, {rate:,.0f} messages/s on one core")
    if p99 > P99_LIMIT_MS:
        failures.append(f"p99 {p99:.3f} ms > {P99_LIMIT_MS} ms")
    for name, body in hostile_bodies().items():
        worst = max(timed(body, 5))
        print(f"  hostile: {name:20s} worst {worst:6.1f} ms")
        if worst > HOSTILE_LIMIT_MS:
            failures.append(f"hostile {name}: {worst:.1f} ms > {HOSTILE_LIMIT_MS} ms")
    for failure in failures:
        print(f"BENCH FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
