"""How much of the mode-switch result is the seed? The custom-rules job, injected and forced into alignment, per seed.

``mode_switch`` reports one seed. Tiny students learn custom rules in a late jump (``bench/rules_ceiling.py``),
so a run that ends just before the jump and one just after it can be far apart. Each seed reseeds the teacher
simulator and the training (data order, sampling); the task and its held-out split stay the example job's.

    .venv/bin/python -m bench.experiments.seed_sweep --seeds 0 1 2 [--steps 600]

Measured on 2 cores at the example job's 600 steps (about 3 min a seed), injection vs forced alignment:
seed 0 44.0% vs 42.5%, seed 1 18.5% vs 23.0%, seed 2 16.0% vs 48.0%, against teachers at 11.5%, 10.0%, 11.5%.
At 1,000 steps (``--steps 1000``, about 5 min a seed): 31.0% vs 80.0%, 71.5% vs 77.0%, 94.5% vs 78.5%.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from bench.experiments.mode_switch import STUDENT, TEACHER
from bench.experiments.pipeline import FULL, Lab, quiet, run_job, served_teachers
from bench.experiments.report import table
from bench.experiments.stats import pct

JOB = "rules-injection.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument("--steps", type=int, default=FULL.max_steps, help="training steps per run")
    args = parser.parse_args(argv)
    quiet()
    rows: list[tuple[object, ...]] = []
    ratios: dict[str, list[float]] = {"injection": [], "alignment": []}
    for seed in args.seeds:
        started = time.monotonic()
        lab = Lab(FULL, seed)
        training = {"max_steps": args.steps}
        with served_teachers([TEACHER], seed) as served:
            injected = run_job(lab, served, JOB, STUDENT, training=training)
            aligned = run_job(lab, served, JOB, STUDENT, mode="alignment", training=training)
        teacher = injected.teacher_held_out
        for mode, run in (("injection", injected), ("alignment", aligned)):
            ratios[mode].append(run.trained.after / teacher if teacher else float("inf"))
        rows.append(
            (
                seed,
                pct(teacher),
                f"{pct(injected.trained.after)} ({injected.trained.records})",
                f"{pct(aligned.trained.after)} ({aligned.trained.records})",
                f"{time.monotonic() - started:.0f} s",
            )
        )
        print(f"seed {seed} done", flush=True)
    header = ("seed", "teacher", "injection (records)", "forced alignment (records)", "wall")
    print(f"{STUDENT}, {args.steps} steps, {FULL.eval_items} held-out items")
    print(table(header, rows))
    for mode, values in ratios.items():
        print(f"{mode}: student / teacher, mean {statistics.mean(values):.2f}x, min {min(values):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
