"""The report's stage timeline, from the ledger's event times: each stage from the event that gave it work to the
event it published, a re-plan as an instant, the deployment up to the report."""

from __future__ import annotations

from stratos_deployer.domain import timeline
from stratos_shared.report import JobReport, render_markdown
from tests.reports import at, folded_job, folded_report


def test_every_stage_of_the_job_is_on_the_clock_in_order() -> None:
    report = folded_report(finished_after_s=240)
    spans = [(s.stage, (s.start - at(0)).total_seconds(), s.seconds) for s in report.timeline]
    assert spans == [
        ("admission", 0, 2),
        ("teacher-eval", 2, 12),
        ("data-synth", 14, 61),
        ("pre-screen", 75, 5),
        ("training", 80, 60),  # attempt 1: from the pre-screen's choice to its result
        ("training", 141, 74),  # attempt 2: from the decision that asked for it, through the re-plan
        ("re-plan", 150, 0),
        ("deployment", 216, 24),  # from the stop decision to the report
    ]
    labels = [s.label for s in report.timeline]
    assert labels[4:6] == ["attempt 1: first tiny-1m", "attempt 2: continue tiny-1m"]
    assert labels[6].startswith("re-plan: server ") and "(revision 2): server down" in labels[6]
    assert labels[7] == f"deployment on {report.server.id}"


def test_a_redeployment_after_a_re_plan_starts_at_the_re_plan() -> None:
    _, state = folded_job()
    moved = state.model_copy(update={"history": [*state.history, state.history[1].model_copy(update={"at": at(300)})]})
    last = timeline(moved, at(330))[-1]
    assert (last.stage, last.start, last.end) == ("deployment", at(300), at(330))


def test_a_stage_whose_events_the_ledger_lost_is_left_out_not_guessed() -> None:
    _, state = folded_job()
    without_screen = state.model_copy(update={"history": [h for h in state.history if h.event_type != "StudentChosen"]})
    stages = [s.stage for s in timeline(without_screen, at(240))]
    assert "pre-screen" not in stages and stages.count("training") == 2, "attempt 1 then starts when the data is ready"
    older = state.model_copy(update={"attempts": [a.model_copy(update={"trained_at": None}) for a in state.attempts]})
    assert [s.stage for s in timeline(older, at(240))].count("training") == 0


def test_the_timeline_reads_back_from_json_and_shows_in_markdown() -> None:
    report = folded_report()
    assert JobReport.model_validate_json(report.model_dump_json()) == report
    text = render_markdown(report)
    assert "| stage | starts at | takes |" in text
    assert "| attempt 2: continue tiny-1m | +2 min 21 s | 1 min 14 s |" in text
