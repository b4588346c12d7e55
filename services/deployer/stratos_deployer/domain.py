"""Assembling the job report from the ledger and the deployer's own measurements (no I/O)."""

from __future__ import annotations

from typing import Any

from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import JobState
from stratos_shared.report import CostBreakdown, JobReport, multi_objective_score

SECONDS_PER_HOUR = 3600.0


def build_report(spec: JobSpec, state: JobState, server: dict[str, Any], serving: dict[str, Any]) -> JobReport:
    """The report for a deployed job; `server` is the placement's ServerSpec (as dict), `serving` the measurements."""
    results = state.results
    teacher_eval = results.dumped("teacher_eval")
    chosen_score: dict[str, Any] = next(
        (s for s in teacher_eval.get("scores", []) if s["name"] == teacher_eval.get("teacher")), {}
    )
    placement = results.dumped("placement")
    training = results.dumped("training")
    data = results.dumped("data")
    cost = CostBreakdown(
        teacher_eval_usd=float(teacher_eval.get("cost_usd", 0.0)),
        data_synth_usd=float(data.get("cost_usd", 0.0)),
        # Every attempt was paid for, not only the one deployed.
        training_usd=sum(a.cost_usd for a in state.attempts)
        if state.attempts
        else float(training.get("cost_usd", 0.0)),
        serving_usd=spec.constraints.serving_hours * float(server.get("cost_per_hour", 0.0)),
        budget_usd=spec.constraints.budget_usd,
    )
    total_latency = float(server.get("latency_ms", 0.0)) + float(serving.get("latency_p50_ms", 0.0))
    serving = {
        **serving,
        "network_latency_ms": float(server.get("latency_ms", 0.0)),
        "total_latency_ms": total_latency,
        "slo_ms": spec.constraints.latency_slo_ms,
        "meets_slo": total_latency <= spec.constraints.latency_slo_ms,
        "accuracy_target": spec.constraints.accuracy_target,
        "meets_accuracy_target": float(serving.get("accuracy", 0.0)) >= spec.constraints.accuracy_target,
    }
    score = multi_objective_score(
        float(serving.get("accuracy", 0.0)),
        total_latency,
        spec.constraints.latency_slo_ms,
        cost.total_usd,
        spec.constraints.budget_usd,
    )
    return JobReport(
        job_id=state.job_id,
        name=spec.name,
        task=spec.task.kind,
        server={
            **server,
            "revision": state.server_revision,
            "reason": results.server.reason if results.server else None,
            "strategy": placement.get("strategy"),
            "feasible_count": placement.get("feasible_count"),
            "total_count": placement.get("total_count"),
            "pareto_size": placement.get("pareto_size"),
        },
        teacher={**teacher_eval, "accuracy": chosen_score.get("accuracy")},
        data=data,
        student={**training, "student": state.student or training.get("student")},
        serving=serving,
        cost=cost,
        score=score,
        loss_curve=list(results.loss_curve),
        attempts=[a.model_dump(mode="json") for a in state.attempts],
        escalation=results.dumped("escalation"),
    )
