"""A job's life as the ledger sees it, for the report's tests: real events, each at a known time, folded by the real
ledger (`stratos_selector.workflow.apply`) with the selector's real escalation decisions; and its report as the deployer
wrote it before the report was typed.

The life: submitted, placed, teacher and data, pre-screen, attempt 1 (continued), a re-plan, attempt 2 (stop),
deployed; so every kind of stage span appears once, the re-plan inside attempt 2.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from stratos_deployer.domain import build_report
from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.escalation import decide
from stratos_selector.domain.strategies import Infeasible, select
from stratos_selector.workflow import apply
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    DataReady,
    JobSubmitted,
    ModelTrained,
    ServerChosen,
    StudentChosen,
    StudentScreen,
    TeacherChosen,
    TeacherScore,
    TrainingProgress,
)
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.jobs import JobState
from stratos_shared.report import JobReport, ServedEndpoint

ROOT = Path(__file__).resolve().parents[1]
LEGACY_REPORT = ROOT / "tests" / "data" / "report" / "legacy-report.json"
"""The folded job's report.json as the deployer wrote it before the sections were typed (tests/data/report)."""
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job_spec() -> JobSpec:
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    constraints = spec.constraints.model_copy(update={"accuracy_target": 0.9, "serving_hours": 1.0})
    return spec.model_copy(update={"constraints": constraints, "escalation": EscalationSpec(max_attempts=2)})


def _placements(spec: JobSpec) -> tuple[ServerChosen, ServerChosen]:
    servers = generate_catalog(20, seed=3)
    first = select(servers, spec)
    second = select(servers, spec, exclude={first.server.id} if not isinstance(first, Infeasible) else set())
    assert not isinstance(first, Infeasible) and not isinstance(second, Infeasible)
    return (
        ServerChosen(job_id="j", revision=1, server=first.server, reason="best", explanation=first.explanation),
        ServerChosen(
            job_id="j", revision=2, server=second.server, reason="server down", explanation=second.explanation
        ),
    )


def _trained(server: str, revision: int, attempt: int, before: float, after: float, start: int) -> ModelTrained:
    return ModelTrained(
        job_id="j", server_id=server, student="tiny-1m", base_model="tiny:tiny-1m", method="lora-sft",
        model_uri=f"nats-obj://a/j/{attempt}", is_adapter=True, accuracy_before=before, accuracy_after=after,
        training_seconds=30.0, steps=start + 100, tokens=1000, cost_usd=0.01, revision=revision, attempt=attempt,
        start_step=start,
    )  # fmt: skip


def _progress(server: str, step: int, loss: float) -> TrainingProgress:
    return TrainingProgress(job_id="j", server_id=server, revision=1, step=step, total_steps=100, loss=loss)


def _upstream(spec: JobSpec, server: str) -> list[Event]:
    score = TeacherScore(name="strong", accuracy=0.9, ci_low=0.8, ci_high=0.95, graded=20, errors=0, cost_usd=0.2)
    screens = [StudentScreen(name="tiny-1m", model="tiny:tiny-1m", params=10**6, screened_accuracy=0.1, passed=True)]
    return [
        TeacherChosen(job_id="j", teacher="strong", mode="alignment", tau=0.5, scores=[score], sample_ids=["1"],
                      cost_usd=0.2),
        DataReady(job_id="j", mode="alignment", teacher="strong", train_uri="u", eval_uri="e", asked=100,
                  accepted=80, acceptance_rate=0.8, teacher_tokens=1000, cost_usd=0.5),
        StudentChosen(job_id="j", student="tiny-1m", model="tiny:tiny-1m", threshold=0.0, server_id=server,
                      revision=1, screens=screens),
    ]  # fmt: skip


def folded_job() -> tuple[JobSpec, JobState]:
    """The life above, folded; returns the spec and the ledger state the deployer reads when it reports."""
    spec = job_spec()
    one, two = _placements(spec)
    first, second = one.server.id, two.server.id
    timed: list[tuple[float, Event]] = [
        (0, JobSubmitted(job_id="j", spec=spec)),
        (2, one),
        *zip((14, 75, 80), _upstream(spec, first), strict=True),
        *((80 + step / 2, _progress(first, step, loss)) for step, loss in ((20, 2.1), (60, 1.4), (100, 1.1))),
        (140, _trained(first, 1, 1, 0.1, 0.4, 0)),
    ]
    state = _fold(None, timed)
    state = _fold(state, [(141, decide(state, spec)), (150, two), (215, _trained(second, 2, 2, 0.4, 0.5, 100))])
    state = _fold(state, [(216, decide(state, spec))])
    return spec, state


def _fold(state: JobState | None, timed: list[tuple[float, Event]]) -> JobState:
    for seconds, event in timed:
        state = apply(state, event.model_copy(update={"occurred_at": at(seconds)})) or state
    assert state is not None
    return state


def folded_report(finished_after_s: float = 240) -> JobReport:
    """The report the deployer builds for the folded job, `finished_after_s` seconds after its submission."""
    spec, state = folded_job()
    served = ServedEndpoint(
        ttft_p50_ms=40.0, ttft_p95_ms=60.0, latency_p50_ms=90.0, latency_p95_ms=120.0, accuracy=0.5,
        endpoint="http://127.0.0.3:8001/v1", backend="cpu", server_id=state.server_id or "", auth="bearer",
    )  # fmt: skip
    return build_report(spec, state, served, at(finished_after_s))


def legacy_report() -> JobReport:
    """The stored legacy report, read the way `stratos report` reads it."""
    return JobReport.model_validate_json(LEGACY_REPORT.read_text(encoding="utf-8"))
