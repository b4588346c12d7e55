"""The deployer's job report, assembled from the ledger and its own measurements (pure: no broker, no model)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratos_deployer.domain import NotPlacedError, build_report
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import JobState
from stratos_shared.report import JobReport, ServedEndpoint, render_markdown

ROOT = Path(__file__).parents[3]
SERVER = {"id": "a100-us-east", "cost_per_hour": 10.0, "latency_ms": 35.0, "gpu_model": "A100-80G"}
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def served(accuracy: float, latency_p50_ms: float = 20.0) -> ServedEndpoint:
    return ServedEndpoint(
        ttft_p50_ms=5.0, ttft_p95_ms=6.0, latency_p50_ms=latency_p50_ms, latency_p95_ms=latency_p50_ms * 1.5,
        accuracy=accuracy, endpoint="http://127.0.0.2:8001/v1", backend="cpu", server_id=SERVER["id"], auth="bearer",
    )  # fmt: skip


def report_of(spec: JobSpec, results: dict[str, Any], endpoint: ServedEndpoint) -> JobReport:
    return build_report(spec, state(results), endpoint, AT)


def spec() -> JobSpec:
    return JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")  # SLO 100 ms, budget 200, 24 serving hours


def score(name: str, accuracy: float) -> dict[str, Any]:
    return {
        "name": name,
        "accuracy": accuracy,
        "ci_low": 0.0,
        "ci_high": 1.0,
        "graded": 10,
        "errors": 0,
        "cost_usd": 0.5,
    }


def state(results: dict[str, Any]) -> JobState:
    return JobState(job_id="r-1", server_id=SERVER["id"], server_revision=2, student="tiny-1m", results=results)


def test_report_over_slo_and_over_budget_says_so_and_scores_it() -> None:
    results = {
        "server": {**SERVER, "revision": 2, "reason": "server h100-us-east went down"},
        "placement": {"strategy": "pareto", "feasible_count": 6, "total_count": 8, "pareto_size": 4, "grid_k": 10},
        "teacher_eval": {
            "teacher": "strong",
            "mode": "alignment",
            "tau": 0.5,
            "cost_usd": 1.0,
            "scores": [score("weak", 0.3), score("strong", 0.9)],
        },
        "data": {"accepted": 80, "asked": 100, "rate": 0.8, "cost_usd": 2.0},
        "training": {"before": 0.05, "after": 0.45, "seconds": 61.0, "cost_usd": 3.0},
        "loss_curve": [[1, 2.5], [2, 2.0]],
    }
    report = report_of(spec(), results, served(0.4, latency_p50_ms=80.0))

    assert report.server.reason == "server h100-us-east went down" and report.server.revision == 2
    assert report.server.pareto_size == 4 and report.server.strategy == "pareto"
    assert report.teacher is not None and report.teacher.accuracy == 0.9 and report.teacher.mode == "alignment"
    assert (report.student.before, report.student.after, report.student.seconds) == (0.05, 0.45, 61.0)
    assert report.student.student == "tiny-1m" and report.generated_at == AT
    # 35 ms to the server plus 80 ms p50 misses a 100 ms SLO
    assert report.serving.total_latency_ms == 115.0 and report.serving.meets_slo is False
    # 24 planned serving hours at $10/h alone exceed the $200 budget
    assert report.cost.serving_usd == 240.0 and report.cost.total_usd == 246.0 and report.cost.budget_usd == 200
    assert report.score.accuracy == 0.4
    assert report.score.latency == pytest.approx(100 / 115)
    assert report.score.cost == 0.0, "an over-budget job must not score on cost"
    assert report.score.total == pytest.approx((0.4 + 100 / 115 + 0.0) / 3)
    assert report.loss_curve == [(1, 2.5), (2, 2.0)]


def test_report_within_constraints_scores_full_marks_on_them() -> None:
    cheap = {**SERVER, "cost_per_hour": 1.0}
    results = {"server": cheap, "training": {"before": 0.0, "after": 0.2, "cost_usd": 0.5}}
    report = report_of(spec(), results, served(0.2))
    assert report.serving.meets_slo is True and report.score.latency == 1.0
    assert report.cost.total_usd == pytest.approx(24.5)
    assert report.score.cost == pytest.approx(1 - 24.5 / 200)
    assert report.teacher is None and report.data is None, "no teacher evaluation in the ledger: none reported"
    assert "- not evaluated" in render_markdown(report)


def test_a_job_never_placed_or_trained_has_no_report() -> None:
    with pytest.raises(NotPlacedError, match="r-1"):
        report_of(spec(), {"server": SERVER}, served(0.2))


def test_report_checks_the_accuracy_target_and_says_it_in_markdown() -> None:

    def with_target(target: float) -> JobSpec:
        base = spec()
        return base.model_copy(update={"constraints": base.constraints.model_copy(update={"accuracy_target": target})})

    wanted = with_target(0.5)
    results = {"server": SERVER, "training": {"before": 0.0, "after": 0.4}}
    missed = report_of(wanted, results, served(0.4))
    met = report_of(wanted, results, served(0.5))
    assert missed.serving.meets_accuracy_target is False and met.serving.meets_accuracy_target is True
    assert "against the 50.0% target (missed)" in render_markdown(missed)
    assert "target" not in render_markdown(report_of(with_target(0.0), results, served(0.4)))


def test_an_escalated_job_pays_for_every_attempt_and_lists_them() -> None:
    from stratos_shared.jobs import Attempt, Decision

    def attempt(n: int, action: str, student: str, accuracy: float, cost: float, then: str) -> Attempt:
        return Attempt(
            attempt=n, action=action, student=student, base_model=f"tiny:{student}", start_step=0, steps=100,
            accuracy_before=0.0, accuracy=accuracy, cost_usd=cost, seconds=10.0,
            decision=Decision(action=then, reason=f"after {n}"),
        )  # fmt: skip

    attempts = [
        attempt(1, "first", "tiny-1m", 0.3, 0.25, "next-student"),
        attempt(2, "next-student", "tiny-2m", 0.2, 0.5, "stop"),
    ]
    escalation = {
        "target": 0.5, "target_met": False, "best_attempt": 1, "best_accuracy": 0.3, "spent_usd": 0.75,
        "budget_left_usd": 10.0, "last_action": "stop", "reason": "target missed: best 30% < 50%",
    }  # fmt: skip
    results = {"server": SERVER, "training": {"before": 0.0, "after": 0.3, "cost_usd": 0.25, "attempt": 1},
               "escalation": escalation}  # fmt: skip
    escalated = state(results).model_copy(update={"attempts": attempts})
    report = build_report(spec(), escalated, served(0.3), AT)
    assert report.cost.training_usd == 0.75, "the attempt not deployed was paid for too"
    assert [a.attempt for a in report.attempts] == [1, 2] and report.student.attempt == 1
    text = render_markdown(report)
    assert "### Attempts (target 50.0%: missed; deployed attempt 1)" in text
    assert "| 2 | next-student | tiny-2m | 0→100 | 0.0%→20.0% | 0.5000 | 10 | stop |" in text


def test_a_teacher_that_could_not_be_scored_is_reported_unusable_with_why_not_as_zero() -> None:
    broken = {**score("keyless", 0.0), "graded": 0, "errors": 10, "error": "environment variable 'K' is not set\n|x"}
    results = {
        "server": {**SERVER, "revision": 1, "reason": "initial placement"},
        "teacher_eval": {"teacher": "strong", "mode": "alignment", "tau": 0.5, "cost_usd": 1.0,
                         "scores": [broken, score("strong", 0.9)]},
    }  # fmt: skip
    results["training"] = {"before": 0.0, "after": 0.4}
    text = render_markdown(report_of(spec(), results, served(0.4)))
    row = next(line for line in text.splitlines() if line.startswith("| keyless"))
    assert "unusable: environment variable 'K' is not set \\|x" in row and "0.0%" not in row, row
