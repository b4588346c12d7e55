"""The job report: what was built, how good, how fast, what it cost, and a score.

Multi-objective score (higher is better, in [0, 1]): the mean of
- accuracy:   the student's held-out accuracy measured through its endpoint;
- latency:    min(1, SLO / (network latency + measured p50 end-to-end latency));
- cost:       max(0, 1 - total cost / budget).
Each term is 1 when the constraint is met with room to spare, so a score says
how well the job met what the user asked, not how it compares to other jobs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

PLOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class CostBreakdown(BaseModel):
    model_config = ConfigDict(frozen=True)

    teacher_eval_usd: float = 0.0
    data_synth_usd: float = 0.0
    training_usd: float = 0.0
    serving_usd: float = Field(default=0.0, description="Serving hours from the constraints × server price.")
    budget_usd: float

    @property
    def total_usd(self) -> float:
        return self.teacher_eval_usd + self.data_synth_usd + self.training_usd + self.serving_usd


class ScoreBreakdown(BaseModel):
    model_config = ConfigDict(frozen=True)

    accuracy: float
    latency: float
    cost: float

    @property
    def total(self) -> float:
        return (self.accuracy + self.latency + self.cost) / 3


def multi_objective_score(
    accuracy: float, total_latency_ms: float, slo_ms: float, total_cost_usd: float, budget_usd: float
) -> ScoreBreakdown:
    latency = 1.0 if total_latency_ms <= 0 else min(1.0, slo_ms / total_latency_ms)
    cost = max(0.0, 1.0 - total_cost_usd / budget_usd) if budget_usd > 0 else 0.0
    return ScoreBreakdown(accuracy=accuracy, latency=latency, cost=cost)


class JobReport(BaseModel):
    """Everything `stratos report` shows; stored as JSON next to its plots in the artifact store."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    name: str
    task: str
    generated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    server: dict[str, Any]
    teacher: dict[str, Any]
    data: dict[str, Any]
    student: dict[str, Any]
    serving: dict[str, Any]
    cost: CostBreakdown
    score: ScoreBreakdown
    loss_curve: list[tuple[int, float]] = Field(default_factory=list)
    attempts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Every training attempt: how it came about, student, steps, accuracy, cost, the decision after.",
    )
    escalation: dict[str, Any] = Field(default_factory=dict, description="The last decision: target met or why not.")
    plots: dict[str, str] = Field(default_factory=dict, description="Plot name -> artifact URI (PNG).")

    @field_validator("plots")
    @classmethod
    def _plain_plot_names(cls, value: dict[str, str]) -> dict[str, str]:
        """A plot name becomes a file name in the user's report folder: letters, digits, '-' and '_' only."""
        for name in value:
            if not PLOT_NAME.fullmatch(name):
                raise ValueError(f"plot name {name[:80]!r} must be 1-64 letters, digits, '-' or '_'")
        return value


def _pct(value: Any) -> str:
    return f"{float(value):.1%}" if isinstance(value, (int, float)) else "-"


