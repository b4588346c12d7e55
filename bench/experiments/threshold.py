"""Experiment 2, threshold sensitivity: tau in {0.25, 0.5, 0.75} on both tasks; the mode that fires, the student.

The simulated teacher is middling on purpose (62% on math, 38% on custom
rules), so each tau lands on a different side of it on at least one task and
the decision actually changes; a 90% or 12% teacher would pick the same mode
at every tau. Runs are memoised per mode: the mode, not tau, decides the data.

    .venv/bin/python -m bench.experiments.threshold [--quick] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from bench.experiments.pipeline import FULL, QUICK, JobRun, Lab, SimTeacher, quiet, run_job, served_teachers
from bench.experiments.report import Section, common_args, parse_args, save, table
from bench.experiments.stats import pct, pct_ci

TAUS = (0.25, 0.5, 0.75)
TEACHER = SimTeacher("sim-teacher", {"math": 0.62, "custom-rules": 0.38}, sloppy_rate=0.2)
JOBS = (("math", "math-alignment.yaml"), ("custom-rules", "rules-injection.yaml"))
STUDENT = "tiny-1m"


@dataclass
class Row:
    task: str
    tau: float
    run: JobRun


def measure(lab: Lab) -> list[Row]:
    rows = []
    with served_teachers([TEACHER], lab.seed) as served:
        for task, example in JOBS:
            for tau in TAUS:
                run = run_job(lab, served, example, STUDENT, distillation={"tau": tau})
                rows.append(Row(task, tau, run))
    return rows


def render_table(rows: Sequence[Row], n: int) -> str:
    body = [
        (
            r.task,
            f"{r.tau:.2f}",
            pct(r.run.decision.chosen.accuracy),
            f"**{r.run.mode}**",
            r.run.trained.records,
            pct_ci(r.run.trained.after, n),
            r.run.trained.distinct_answers,
            pct(r.run.teacher_held_out),
            f"{r.run.trained.after / r.run.teacher_held_out:.2f}x" if r.run.teacher_held_out else "-",
        )
        for r in rows
    ]
    header = (
        "task",
        "tau",
        "teacher (eval sample)",
        "mode fired",
        "records",
        "student after",
        "distinct answers",
        "teacher (held-out)",
        "student / teacher",
    )
    return table(header, body, "lrrlrrrrr")


def plot(rows: Sequence[Row], images: Path) -> Path:
    fig, axes = plt.subplots(1, len(JOBS), figsize=(8, 3.2), sharey=True)
    for ax, (task, _) in zip(axes, JOBS, strict=True):
        mine = [r for r in rows if r.task == task]
        colours = ["#3572b0" if r.run.mode == "alignment" else "#d9822b" for r in mine]
        ax.bar([f"τ={r.tau:g}" for r in mine], [r.run.trained.after for r in mine], color=colours)
        ax.axhline(mine[0].run.teacher_held_out, color="#999", linestyle="--", label="teacher")
        for i, r in enumerate(mine):
            ax.text(i, r.run.trained.after + 0.02, r.run.mode, ha="center", fontsize=8)
        ax.set_title(f"{task} (teacher {mine[0].run.decision.chosen.accuracy:.0%})")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("student held-out accuracy")
    axes[0].legend(loc="upper right")
    fig.suptitle("Threshold sensitivity (blue: alignment, orange: injection)", fontsize=10)
    return save(fig, images, "threshold")


def interpretation(rows: Sequence[Row]) -> str:
    parts = []
    for task, _ in JOBS:
        mine = [r for r in rows if r.task == task]
        modes = {r.run.mode for r in mine}
        by_mode = {r.run.mode: r.run for r in mine}
        acc = mine[0].run.decision.chosen.accuracy
        if len(modes) == 1:
            parts.append(f"On {task} (teacher {pct(acc)} on the eval sample) every tau picks {modes.pop()}.")
            continue
        switch = ", ".join(f"tau {r.tau:g} → {r.run.mode}" for r in mine)
        align, inject = by_mode["alignment"], by_mode["injection"]
        if inject.trained.after == align.trained.after:
            verdict = "so tau made no difference to the student"
        else:
            better = "injection" if inject.trained.after > align.trained.after else "alignment"
            verdict = f"so {better} was the better call here"
        parts.append(
            f"On {task} (teacher {pct(acc)}) the decision flips: {switch}. Alignment kept "
            f"{align.trained.records} records and the student reached {pct(align.trained.after)}; injection kept "
            f"{inject.trained.records} and reached {pct(inject.trained.after)}, {verdict}."
        )
    if all(r.run.trained.distinct_answers <= 2 for r in rows):
        parts.append(
            "Every student here gives at most two distinct final answers over the held-out items (see experiment "
            "1): they have not learned to read the question, so equal accuracies across modes say the students "
            "are the bottleneck, not that tau does not matter."
        )
    parts.append(
        "What separates the modes in this setting: with the simulator, a reverse trace that passes verification "
        "is the task's reference solution, exactly what a correct forward trace is, so the modes differ only in how "
        "many questions get a trace (alignment keeps a question when one of k = 2 samples is right, injection when "
        "one of 3 reverse attempts shows its steps). The trade-off the paper's tau stands for, clean forward "
        "reasoning against post-hoc rationalisation, needs a real teacher to measure; here tau mostly trades data "
        "volume, and a lower tau only pays off when the teacher is strong enough that alignment loses few questions."
    )
    return " ".join(parts)


def run(lab: Lab, images: Path) -> Section:
    started = time.monotonic()
    rows = measure(lab)
    quick = " --quick" if lab.scale is QUICK else ""
    return Section(
        title="2. Threshold sensitivity",
        command=f".venv/bin/python -m bench.experiments.threshold{quick} --seed {lab.seed}",
        setup=(
            f"One simulated teacher (`{TEACHER.name}`) chosen to sit between the thresholds: "
            f"{pct(TEACHER.accuracy['math'])} on math, {pct(TEACHER.accuracy['custom-rules'])} on custom rules "
            f"(configured; the measured eval-sample accuracy decides). For each task and tau the pipeline picks the "
            f"mode, synthesises the data and trains {STUDENT} for {lab.scale.max_steps} steps; student and teacher "
            f"are measured on {lab.scale.eval_items} held-out items. Runs with the same mode on the same task share "
            "one training (their data are identical)."
        ),
        table=render_table(rows, lab.scale.eval_items),
        interpretation=interpretation(rows),
        plot=plot(rows, images),
        seconds=time.monotonic() - started,
        summary=[
            (
                f"Threshold tau 0.25 / 0.5 / 0.75 ({task}): mode, student",
                "left open",
                " / ".join(f"{r.run.mode} {pct(r.run.trained.after)}" for r in rows if r.task == task),
            )
            for task, _ in JOBS
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(common_args(argparse.ArgumentParser(description=__doc__)), argv)
    quiet()
    lab = Lab(QUICK if args.quick else FULL, args.seed)
    section = run(lab, args.images)
    print(section.table, "\n\n" + section.interpretation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
