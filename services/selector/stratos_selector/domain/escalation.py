"""After each training attempt: try again (and how), or stop and deploy the best. Pure, from the ledger state.

A missed accuracy target is a signal, not only a line in the report. The ladder, each rung priced against
the budget left before it is taken:

1. **continue** training the same student from its last checkpoint, while the last attempt still gained at
   least ``escalation.min_gain`` held-out accuracy (the curve is rising: more steps are the cheapest fix);
2. **next-student**: the next larger candidate that passed the pre-screen, trained on the same verified data
   (a plateau below the target says the student lacks capacity);
3. **stop**: the job deploys its best attempt, and the report says the target was missed and why.

The budget left is the job's budget minus what the teacher, the data and every attempt cost, minus the serving
the budget must cover (``serving_hours`` on the placed server). A rung whose estimate does not fit is skipped
with its price in the reason; the trainer also stops an attempt that reaches its allowance, so the estimate
cannot overspend. The decision's id is the attempt's, so saying it again (a redelivery, a crash between the
fold and the publish) is a duplicate the stream drops, and a re-plan in the middle of an escalation resumes the
attempt the decision named (`workflow.assignments`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stratos_shared.contracts.base import stable_id
from stratos_shared.contracts.events import AttemptDecided, StudentScreen, TrainingPlan
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import Attempt, JobState, best_attempt

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Rung:
    """A priced next step: the plan, its estimated cost, and what it is in words."""

    plan: TrainingPlan
    cost_usd: float
    why: str


def needs_decision(state: JobState) -> bool:
    """A running job whose latest attempt has been trained but not yet decided on."""
    return state.status == "running" and bool(state.attempts) and state.attempts[-1].decision is None


def spent_usd(state: JobState) -> float:
    """Teacher evaluation, data synthesis and every training attempt so far."""
    return state.results.upstream_cost_usd + sum(a.cost_usd for a in state.attempts)


def price_per_hour(state: JobState) -> float:
    return state.results.price_per_hour


def budget_left_usd(state: JobState, spec: JobSpec) -> float:
    """What further training may cost: the budget minus the spend so far and the serving it must still cover."""
    serving = spec.constraints.serving_hours * price_per_hour(state)
    return spec.constraints.budget_usd - spent_usd(state) - serving


def _seconds_per_step(attempt: Attempt) -> float:
    return attempt.seconds / max(1, attempt.trained_steps)


def _continue(state: JobState, spec: JobSpec, last: Attempt) -> Rung | str:
    if last.gain < spec.escalation.min_gain:
        return (
            f"attempt {last.attempt} gained {last.gain:+.0%} (below the {spec.escalation.min_gain:.0%} that counts "
            "as still rising)"
        )
    extra = spec.escalation.continue_steps or max(1, last.trained_steps)
    plan = TrainingPlan(
        attempt=last.attempt + 1,
        action="continue",
        student=last.student,
        max_steps=last.steps + extra,
        resume_attempt=last.attempt,
        lineage=last.lineage,
    )
    cost = _seconds_per_step(last) * extra * price_per_hour(state) / SECONDS_PER_HOUR
    why = f"continue {last.student} for {extra} more steps (attempt {last.attempt} gained {last.gain:+.0%})"
    return Rung(plan, cost, why)


def _screens(state: JobState, spec: JobSpec) -> list[StudentScreen]:
    """The pre-screen's verdicts, sizes filled from the spec where the screen did not count parameters."""
    params_b = {s.name: s.params_b for s in spec.students}
    screens = state.results.students
    return [s if s.params else s.model_copy(update={"params": int(params_b.get(s.name, 0) * 1e9)}) for s in screens]


def _next_student(state: JobState, spec: JobSpec, last: Attempt) -> Rung | str:
    screens = _screens(state, spec)
    tried = {a.student for a in state.attempts}
    size = {s.name: s.params for s in screens}
    largest_tried = max((size.get(name, 0) for name in tried), default=0)
    larger = sorted(
        (s for s in screens if s.passed and s.name not in tried and s.params > largest_tried), key=lambda s: s.params
    )
    if not larger:
        return "no larger student passed the pre-screen"
    student = larger[0]
    first = next(a for a in state.attempts if a.attempt == last.lineage)
    steps = max(1, first.trained_steps)
    ratio = student.params / max(1, size.get(last.student, 0) or student.params)
    cost = _seconds_per_step(last) * ratio * steps * price_per_hour(state) / SECONDS_PER_HOUR
    plan = TrainingPlan(attempt=last.attempt + 1, action="next-student", student=student.name, lineage=last.attempt + 1)
    return Rung(plan, cost, f"train the next larger student, {student.name} ({student.params / 1e6:.1f}M parameters)")


def decide(state: JobState, spec: JobSpec) -> AttemptDecided:
    """The decision after the job's latest attempt (`needs_decision` must hold)."""
    last = state.attempts[-1]
    best = best_attempt(state.attempts)
    target = spec.constraints.accuracy_target
    left = budget_left_usd(state, spec)
    common = {
        "event_id": stable_id(state.job_id, "attempt-decided", last.attempt),
        "job_id": state.job_id,
        "attempt": last.attempt,
        "target": target,
        "target_met": best.accuracy >= target,
        "best_attempt": best.attempt,
        "best_accuracy": best.accuracy,
        "spent_usd": spent_usd(state),
        "budget_left_usd": left,
    }
    deploy = f"deploying attempt {best.attempt} ({best.student}, {best.accuracy:.0%})"
    if best.accuracy >= target:
        reason = f"target met: {best.accuracy:.0%} >= {target:.0%}; {deploy}"
        return AttemptDecided(**common, action="stop", reason=reason)
    missed = f"target missed: best {best.accuracy:.0%} < {target:.0%}"
    if len(state.attempts) >= spec.escalation.max_attempts:
        reason = f"{missed} after {len(state.attempts)} attempt(s), the cap (escalation.max_attempts); {deploy}"
        return AttemptDecided(**common, action="stop", reason=reason)
    skipped: list[str] = []
    for rung in (_continue(state, spec, last), _next_student(state, spec, last)):
        if isinstance(rung, str):
            skipped.append(rung)
        elif rung.cost_usd > left:
            skipped.append(f"{rung.why} would cost about ${rung.cost_usd:.4f}, ${max(0.0, left):.4f} is left")
        else:
            plan = rung.plan.model_copy(update={"max_cost_usd": max(0.0, left)})
            reason = f"{missed}: {rung.why}, about ${rung.cost_usd:.4f} of ${left:.4f} left"
            return AttemptDecided(
                **common, action=plan.action, reason=reason, estimated_cost_usd=rung.cost_usd, next=plan
            )
    reason = f"{missed}; nothing left to try: {'; '.join(skipped)}; {deploy}"
    return AttemptDecided(**common, action="stop", reason=reason)
