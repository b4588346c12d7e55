"""The escalation ladder, decided from the ledger state alone: continue, next student, stop; priced, capped."""

from __future__ import annotations

from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.escalation import budget_left_usd, decide, needs_decision, spent_usd
from stratos_selector.domain.strategies import Infeasible, select
from stratos_selector.workflow import apply, assignments
from stratos_shared.contracts.events import (
    AttemptDecided,
    DataReady,
    DeploymentAssigned,
    ModelTrained,
    ServerChosen,
    StudentChosen,
    StudentScreen,
    TrainingAssigned,
    TrainingPlan,
)
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.jobs import JobState

ROOT = Path(__file__).resolve().parents[3]
BASE = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
SIZES = {"tiny-1m": 1_000_000, "tiny-2m": 2_000_000, "tiny-4m": 4_000_000}


def job_spec(target: float, budget: float = 200.0, serving_hours: float = 0.0, **escalation: object) -> JobSpec:
    constraints = BASE.constraints.model_copy(
        update={"accuracy_target": target, "budget_usd": budget, "serving_hours": serving_hours}
    )
    return BASE.model_copy(update={"constraints": constraints, "escalation": EscalationSpec(**escalation)})


def placed(spec: JobSpec, revision: int = 1, passed: tuple[str, ...] = ("tiny-1m", "tiny-2m")) -> JobState:
    """A job placed, with its data ready and its pre-screen done (tiny-1m chosen)."""
    servers = generate_catalog(20, seed=3)
    choice = select(servers, BASE)
    assert not isinstance(choice, Infeasible)
    server = choice.server.model_copy(update={"cost_per_hour": 3.6, "id": "s"})  # $0.001 a second: easy sums
    events = [
        ServerChosen(job_id="j", revision=revision, server=server, reason="r", explanation=choice.explanation),
        DataReady(
            job_id="j", mode="alignment", teacher="strong", train_uri="u", eval_uri="e", asked=10, accepted=8,
            acceptance_rate=0.8, teacher_tokens=100, cost_usd=0.5,
        ),
        StudentChosen(
            job_id="j", student="tiny-1m", model="tiny:tiny-1m", threshold=0.0, server_id="s", revision=revision,
            screens=[
                StudentScreen(name=n, model=f"tiny:{n}", params=p, screened_accuracy=0.0, passed=n in passed)
                for n, p in SIZES.items()
            ],
        ),
    ]  # fmt: skip
    state = JobState(job_id="j", status="running")
    for folded in events:
        state = apply(state, folded) or state
    return state


def trained(plan: TrainingPlan, before: float, after: float, seconds: float, start_step: int = 0) -> ModelTrained:
    student = plan.student or "tiny-1m"
    steps = plan.max_steps or 100
    return ModelTrained(
        job_id="j", server_id="s", student=student, base_model=f"tiny:{student}", method="sft",
        model_uri=f"nats-obj://a/j/{plan.attempt}", is_adapter=False, accuracy_before=before, accuracy_after=after,
        training_seconds=seconds, steps=steps, tokens=1, cost_usd=seconds * 0.001, revision=1, attempt=plan.attempt,
        start_step=start_step,
    )  # fmt: skip


def step(state: JobState, event: object) -> JobState:
    return apply(state, event) or state  # type: ignore[arg-type]


def after_first(spec: JobSpec, before: float, after: float, seconds: float = 10.0) -> tuple[JobState, AttemptDecided]:
    state = step(placed(spec), trained(TrainingPlan(), before, after, seconds))
    assert needs_decision(state)
    return state, decide(state, spec)


def test_a_met_target_stops_and_deploys_the_attempt() -> None:
    spec = job_spec(target=0.5)
    state, decision = after_first(spec, 0.1, 0.6)
    assert (decision.action, decision.target_met, decision.next) == ("stop", True, None)
    assert "target met" in decision.reason
    [deploy] = assignments(step(state, decision))
    assert isinstance(deploy, DeploymentAssigned) and deploy.trained.attempt == 1


