"""The report's figures as PNG (matplotlib): stored beside report.json, embedded in `stratos report`'s HTML page."""

from __future__ import annotations

from pathlib import Path

from stratos_shared.report.model import JobReport


def render_plots(report: JobReport, out_dir: Path) -> dict[str, Path]:
    """accuracy.png (teacher vs student before/after), loss.png, cost.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(5, 3.2))
    labels = ["teacher", "student before", "student after", "via endpoint"]
    teacher = report.teacher.accuracy if report.teacher else None
    values = [teacher or 0.0, report.student.before, report.student.after, report.serving.accuracy]
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