def _cell(text: str) -> str:
    """`text` safe inside one Markdown table cell (one line, no column breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")[:300]


def render_markdown(report: JobReport) -> str:
    """The report as Markdown: one section per stage, then the cost and the plots."""
    st, t = report.student, report.teacher
    lines = [
        f"# Stratos job report: {report.name} (`{report.job_id}`)",
        "",
        f"Task **{report.task}**, generated {report.generated_at:%Y-%m-%d %H:%M} UTC. "
        f"Multi-objective score **{report.score.total:.2f}** (accuracy {report.score.accuracy:.2f}, "
        f"latency {report.score.latency:.2f}, cost {report.score.cost:.2f}).",
        "",
        *_server_section(report.server),
        "",
        *_teacher_section(t),
        "",
        "## Data",
        f"- {report.data.get('accepted')} training records from {report.data.get('asked')} teacher traces "
        f"(acceptance {_pct(report.data.get('rate'))}); rejected: {report.data.get('rejected') or {}}",
        "",
        "## Student",
        f"- **{st.get('student')}** trained with {st.get('method')} in {st.get('seconds', 0):.0f} s "
        f"({st.get('steps')} steps, {st.get('tokens')} tokens"
        + (f", resumed from step {st['resumed_from_step']}" if st.get("resumed_from_step") else "")
        + ")",
        f"- held-out accuracy: before **{_pct(st.get('before'))}**, after **{_pct(st.get('after'))}**; "
        f"teacher on the held-out sample: {_pct(t.get('accuracy'))}",
        *_attempts_section(report),
        "",
        *_serving_section(report.serving, report.job_id),
        "",
        *_cost_section(report.cost),
    ]
    if report.plots:
        lines += ["", "## Plots", *[f"- {name}: `{uri}`" for name, uri in report.plots.items()]]
    return "\n".join(lines) + "\n"


def _server_section(s: dict[str, Any]) -> list[str]:
    return [
        "## Server",
        f"- **{s.get('id')}** ({s.get('gpu_model')} × {s.get('gpu_count')}, ${s.get('cost_per_hour', 0):.2f}/h, "
        f"{s.get('latency_ms', 0):.0f} ms), placement revision {s.get('revision')}: {s.get('reason')}",
        f"- {s.get('feasible_count')} of {s.get('total_count')} servers feasible, {s.get('pareto_size')} on the "
        f"Pareto front (strategy {s.get('strategy')})",
    ]


def _teacher_section(t: dict[str, Any]) -> list[str]:
    """The choice, and every candidate's score; a teacher that could not be scored says why."""
    lines = [
        "## Teacher",
        f"- chosen **{t.get('teacher')}** → mode **{t.get('mode')}** (τ = {t.get('tau')})",
        "",
        "| teacher | accuracy | 95% interval | errors | p50 ms | cost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for score in t.get("scores", []):
        p50 = score.get("latency_p50_ms")
        if score.get("error"):  # not scored: say why rather than show an accuracy of 0
            lines.append(f"| {score['name']} | unusable: {_cell(score['error'])} | - | {score['errors']} | - | - |")
            continue
        lines.append(
            f"| {score['name']} | {_pct(score['accuracy'])} | {_pct(score['ci_low'])}–{_pct(score['ci_high'])} | "
            f"{score['errors']} | {p50:.0f} | ${score['cost_usd']:.4f} |"
            if p50 is not None
            else f"| {score['name']} | {_pct(score['accuracy'])} | - | {score['errors']} | - | "
            f"${score['cost_usd']:.4f} |"
        )
    return lines


def _serving_section(sv: dict[str, Any], job_id: str) -> list[str]:
    return [
        "## Serving",
        f"- {sv.get('backend')} backend at `{sv.get('endpoint')}` on {sv.get('server_id')}",
        *(
            [f"- clients send `Authorization: Bearer <key>`; `stratos key {job_id}` prints the key"]
            if sv.get("auth") == "bearer"
            else []
        ),
        *([f"- engine: {sv['engine_note']}"] if sv.get("engine_note") else []),
        f"- time to first token p50 {sv.get('ttft_p50_ms', 0):.0f} ms; "
        f"end-to-end p50 {sv.get('latency_p50_ms', 0):.0f} ms, "
        f"p95 {sv.get('latency_p95_ms', 0):.0f} ms; with network {sv.get('total_latency_ms', 0):.0f} ms against the "
        f"{sv.get('slo_ms', 0):.0f} ms SLO ({'met' if sv.get('meets_slo') else 'missed'})",
        f"- accuracy through the endpoint: {_pct(sv.get('accuracy'))}"
        + (
            f" against the {_pct(sv['accuracy_target'])} target "
            f"({'met' if sv.get('meets_accuracy_target') else 'missed'})"
            if sv.get("accuracy_target")
            else ""
        ),
    ]


def _cost_section(c: CostBreakdown) -> list[str]:
    return [
        "## Cost",
        "| stage | USD |",
        "| --- | --- |",
        f"| teacher evaluation | {c.teacher_eval_usd:.4f} |",
        f"| data synthesis | {c.data_synth_usd:.4f} |",
        f"| training | {c.training_usd:.4f} |",
        f"| serving (planned hours) | {c.serving_usd:.4f} |",
        f"| **total** | **{c.total_usd:.4f}** of {c.budget_usd:.2f} budget |",
    ]


def _attempts_section(report: JobReport) -> list[str]:
    """The attempts table, when the job escalated (or could have: a target was set)."""
    if len(report.attempts) < 2 and not report.escalation.get("target"):
        return []
    e = report.escalation
    verdict = "met" if e.get("target_met") else "missed"
    lines = [
        "",
        f"### Attempts (target {_pct(e.get('target'))}: {verdict}; deployed attempt {e.get('best_attempt')})",
        f"{e.get('reason', '')}",
        "",
        "| attempt | how | student | steps | accuracy | cost USD | seconds | then |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in report.attempts:
        decision = a.get("decision") or {}
        lines.append(
            f"| {a['attempt']} | {a['action']} | {a['student']} | {a['start_step']}→{a['steps']} | "
            f"{_pct(a['accuracy_before'])}→{_pct(a['accuracy'])} | {a['cost_usd']:.4f} | {a['seconds']:.0f} | "
            f"{decision.get('action', '-')} |"
        )
    return lines


def render_plots(report: JobReport, out_dir: Path) -> dict[str, Path]:
    """accuracy.png (teacher vs student before/after), loss.png, cost.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(5, 3.2))
    labels = ["teacher", "student before", "student after", "via endpoint"]
    values = [
        float(report.teacher.get("accuracy") or 0),
        float(report.student.get("before") or 0),
        float(report.student.get("after") or 0),
        float(report.serving.get("accuracy") or 0),
    ]
    ax.bar(labels, values, color=["#888", "#c77", "#5a5", "#59c"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"{report.name}: accuracy")
    fig.tight_layout()
    paths["accuracy"] = out_dir / "accuracy.png"
    fig.savefig(paths["accuracy"], dpi=100)
    plt.close(fig)

    if report.loss_curve:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        steps, losses = zip(*report.loss_curve, strict=True)
        ax.plot(steps, losses, marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title("loss curve")
        fig.tight_layout()
        paths["loss"] = out_dir / "loss.png"
        fig.savefig(paths["loss"], dpi=100)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    c = report.cost
    parts = {
        "teacher eval": c.teacher_eval_usd,
        "data synth": c.data_synth_usd,
        "training": c.training_usd,
        "serving": c.serving_usd,
    }
    ax.barh(list(parts), list(parts.values()), color="#59c")
    ax.axvline(c.budget_usd, color="red", linestyle="--", label=f"budget ${c.budget_usd:.0f}")
    ax.set_xlabel("USD")
    ax.set_title(f"cost: ${c.total_usd:.2f} total")
    ax.legend()
    fig.tight_layout()
    paths["cost"] = out_dir / "cost.png"
    fig.savefig(paths["cost"], dpi=100)
    plt.close(fig)
    return paths
