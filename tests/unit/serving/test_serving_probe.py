"""The latency probe and accuracy check against the live CPU server."""

from __future__ import annotations

import pytest

from stratos_deployer.serving.cpu_server import RunningServer
from stratos_deployer.serving.probe import check_accuracy, percentile, probe_latency


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_probe_latency_reports_sane_percentiles(cpu_server: RunningServer) -> None:
    prompts = [[{"role": "user", "content": f"What is {i} + 1?"}] for i in range(3)]
    report = probe_latency(
        cpu_server.url + "/v1", cpu_server.served_name, prompts, n_requests=6, concurrency=3, max_tokens=8
    )
    assert report.n_requests == 6
    assert 0 < report.ttft_p50 <= report.ttft_p95
    assert 0 < report.e2e_p50 <= report.e2e_p95
    assert report.ttft_p50 <= report.e2e_p50
    assert report.e2e_p95 <= report.wall_s
    assert 0 < report.completion_tokens <= 6 * 8


def test_check_accuracy_grades_each_output(cpu_server: RunningServer) -> None:
    prompts = [[{"role": "user", "content": f"What is {i} + 2?"}] for i in range(4)]
    url = cpu_server.url + "/v1"
    first = check_accuracy(url, cpu_server.served_name, [(p, "") for p in prompts], lambda out, ans: False)
    assert first.accuracy == 0.0 and first.total == 4
    # Use the model's own greedy outputs as answers for half the items: greedy is deterministic.
    pairs = enumerate(zip(prompts, first.outputs, strict=True))
    items = [(p, out if i % 2 == 0 else "\x00never") for i, (p, out) in pairs]
    report = check_accuracy(url, cpu_server.served_name, items, lambda out, ans: out == ans)
    assert report.correct == 2 and report.accuracy == 0.5
    assert report.outputs == first.outputs
