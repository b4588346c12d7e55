"""Concurrent jobs through the real services (trainer and deployer are TEST DOUBLES): nothing lost, nothing
done twice, no server over capacity. 100 jobs by default; 500 with STRATOS_LOAD_FULL=1 (bench/load.py prints
the same table)."""

from __future__ import annotations

import os

import pytest

from tests.load.harness import LoadConfig, LoadReport, run_load

pytestmark = pytest.mark.nats
FULL = os.environ.get("STRATOS_LOAD_FULL") == "1"


def check(report: LoadReport) -> None:
    print(f"\n{report.table()}")
    assert report.completed == report.jobs, (report.failed, report.rejected, report.lost, report.reasons)
    assert report.lost == 0 and report.duplicated == 0 and report.duplicate_runs == 0
    assert report.over_capacity == [] and report.max_load <= report.capacity
    # one slot per deployed job, all given back on cancel: the watcher saw every claim and every release
    assert report.slots_held == report.jobs and report.slots_left_after_cancel == 0
    assert report.loads_observed >= 2 * report.jobs
    assert report.ledger_completed == report.jobs


@pytest.mark.timeout(180)
async def test_100_concurrent_jobs_complete_once_each_within_capacity(nats_server, tmp_path) -> None:
    check(await run_load(LoadConfig(jobs=100, timeout_s=120), nats_server.url, tmp_path / "home"))


@pytest.mark.skipif(not FULL, reason="500 concurrent jobs take minutes on 2 cores: set STRATOS_LOAD_FULL=1")
@pytest.mark.timeout(900)
async def test_500_concurrent_jobs_complete_once_each_within_capacity(nats_server, tmp_path) -> None:
    check(await run_load(LoadConfig(jobs=500, timeout_s=600), nats_server.url, tmp_path / "home"))
