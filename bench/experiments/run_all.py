"""Run every experiment and regenerate docs/results.md and docs/images/results-*.png.

The document is an output: prose that does not depend on the numbers lives in
the template below, everything else comes from the runs. One ``Lab`` is
shared, so a training run two experiments need is done once.

    .venv/bin/python -m bench.experiments.run_all [--quick] [--levers] [--big] [--seed 0] [--out docs/results.md]

``--quick`` is a smoke size (about 3 minutes; the numbers mean nothing): it prints the
tables and writes nothing under docs/ unless ``--out`` and ``--images`` say so.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.experiments import mode_switch, prescreen_validity, server_selection, threshold
from bench.experiments.pipeline import FULL, QUICK, Lab, quiet
from bench.experiments.report import ROOT, Section, common_args, parse_args, table

DOC = ROOT / "docs" / "results.md"
KEPT = "<!-- measured outside run_all: kept when the document is regenerated -->"
"""Sections from this marker on are runs of the whole pipeline (a real teacher, minutes each), not the script's."""

INTRO = """# Results: the paper's experiments at small scale

Stratos' paper (arXiv 2510.15992) reports four kinds of results: injection beating a weak
teacher, alignment tracking a strong one, the student pre-screen, and Pareto server
selection against simple baselines. This page reproduces each one on a 2-core CPU with
tiny local students (1-2M parameters; 4M with `--big`) and the bundled teacher simulator,
driving the domain code the services run (teacher-eval's scoring and mode rule,
data-synth's synthesis and verification, the trainer's pre-screen, SFT and held-out
evaluation, the selector's strategies) in process rather than through NATS. Every number
and plot below is written by `{command}`; nothing is typed by hand. Expect the direction
of an effect to carry over to real models, not its size.

- Generated {date} in {minutes:.0f} min on {machine} ({threads} torch thread(s)); {trainings} training runs.
- Seeds: simulator, training and selection catalog seed {seed}; task seeds are the example jobs' (math 7,
  custom rules 11); the held-out split is the pipeline's hash split of each task (20%).
- Accuracies are exact-match on held-out items the student never trained on; brackets are 95% Wilson
  intervals. Custom-rules answers are one digit, so guessing scores about 10%.
"""


def kept_tail(doc: Path) -> str:
    """The existing document from the ``KEPT`` marker on, or nothing."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    return text[text.index(KEPT) :] if KEPT in text else ""


def render(sections: Sequence[Section], args: argparse.Namespace, minutes: float, trainings: int) -> str:
    flags = "".join(f" --{f}" for f in ("quick", "levers", "big") if getattr(args, f))
    intro = INTRO.format(
        command=f".venv/bin/python -m bench.experiments.run_all{flags} --seed {args.seed}",
        date=datetime.now(UTC).strftime("%Y-%m-%d"),
        minutes=minutes,
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        threads=torch.get_num_threads(),
        trainings=trainings,
        seed=args.seed,
    )
    doc_dir = args.out.parent
    glance = table(("result", "paper", "here"), [row for s in sections for row in s.summary], "lll")
    parts = [intro.strip(), "## At a glance", glance, *(s.markdown(doc_dir) for s in sections)]
    tail = kept_tail(args.out)
    return "\n\n".join([*parts, tail.strip()] if tail else parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--levers", action="store_true", help="mode switch: also more steps, bigger student, data")
    parser.add_argument("--big", action="store_true", help="pre-screen: add tiny-4m")
    parser.add_argument("--out", type=Path, default=None, help=f"the document (default {DOC}; --quick: none)")
    args = parse_args(parser, argv)
    if args.out is None and not args.quick:
        args.out = DOC
    quiet()
    started = time.monotonic()
    lab = Lab(QUICK if args.quick else FULL, args.seed)
    size = server_selection.QUICK_SIZE if args.quick else server_selection.FULL_SIZE
    steps: list[tuple[str, Callable[[], Section]]] = [
        ("mode switch", lambda: mode_switch.run(lab, args.images, args.levers)),
        ("threshold", lambda: threshold.run(lab, args.images)),
        ("pre-screen validity", lambda: prescreen_validity.run(lab, args.images, args.big)),
        ("server selection", lambda: server_selection.run(size, args.seed, args.images, args.quick)),
    ]
    sections = []
    for name, step in steps:
        print(f"[{(time.monotonic() - started) / 60:5.1f} min] {name} ...", flush=True)
        sections.append(step())
    minutes = (time.monotonic() - started) / 60
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(sections, args, minutes, lab.trainings), encoding="utf-8")
        print(f"wrote {args.out} ({minutes:.1f} min, {lab.trainings} training runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
