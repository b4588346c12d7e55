"""Partitions, not only deaths: a server on another host cut off while it trains, and while it serves.

See `tests/e2e/partition.py` for what a trial does and checks; `bench/partitions.py` repeats them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.partition import Stage, partition_trial
from tests.netns import Host, netns_unavailable, network_host

pytestmark = pytest.mark.nats


@pytest.fixture
def host() -> Iterator[Host]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"partition test: {reason}")
    with network_host(1) as made:
        yield made


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "stage",
    # ~90 s each on two cores: the cut during serving runs with STRATOS_FULL_TESTS=1 and in bench/partitions.py
    ["training", pytest.param("serving", marks=pytest.mark.slow)],
)
async def test_a_server_cut_off_loses_its_job_and_has_no_say_after_the_heal(
    tmp_path: Path, host: Host, stage: Stage
) -> None:
    trial = await partition_trial(tmp_path, host, stage)
    print(f"partition while {stage}: placed again {trial.replanned_s:.1f} s, served {trial.serving_again_s:.1f} s")
    assert trial.violations == [], trial.violations
