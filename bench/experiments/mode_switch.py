"""Experiment 1, mode switch: a student distilled by injection vs its weak teacher, and by alignment vs a strong one.

The paper's GPT-4o scores 12.6% on its Mahjong task and the injected student
38.1% (about 3x). Here one simulated teacher is weak on custom rules (12.6%,
as GPT-4o on Mahjong) and strong on math (90%); the pipeline picks the mode
by tau = 0.5. The same rules job forced into alignment shows what the switch
buys; ``--levers`` adds injection runs with more steps, a bigger student and
more data.

    .venv/bin/python -m bench.experiments.mode_switch [--quick] [--levers] [--seed 0]
"""

from __future__ import annotations

import argparse
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from bench.experiments.pipeline import FULL, QUICK, JobRun, Lab, SimTeacher, quiet, run_job, served_teachers
from bench.experiments.report import Section, common_args, parse_args, save, table
from bench.experiments.stats import pct, pct_ci

TEACHER = SimTeacher("sim-teacher", {"custom-rules": 0.126, "math": 0.9}, sloppy_rate=0.2)
STUDENT = "tiny-1m"
GOAL = 3.0
PAPER = "paper: teacher 12.6%, student 38.1% (3.0x)"


@dataclass
class Row:
    label: str
    task: str
    run: JobRun

    @property
    def ratio(self) -> float:
        return self.run.trained.after / self.run.teacher_held_out if self.run.teacher_held_out else float("inf")


def levers(lab: Lab) -> list[tuple[str, str, dict[str, object]]]:
    """Injection-run variants within the time budget: (label, student, job section overrides)."""
    steps = lab.scale.max_steps
    return [
        (f"{2 * steps} steps", STUDENT, {"training": {"max_steps": 2 * steps}}),
        ("tiny-2m student", "tiny-2m", {}),
        ("learning rate 3e-4 (10x lower)", STUDENT, {"training": {"learning_rate": 3e-4}}),
        (f"{4 * lab.scale.task_size} examples", STUDENT, {"task": {"size": 4 * lab.scale.task_size}}),
    ]


def measure(lab: Lab, with_levers: bool) -> list[Row]:
    rows: list[Row] = []
    with served_teachers([TEACHER], lab.seed) as served:
        chosen = run_job(lab, served, "rules-injection.yaml", STUDENT)
        rows.append(Row("pipeline's choice", "custom-rules", chosen))
        forced = run_job(lab, served, "rules-injection.yaml", STUDENT, mode="alignment")
        rows.append(Row("forced alignment (no switch)", "custom-rules", forced))
        rows.append(Row("pipeline's choice", "math", run_job(lab, served, "math-alignment.yaml", STUDENT)))
        if with_levers:
            for label, student, updates in levers(lab):
                run = run_job(lab, served, "rules-injection.yaml", student, mode="injection", **updates)
                rows.append(Row(f"lever: {label}", "custom-rules", run))
    return rows


def render_table(rows: Sequence[Row], n: int) -> str:
    body = [
        (
            r.task,
            r.label,
            r.run.trained.student,
            r.run.mode,
            pct(r.run.decision.chosen.accuracy),
            pct_ci(r.run.teacher_held_out, n),
            r.run.trained.records,
            r.run.trained.steps,
            pct(r.run.trained.before),
            pct_ci(r.run.trained.after, n),
            r.run.trained.distinct_answers,
            f"{r.ratio:.2f}x",
        )
        for r in rows
    ]
    header = (
        "task",
        "run",
        "student",
        "mode",
        "teacher (eval sample)",
        "teacher (held-out)",
        "records",
        "steps",
        "student before",
        "student after",
        "distinct answers",
        "student / teacher",
    )
    return table(header, body, "lllllrrrrrrr")


def plot(rows: Sequence[Row], images: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 1.5, 3.8))
    labels = [f"{r.task}\n" + "\n".join(textwrap.wrap(r.label.removeprefix("lever: "), 16)) for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r.run.teacher_held_out for r in rows], 0.4, label="teacher", color="#999")
    ax.bar([i + 0.2 for i in x], [r.run.trained.after for r in rows], 0.4, label="student", color="#3572b0")
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Mode switch: student vs teacher")
    return save(fig, images, "mode-switch")


