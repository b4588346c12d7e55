"""How well can a tiny student learn custom rules from *perfect* traces? The ceiling for injection mode.

Knowledge injection can at best hand the student the task's reference reasoning. This trains the student
directly on `CustomRulesTask.reference_trace` for every training question (full SFT, no teacher, no
filtering) and scores greedy held-out accuracy with the pipeline's generation budget. If this stays far
below 3x the weak teacher (about 38%), no data-synthesis change can reach the paper's ratio at this size.

    .venv/bin/python bench/rules_ceiling.py --size 4200 --steps 1000
    .venv/bin/python bench/rules_ceiling.py --max-ops 2 --size 2200 --steps 600 --batch 16 [--packing --batch 4]

Measured with tiny-1m on 2 cores (3 rules, 200 held-out questions). Up to 3 operations: with the old one-shot
trace (``(2*3 + 1*5 + 3) mod 10 = 14``) and the rules in the prompt, 14.0% after 300 steps on 1,000 traces;
the rules out of the prompt, 14.0% in 101 s instead of ~350 s; the single-digit-step trace of today, 12.0%
at 300 steps, and 86.0% after 1,000 steps on 4,000 traces (418 s; every 1- and 2-operation question right,
66 of 94 three-operation ones). Learning is a late jump, not a slope: 300 steps is simply too few.

Up to 2 operations (the demo's job), 2,000 traces: 8.5% at 300 steps of 32 (13.5% at lr 1e-2), 29.5% at
400, 66.0% at 600 (186 s); 600 steps of 16: 54.5% in 91 s. Steps count more than records per step. Packed
(``--packing --batch 4``: 4 rows of 512 tokens, ~12 records a step), the same 600 steps reach 15.5% in 164 s:
why packing is off by default (``TrainingConfig.packing``).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from pathlib import Path

from stratos_shared.localmodels import ensure_tiny_model
from stratos_shared.tasks.base import Example
from stratos_shared.tasks.custom_rules import CustomRulesTask
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import eval_items, sft_dataset
from stratos_trainer.domain.evaluate import evaluate_path
from stratos_trainer.domain.sft import train_sft
from stratos_trainer.settings import TrainerSettings

HELD_OUT = 200


def record(task: CustomRulesTask, example: Example, with_rules: bool = False) -> dict[str, object]:
    """The trainer's JSONL record with the task's own reasoning as the answer."""
    prompt = task.prompt(example) if with_rules else task.student_prompt(example)
    messages = [*prompt, {"role": "assistant", "content": task.reference_trace(example)}]
    return {"id": example.id, "messages": messages, "answer": example.answer}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="tiny-1m", help="a tiny model name (tiny-1m, tiny-2m, ...)")
    parser.add_argument("--rules", type=int, default=3, help="invented operators (the demo's job has 3)")
    parser.add_argument("--max-ops", type=int, default=3, help="operations per question, at most")
    parser.add_argument("--size", type=int, default=1200, help="questions generated; 200 are held out")
    parser.add_argument("--steps", type=int, default=300, help="SFT steps of 32 padded examples")
    parser.add_argument("--batch", type=int, default=32, help="padded examples a step")
    parser.add_argument("--packing", action="store_true", help="pack examples into 512-token rows (--batch rows)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=TrainerSettings.model_fields["max_new_tokens"].default,
        help="generation budget when scoring (the trainer's default)",
    )
    parser.add_argument(
        "--with-rules", action="store_true", help="prompt the student with the rules, as teachers are (3.5x slower)"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/stratos-rules-ceiling"))
    args = parser.parse_args()
    task = CustomRulesTask.generate(seed=11, size=args.size, n_rules=args.rules, min_ops=1, max_ops=args.max_ops)
    examples = list(task.examples())
    random.Random(0).shuffle(examples)
    test, train = examples[:HELD_OUT], examples[HELD_OUT:]
    started = time.monotonic()
    cfg = TrainingConfig(
        method="sft",
        max_steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch,
        packing=args.packing,
        checkpoint_interval=10_000,
    )
    prompted = "-with-rules" if args.with_rules else ""
    packed = "p" if args.packing else ""
    name = (
        f"{args.student}-r{args.rules}-o{args.max_ops}-n{args.size}-s{args.steps}-b{args.batch}{packed}-lr{args.lr:g}"
    )
    name += prompted
    run_dir = args.out / name
    records = [record(task, e, args.with_rules) for e in train]
    result = train_sft(ensure_tiny_model(args.student), sft_dataset(records), cfg, run_dir)
    scored = evaluate_path(
        result.model_dir,
        eval_items([record(task, e, args.with_rules) for e in test]),
        lambda output, answer: float(task.extract_answer(output) == answer),
        max_new_tokens=args.max_new_tokens,
    )
    right = Counter(e.stratum for e, score in zip(test, scored.scores, strict=True) if score)
    total = Counter(e.stratum for e in test)
    by_stratum = ", ".join(f"{s} {right[s]}/{total[s]}" for s in sorted(total))
    print(
        f"{args.student}, {args.rules} rules, <= {args.max_ops} ops, {len(train)} perfect traces, {args.steps} steps: "
        f"held-out {scored.accuracy:.1%} ({by_stratum}); {time.monotonic() - started:.0f} s"
    )
    print("first output:", scored.outputs[0].replace("\n", " | "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