def test_a_rising_curve_continues_from_the_attempts_last_step() -> None:
    spec = job_spec(target=0.9)
    state, decision = after_first(spec, 0.1, 0.4, seconds=10.0)
    assert decision.action == "continue" and decision.next is not None
    assert decision.next.model_dump(exclude={"max_cost_usd"}) == TrainingPlan(
        attempt=2, action="continue", student="tiny-1m", max_steps=200, resume_attempt=1, lineage=1
    ).model_dump(exclude={"max_cost_usd"})
    assert abs(decision.estimated_cost_usd - 0.01) < 1e-9, "100 more steps at 0.1 s a step, $3.6 an hour"
    [train] = assignments(step(state, decision))
    assert isinstance(train, TrainingAssigned) and train.plan == decision.next


def test_a_negative_min_gain_tolerates_a_dip_and_minus_one_always_continues() -> None:
    _, tolerated = after_first(job_spec(target=0.9, min_gain=-0.05), 0.10, 0.06)
    assert tolerated.action == "continue", "a 4-point dip is within the 5 points of noise allowed"
    _, dropped = after_first(job_spec(target=0.9, min_gain=-0.05), 0.10, 0.04)
    assert dropped.action == "next-student", "a 6-point dip is more than the noise allowed: not rising"
    _, always = after_first(job_spec(target=0.9, min_gain=-1.0), 1.0, 0.0)
    assert always.action == "continue", "-1 continues whatever the attempt scored"


def test_a_plateau_moves_to_the_next_larger_student_that_passed() -> None:
    spec = job_spec(target=0.9)
    _, decision = after_first(spec, 0.1, 0.11)
    assert decision.action == "next-student" and decision.next is not None
    assert (decision.next.student, decision.next.lineage, decision.next.max_steps) == ("tiny-2m", 2, None)
    assert abs(decision.estimated_cost_usd - 0.02) < 1e-9, "twice the parameters, the same 100 steps"


def test_a_plateau_with_no_larger_student_stops_and_says_why() -> None:
    spec = job_spec(target=0.9)
    state = step(placed(spec, passed=("tiny-1m",)), trained(TrainingPlan(), 0.1, 0.11, 10.0))
    decision = decide(state, spec)
    assert decision.action == "stop" and not decision.target_met
    assert "no larger student passed the pre-screen" in decision.reason and "gained +1%" in decision.reason


def test_the_attempt_cap_stops_the_job() -> None:
    spec = job_spec(target=0.9, max_attempts=1)
    _, decision = after_first(spec, 0.1, 0.5)
    assert decision.action == "stop" and "the cap" in decision.reason


def test_a_rung_the_budget_cannot_pay_is_skipped_with_its_price() -> None:
    # $0.5 of data + $0.01 of training spent; serving 1 h at $3.6 reserved: $0.005 left of $4.115
    spec = job_spec(target=0.9, budget=4.115, serving_hours=1.0)
    state, decision = after_first(spec, 0.1, 0.4)
    assert abs(budget_left_usd(state, spec) - 0.005) < 1e-9 and abs(spent_usd(state) - 0.51) < 1e-9
    assert decision.action == "stop"
    assert "would cost about $0.0100, $0.0050 is left" in decision.reason  # continue
    assert "would cost about $0.0200" in decision.reason  # next student


def test_a_worse_later_attempt_is_not_deployed() -> None:
    spec = job_spec(target=0.9)
    state, first = after_first(spec, 0.1, 0.4)
    state = step(state, first)
    assert first.next is not None
    state = step(state, trained(first.next, 0.4, 0.3, 10.0, start_step=100))
    second = decide(state, spec)
    assert second.best_attempt == 1 and second.action == "next-student", second.reason  # it fell: a plateau
    assert (
        state.inputs.trained is not None
        and state.inputs.trained.attempt == 1
        and state.results.training is not None
        and state.results.training.attempt == 1
    )


def test_a_replan_mid_escalation_assigns_the_same_attempt_to_the_new_server() -> None:
    spec = job_spec(target=0.9)
    state, decision = after_first(spec, 0.1, 0.4)
    state = step(state, decision)
    [before] = assignments(state)
    replanned = step(state, _server_chosen(revision=2))
    [after] = assignments(replanned)
    assert isinstance(before, TrainingAssigned) and isinstance(after, TrainingAssigned)
    assert after.plan == before.plan and after.revision == 2 and after.event_id != before.event_id