def interpretation(rows: Sequence[Row]) -> str:
    inj, forced, align = rows[0], rows[1], rows[2]
    verdict = "meets" if inj.ratio >= GOAL else "misses"
    best = max(rows, key=lambda r: r.ratio if r.task == "custom-rules" and r.run.mode == "injection" else -1)
    text = (
        f"With a teacher that solves {pct(inj.run.teacher_held_out)} of the held-out custom-rules items, the pipeline "
        f"switches to injection and the {inj.run.trained.student} student reaches {pct(inj.run.trained.after)}: "
        f"{inj.ratio:.1f}x the teacher, which {verdict} the 3x goal ({PAPER}). "
        f"Forcing alignment on the same job keeps only the questions the teacher happened to get right "
        f"({forced.run.trained.records} records instead of {inj.run.trained.records}) and the student reaches "
        f"{pct(forced.run.trained.after)}. On math the teacher is strong ({pct(align.run.teacher_held_out)}), "
        f"alignment fires and the student reaches {pct(align.run.trained.after)}, {align.ratio:.0%} of the teacher. "
    )
    collapsed = [r for r in rows if r.run.trained.distinct_answers <= 2]
    if collapsed:
        text += (
            f"The 'distinct answers' column shows what limits the students: {len(collapsed)} of the {len(rows)} "
            "trained students give at most two different final answers over the held-out items: they learned the "
            "trace format but not to read the question, and their accuracy is the share of items whose answer "
            "happens to be the one they (nearly) always give. "
        )
    if best is not inj:
        text += (
            f"The best injection variant ({best.label.removeprefix('lever: ')}) reaches "
            f"{pct(best.run.trained.after)}, {best.ratio:.1f}x the teacher. "
        )
    text += (
        "Where the small scale differs: the simulated teacher's reverse-reasoning traces are the task's reference "
        "solutions whenever they are not sloppy, so injection data here is as clean as data gets, while a real "
        "teacher rationalising a given answer can write wrong steps that still end in the right answer; and the "
        "students are 1-2M-parameter models trained for minutes on a CPU, not the paper's billion-parameter ones, "
        "so absolute accuracies stay low and the ratio to a near-chance teacher moves a lot with a few items."
    )
    return text


def run(lab: Lab, images: Path, with_levers: bool) -> Section:
    started = time.monotonic()
    rows = measure(lab, with_levers)
    quick = " --quick" if lab.scale is QUICK else ""
    lever_flag = " --levers" if with_levers else ""
    return Section(
        title="1. Mode switch",
        command=f".venv/bin/python -m bench.experiments.mode_switch{quick}{lever_flag} --seed {lab.seed}",
        setup=(
            f"One simulated teacher (`{TEACHER.name}`): {pct(TEACHER.accuracy['custom-rules'])} right on custom "
            f"rules, as GPT-4o on the paper's Mahjong task, and {pct(TEACHER.accuracy['math'])} on math; "
            f"{pct(TEACHER.sloppy_rate)} of its reverse traces skip the steps (verification rejects them). "
            f"Jobs: `examples/rules-injection.yaml` and `examples/math-alignment.yaml` ({lab.scale.task_size} "
            f"examples, 20% held out, tau 0.5; custom rules with up to two operators a question), student {STUDENT}, "
            f"full SFT for {lab.scale.max_steps} steps of the jobs' batch size (16 records). "
            f"Teacher and students are measured on the same {lab.scale.eval_items} held-out items "
            "(95% Wilson intervals in brackets); 'eval sample' is teacher-eval's stratified sample that decides "
            "the mode."
        ),
        table=render_table(rows, lab.scale.eval_items),
        interpretation=interpretation(rows),
        plot=plot(rows, images),
        seconds=time.monotonic() - started,
        summary=[
            (
                "Injection: student vs weak teacher (custom rules)",
                "38.1% vs 12.6% (3.0x)",
                f"{pct(rows[0].run.trained.after)} vs {pct(rows[0].run.teacher_held_out)} ({rows[0].ratio:.2f}x)",
            ),
            (
                "Alignment: student as a share of a strong teacher (math)",
                "-",
                f"{pct(rows[2].run.trained.after)} / {pct(rows[2].run.teacher_held_out)} = {rows[2].ratio:.0%}",
            ),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--levers", action="store_true", help="also run injection with more steps, data, model")
    args = parse_args(parser, argv)
    quiet()
    lab = Lab(QUICK if args.quick else FULL, args.seed)
    section = run(lab, args.images, args.levers)
    print(section.table, "\n\n" + section.interpretation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
