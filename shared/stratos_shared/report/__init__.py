"""The job report: what was built, how good, how fast, what it cost, when each stage ran, and a score.

Multi-objective score (higher is better, in [0, 1]): the mean of
- accuracy:   the student's held-out accuracy measured through its endpoint;
- latency:    min(1, SLO / (network latency + measured p50 end-to-end latency));
- cost:       max(0, 1 - total cost / budget).
Each term is 1 when the constraint is met with room to spare, so a score says
how well the job met what the user asked, not how it compares to other jobs.

`model` holds the typed sections (the deployer builds them from the ledger's typed results), `markdown` and
`plots` render them; `stratos report` draws the HTML page from the same model (`stratos_cli.reportpage`).
"""

from stratos_shared.report.markdown import render_markdown
from stratos_shared.report.model import (
    CostBreakdown,
    EndpointMeasurements,
    JobReport,
    ScoreBreakdown,
    ServedEndpoint,
    ServerSection,
    ServingSection,
    StageSpan,
    TeacherSection,
    multi_objective_score,
)
from stratos_shared.report.plots import render_plots

__all__ = [
    "CostBreakdown",
    "EndpointMeasurements",
    "JobReport",
    "ScoreBreakdown",
    "ServedEndpoint",
    "ServerSection",
    "ServingSection",
    "StageSpan",
    "TeacherSection",
    "multi_objective_score",
    "render_markdown",
    "render_plots",
]
