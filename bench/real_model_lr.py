"""Learning rates for a real pretrained student: SmolLM2-135M-Instruct on two-digit addition.

The per-method defaults were tuned on 1M-parameter models built from scratch (LoRA 2e-3, full SFT 1e-3);
this measures what a pretrained model wants. Each rate trains the same model (LoRA r=16 on all linear layers,
or all weights with ``--method sft``) through ``train_sft`` for the same steps on the same records, then
greedy-evaluates the same held-out items with the math task's grader (strict ``Answer:`` line, then the
flexible extractions), and prints accuracy and final loss.

    python bench/real_model_lr.py [--method lora-sft] [--lrs 2e-4,1e-3,2e-3] [--steps 40] [--batch 8]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from typing import Any

import torch

from stratos_shared.localmodels.bundled import ensure_bundled_model
from stratos_shared.tasks import Example
from stratos_shared.tasks.math import MathTask
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.evaluate import evaluate_path
from stratos_trainer.domain.sft import train_sft

MATH = MathTask([])


def addition(n: int, seed: int) -> list[dict[str, Any]]:
    """Records with a column-wise trace ending in the Answer: line (the trainer tests' task)."""
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(10, 100) for b in range(10, 100)], n)
    out = []
    for i, (a, b) in enumerate(pairs):
        ones = a % 10 + b % 10
        tens = a // 10 + b // 10 + ones // 10
        trace = f"{a % 10} + {b % 10} = {ones}\n{a // 10} + {b // 10} + {ones // 10} = {tens}\nAnswer: {a + b}"
        messages = [{"role": "user", "content": f"What is {a} + {b}?"}, {"role": "assistant", "content": trace}]
        out.append({"id": f"add-{i}", "messages": messages, "answer": str(a + b)})
    return out


def grade(output: str, answer: str) -> Any:
    return MATH.grade(output, Example(id="x", question="q", answer=answer))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="lora-sft", choices=["lora-sft", "sft"])
    parser.add_argument("--lrs", default="2e-4,1e-3,2e-3")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    torch.set_num_threads(2)
    base = ensure_bundled_model("smollm2-135m")
    records = addition(a.steps * a.batch + a.held_out, a.seed)
    train, held = records[: a.steps * a.batch], records[a.steps * a.batch :]
    items = [(r["messages"][:-1], r["answer"]) for r in held]
    before = evaluate_path(base, items, grade, max_new_tokens=48, batch_size=a.held_out)
    print(f"base: {before.accuracy:.0%} held-out ({before.extraction_counts(correct_only=True)})")
    for lr in (float(x) for x in a.lrs.split(",")):
        cfg = TrainingConfig(
            method=a.method,
            max_steps=a.steps,
            batch_size=a.batch,
            learning_rate=lr,
            max_seq_len=128,
            checkpoint_interval=10**6,
            seed=a.seed,
        )
        with tempfile.TemporaryDirectory() as tmp:
            start = time.monotonic()
            result = train_sft(base, sft_dataset(train), cfg, tmp)
            after = evaluate_path(result.model_dir, items, grade, max_new_tokens=48, batch_size=a.held_out)
        last = [loss for _, loss in result.loss_history][-5:]
        print(
            f"{a.method} lr {lr:g}: {after.accuracy:.0%} held-out (extractions {after.extraction_counts()}), "
            f"final loss {sum(last) / len(last):.3f}, {result.wall_seconds / a.steps:.1f} s/step, "
            f"{time.monotonic() - start:.0f} s"
        )


if __name__ == "__main__":
    main()
