"""`stratos explain`: why this server, and why not the others."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from stratos_shared.contracts.selection import SelectionExplanation


def render_explanation(data: dict[str, Any] | SelectionExplanation) -> Group:
    explanation = data if isinstance(data, SelectionExplanation) else SelectionExplanation.model_validate(data)
    lines = [
        Text.assemble(("strategy ", "bold"), explanation.strategy, ("   grid ", "bold"), f"K={explanation.grid_k}"),
        Text.assemble(
            ("servers ", "bold"),
            f"{explanation.total_count} considered, {explanation.feasible_count} feasible, "
            f"{explanation.pareto_size} on the Pareto front",
        ),
    ]
    if explanation.excluded:
        excluded = ", ".join(f"{count} by {name}" for name, count in sorted(explanation.excluded.items()))
        lines.append(Text.assemble(("excluded ", "bold"), excluded))
    if explanation.estimate:
        e = explanation.estimate
        lines.append(
            Text.assemble(
                ("estimate ", "bold"),
                f"{e.memory_gb_needed:.1f} GiB GPU memory, {e.training_hours:.2f} h training, "
                f"${e.estimated_cost_usd:.2f} with {e.serving_hours:.0f} h serving ({e.method}, "
                f"{e.student_params_b:g}B params)",
            )
        )
    if explanation.infeasible_reason:
        lines.append(Text(f"infeasible: {explanation.infeasible_reason}", style="red"))
    table = Table(title="ranked servers")
    for column in ("#", "server", "H", "cost $", "latency ms", "cell (h,c,l)", "front", "why not"):
        table.add_column(column)
    for alt in explanation.alternatives:
        chosen = alt.server_id == explanation.chosen_server_id
        table.add_row(
            str(alt.rank),
            Text(alt.server_id, style="bold green" if chosen else ""),
            f"{alt.objectives.hardware:.1f}",
            f"{alt.objectives.cost_usd:.2f}",
            f"{alt.objectives.latency_ms:.0f}",
            f"{alt.cell.hardware},{alt.cell.cost},{alt.cell.latency}",
            "yes" if alt.on_front else "no",
            "chosen" if chosen else (alt.why_not or ""),
        )
    return Group(*lines, table)
