"""The short chaos run CI does (`make chaos-short`, LIFECYCLED_CHAOS=1; about a minute, so
not in `make test`): every scenario once, 4 nodes, one seed, printed; replay with
`python -m tests.chaos --scenario S --seed N --seeds 1 --nodes 4`. `make chaos` runs the
long one: 20 seeds per scenario."""

from __future__ import annotations

import os

import pytest

from devstack.aws import AwsStack
from tests.chaos.harness import SCENARIOS, run

SEED = int(os.environ.get("LIFECYCLED_CHAOS_SEED", "7"))
pytestmark = pytest.mark.skipif(
    os.environ.get("LIFECYCLED_CHAOS") != "1", reason="make chaos-short (LIFECYCLED_CHAOS=1)"
)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_chaos_short_run_keeps_every_invariant(aws: AwsStack, scenario: str) -> None:
    result = await run(aws, scenario, SEED, size=4)
    print(result.row())
    assert sum(result.injected.values()) > 0, "no fault was injected"
    assert not result.violations, result.row()