def _server_chosen(revision: int) -> ServerChosen:
    servers = generate_catalog(20, seed=3)
    choice = select(servers, BASE)
    assert not isinstance(choice, Infeasible)
    return ServerChosen(job_id="j", revision=revision, server=choice.server, reason="re-plan",
                        explanation=choice.explanation)  # fmt: skip


def test_a_decision_and_an_attempt_are_each_recorded_once() -> None:
    spec = job_spec(target=0.9)
    state, decision = after_first(spec, 0.1, 0.4)
    state = step(state, decision)
    again = decide(
        state.model_copy(update={"attempts": [a.model_copy(update={"decision": None}) for a in state.attempts]}), spec
    )
    assert again.event_id == decision.event_id, "the decision's id is the attempt's: a re-publish is a duplicate"
    other = decision.model_copy(update={"event_id": "x" * 32, "action": "stop", "next": None})
    assert step(state, other).attempts[-1].decision == state.attempts[-1].decision, "the first decision stands"
    duplicate = trained(TrainingPlan(), 0.1, 0.9, 1.0).model_copy(update={"event_id": "y" * 32})
    assert step(state, duplicate).attempts == state.attempts, "the first result of an attempt stands"


@settings(max_examples=150, deadline=None)
@given(
    target=st.floats(0.05, 1.0),
    budget=st.floats(0.52, 0.7),
    max_attempts=st.integers(1, 5),
    min_gain=st.floats(-1.0, 0.2),
    gains=st.lists(st.floats(-0.2, 0.4), min_size=5, max_size=5),
    seconds=st.lists(st.floats(1.0, 60.0), min_size=5, max_size=5),
)
def test_an_escalation_ends_within_its_cap_and_its_budget_and_deploys_its_best(
    target: float, budget: float, max_attempts: int, min_gain: float, gains: list[float], seconds: list[float]
) -> None:
    """Oracle: whatever the attempts score and cost, the job stops within the cap, the training it paid for fits
    the budget (the trainer stops an attempt at its allowance), and the deployed attempt is the best one."""
    spec = job_spec(target=target, budget=budget, max_attempts=max_attempts, min_gain=min_gain)
    state = placed(spec)
    plan, accuracy, start = TrainingPlan(), 0.1, 0
    while True:
        after = min(1.0, max(0.0, accuracy + gains[plan.attempt - 1]))
        cost_s = seconds[plan.attempt - 1]
        if plan.max_cost_usd is not None:
            cost_s = min(cost_s, plan.max_cost_usd / 0.001)  # the trainer's allowance
        state = step(state, trained(plan, accuracy, after, cost_s, start_step=start))
        decision = decide(state, spec)
        state = step(state, decision)
        if decision.next is None:
            break
        previous = state.attempts[-1]
        if decision.action == "continue":
            assert previous.gain >= min_gain and decision.next.student == previous.student
            accuracy, start = after, previous.steps
        else:
            assert SIZES[decision.next.student or ""] > SIZES[previous.student]
            accuracy, start = 0.1, 0
        event(decision.action)
        plan = decision.next
    event(f"{len(state.attempts)} attempts, {decision.reason.split(':')[0]}")
    attempts = state.attempts
    assert len(attempts) <= max_attempts
    best = max(a.accuracy for a in attempts)
    assert decision.best_accuracy == best
    assert state.inputs.trained is not None and state.inputs.trained.accuracy_after == best
    assert decision.target_met == (best >= target)
    assert spent_usd(state) <= budget + 1e-9 or len(attempts) == 1, "escalation spent more than the budget"
    [deploy] = assignments(state)
    assert isinstance(deploy, DeploymentAssigned)


def test_a_continued_attempt_reports_its_whole_line_of_training() -> None:
    """Deployed after a 'continue', the student was trained from the base: before is the base's, time is the sum."""
    spec = job_spec(target=0.9)
    state, first = after_first(spec, 0.05, 0.4, seconds=10.0)
    state = step(state, first)
    assert first.next is not None
    state = step(state, trained(first.next, 0.4, 0.6, 5.0, start_step=100))
    assert state.results.training is not None
    assert (state.results.training.before, state.results.training.after) == (0.05, 0.6)
    assert state.results.training.seconds == 15.0 and state.results.training.attempt == 2
