"""`make chaos`: every scenario for many seeds, then the table (scenario x seeds x faults
injected x violations). Exit 1 when any invariant was violated.

    python -m tests.chaos                       # every scenario, 20 seeds each, 4 nodes
    python -m tests.chaos --scenario sigkill --seed 1234 --seeds 1   # replay one run
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter

from devstack.aws import AwsStack
from tests.chaos.harness import SCENARIOS, Result, run


async def main_async(scenarios: list[str], first_seed: int, seeds: int, size: int) -> int:
    results: list[Result] = []
    with AwsStack() as aws:
        for scenario in scenarios:
            for seed in range(first_seed, first_seed + seeds):
                result = await run(aws, scenario, seed, size)
                print(result.row(), flush=True)
                results.append(result)
    print_table(results)
    return 1 if any(r.violations for r in results) else 0


def print_table(results: list[Result]) -> None:
    print(f"\n{'scenario':<14} {'seeds':>5} {'faults injected':>16} {'violations':>10}  kinds")
    for scenario in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == scenario]
        kinds: Counter[str] = Counter()
        for r in mine:
            kinds.update(r.injected)
        faults = sum(kinds.values())
        violations = sum(len(r.violations) for r in mine)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        print(f"{scenario:<14} {len(mine):>5} {faults:>16} {violations:>10}  {detail}")
    for r in results:
        for violation in r.violations:
            print(f"VIOLATION {r.scenario} seed {r.seed}: {violation}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args()
    scenarios = args.scenario or list(SCENARIOS)
    return asyncio.run(main_async(scenarios, args.seed, args.seeds, args.nodes))


if __name__ == "__main__":
    sys.exit(main())
