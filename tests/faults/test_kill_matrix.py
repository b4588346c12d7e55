"""Faults over the real stack: every service SIGKILLed mid-stage, the broker killed mid-job, a server lost.

The default run is the CI size (about two minutes on two cores): one job with
each of the six services SIGKILLed and relaunched in the stage where it works, a
second job training while the nats-server is SIGKILLed and restarted on its file
store, and a third whose server is marked down before training. Set
``STRATOS_FAULTS_FULL=1`` for the full matrix: each service killed at every stage
(one job per cell), the broker killed at every stage, and a server lost at every
stage including after deployment. ``STRATOS_FAULTS_REPORT=path.json`` writes the
report for `bench/faults.py` and the README table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.matrix import Fault, MatrixReport, default_run, full_rounds, run_matrix, server_kill_round

pytestmark = pytest.mark.nats

FULL = os.environ.get("STRATOS_FAULTS_FULL") == "1"


def publish(report: MatrixReport) -> None:
    print("\n" + report.render())
    path = os.environ.get("STRATOS_FAULTS_REPORT")
    if path:
        report.write(path)


def assert_survived(report: MatrixReport) -> None:
    """Every job completed, with every stage event in the stream, each side effect once."""
    summary = report.summary()
    assert summary["jobs_completed"] == summary["jobs"], report.render()
    assert summary["events_lost"] == 0, report.render()
    assert summary["duplicate_side_effects"] == 0, report.render()


@pytest.mark.timeout(900)
async def test_kills_in_every_stage_lose_nothing_and_repeat_nothing(tmp_path: Path) -> None:
    report = await run_matrix([default_run()], tmp_path)
    publish(report)
    assert_survived(report)
    killed = {(f.service, f.stage) for f in report.faults if f.hit}
    # the teacher stages are held while their service dies, so those kills land mid-stage for certain
    assert {("teacher-eval", "teacher-eval"), ("data-synth", "data-synth")} <= killed, report.render()
    jobs = {j.job_id: j for j in report.jobs}
    # killed mid-stage, the teacher callers re-sent requests (only those in flight: checked per request above)
    assert jobs["kill-1"].teacher_resent > 0
    # the trainer died after its first checkpoint and resumed from it, not from step 0
    assert jobs["kill-1"].resumed_from_step > 0
    # the job whose server went down before training was placed again and trained and served there
    assert jobs["down-1"].model_servers == 1 and jobs["kill-1"].model_servers == 1


@pytest.mark.skipif(not FULL, reason="full fault matrix (~40 jobs, tens of minutes): set STRATOS_FAULTS_FULL=1")
@pytest.mark.timeout(5400)
async def test_full_matrix_every_service_at_every_stage(tmp_path: Path) -> None:
    report = await run_matrix(full_rounds(), tmp_path, timeout_s=900)
    publish(report)
    assert_survived(report)


@pytest.mark.skipif(not FULL, reason="3-node cluster under the whole stack (~2 min): set STRATOS_FAULTS_FULL=1")
@pytest.mark.timeout(900)
async def test_cluster_node_leading_the_stream_killed_mid_job(tmp_path: Path) -> None:
    """R3 streams and buckets: the node leading the events stream dies mid-training and stays dead
    (one node only: two of three would lose the quorum)."""
    report = await run_matrix([[Fault("nats", "training", "cluster-1")]], tmp_path, cluster=True)
    publish(report)
    assert_survived(report)
    assert all(f.hit for f in report.faults), report.render()


@pytest.mark.skipif(not FULL, reason="a server SIGKILLed at each of six stages (~4 min): set STRATOS_FAULTS_FULL=1")
@pytest.mark.timeout(1200)
async def test_a_server_killed_at_every_stage_is_noticed_from_its_silence(tmp_path: Path) -> None:
    """Every process of the job's server SIGKILLed, nothing said: ServerDown (heartbeat-timeout), re-plan,
    resume or redeploy elsewhere; the server's workers start again once its job has moved."""
    report = await run_matrix([server_kill_round()], tmp_path, timeout_s=900)
    publish(report)
    assert_survived(report)
