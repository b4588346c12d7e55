"""`stratos status` shows a job's training attempts and why each next one was made."""

from __future__ import annotations

from rich.console import Console

from stratos_cli.views import job_view
from stratos_shared.jobs import Attempt, Decision, JobState

ESCALATION = {
    "target": 0.05, "target_met": False, "best_attempt": 1, "best_accuracy": 0.0, "spent_usd": 0.0,
    "budget_left_usd": 1.0, "last_action": "continue", "reason": "r",
}  # fmt: skip


def test_status_lists_each_attempt_with_the_decision_after_it() -> None:
    first = Attempt(
        attempt=1, action="first", student="tiny-1m", base_model="tiny:tiny-1m", start_step=0, steps=4,
        accuracy_before=0.0, accuracy=0.0, cost_usd=0.0001, seconds=2.0,
        decision=Decision(action="continue", reason="target missed: best 0% < 5%: continue tiny-1m for 116 more steps"),
    )  # fmt: skip
    second = first.model_copy(
        update={"attempt": 2, "action": "continue", "start_step": 4, "steps": 120, "accuracy": 0.1, "decision": None}
    )
    state = JobState(job_id="j", name="esc", attempts=[first, second], results={"escalation": ESCALATION})
    console = Console(width=200, record=True)
    console.print(job_view(state))
    text = console.export_text()
    assert "training attempts (target 5%)" in text
    assert "continue tiny-1m for 116 more steps" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("2 "))
    assert "4->120" in row and "0% -> 10%" in row and "deciding" in row, row
