"""`stratos servers`: the inventory, and for a job the feasible set and its Pareto front (table and PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord

if TYPE_CHECKING:
    from stratos_selector.domain.view import ServerPoint


def worker_summary(liveness: ServerLiveness | None, now: float, timeout_s: float) -> str:
    """'2 (trainer, deployer; jobs: a, b)' for the live workers of a server, 'no workers' when none speaks."""
    live = liveness.live_workers(now, timeout_s) if liveness else {}
    if not live:
        return "no workers"
    services = ", ".join(sorted(w.service for w in live.values()))
    jobs = sorted({j for w in live.values() for j in w.jobs})
    return f"{len(live)} ({services}" + (f"; jobs: {', '.join(jobs)}" if jobs else "") + ")"


def inventory_table(
    records: list[ServerRecord],
    liveness: dict[str, ServerLiveness] | None = None,
    now: float = 0.0,
    timeout_s: float = 8.0,
) -> Table:
    """The catalog with each server's status and its live workers: only servers with workers take jobs."""
    table = Table(title=f"servers ({len(records)})")
    columns = ("id", "status", "workers", "GPU", "memory GiB", "$/h", "region", "latency ms", "capacity")
    for column in columns:
        table.add_column(column)
    by_server = {record.server_id: record for record in (liveness or {}).values()}
    for record in sorted(records, key=lambda r: r.spec.id):
        s = record.spec
        label = record.status if record.status == "up" else f"down ({record.reason})"
        placeable = record.status == "up" and record.monitored
        status = Text(label, style="green" if placeable else ("yellow" if record.status == "up" else "red"))
        table.add_row(
            s.id,
            status,
            worker_summary(by_server.get(s.id), now, timeout_s),
            f"{s.gpu_model} x{s.gpu_count}",
            f"{s.gpu_memory_gb:g}",
            f"{s.cost_per_hour:.2f}",
            s.region,
            f"{s.latency_ms:.0f}",
            str(s.capacity),
        )
    return table


def pareto_points(records: list[ServerRecord], job: JobSpec) -> list[ServerPoint]:
    """Each server that is up with its objectives for `job`, by the selector's own rules; the front first."""
    from stratos_selector.domain.view import objective_space

    points = objective_space([r.spec for r in records if r.status == "up"], job)
    return sorted(points, key=lambda p: (not p.on_front, not p.feasible, p.cost_usd))


def pareto_table(points: list[ServerPoint], job: JobSpec) -> Table:
    table = Table(title=f"objective space for job '{job.name}': H (higher better), est. job cost, latency")
    for column in ("server", "H", "job cost $", "latency ms", "feasible", "Pareto front"):
        table.add_column(column)
    for p in points:
        table.add_row(
            p.server.id,
            f"{p.hardware:.1f}",
            f"{p.cost_usd:.2f}",
            f"{p.latency_ms:.0f}",
            "yes" if p.feasible else "no",
            Text("yes", style="bold green") if p.on_front else "",
        )
    return table


def plot_front(points: list[ServerPoint], job: JobSpec, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    groups: list[tuple[str, list[ServerPoint], dict[str, Any]]] = [
        ("infeasible", [p for p in points if not p.feasible], {"c": "#ccc", "marker": "x"}),
        ("feasible", [p for p in points if p.feasible and not p.on_front], {"c": "#59c", "marker": "o"}),
        ("Pareto front", [p for p in points if p.on_front], {"c": "#d33", "marker": "*", "s": 120}),
    ]
    for label, chosen, style in groups:
        if chosen:
            ax.scatter([p.cost_usd for p in chosen], [p.latency_ms for p in chosen], label=label, **style)
    for p in points:
        if p.on_front:
            ax.annotate(p.server.id, (p.cost_usd, p.latency_ms), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("estimated job cost (USD)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"servers for '{job.name}' (hardware H is the third objective)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
