"""Throughput of Stratos' SFT path vs a plain TRL ``SFTTrainer`` script, and the effect of packing.

Same local model, same data, same hyper-parameters, one epoch each; runs are
interleaved (ours, plain, ours, plain...) so load from other processes hits
both sides alike, and the best of the repeats is compared. Throughput counts
non-padding input tokens per second of the training loop.

    python bench/trainer.py [--model tiny-1m] [--examples 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, PrinterCallback
from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer
from stratos_shared.localmodels.corpus import chat_item
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.sft import train_sft

BATCH, MAX_LEN, LR = 16, 512, 1e-3


def records(n: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out: list[dict[str, Any]] = []
    for i in range(n):
        msgs = chat_item(rng)
        out.append({"id": str(i), "messages": msgs, "answer": msgs[-1]["content"].rsplit("Answer: ", 1)[-1]})
    return out


def ours(base: Path, recs: list[dict[str, Any]], packing: bool) -> float:
    cfg = TrainingConfig(
        method="sft",
        epochs=1,
        learning_rate=LR,
        batch_size=BATCH,
        packing=packing,
        max_seq_len=MAX_LEN,
        checkpoint_interval=10**9,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as d:
        return train_sft(base, sft_dataset(recs), cfg, d).tokens_per_second


def plain_trl(base: Path, recs: list[dict[str, Any]]) -> float:
    """What a user would write from the TRL docs (CPU-safe flags, no packing, assistant-only loss)."""
    with tempfile.TemporaryDirectory() as d:
        args = SFTConfig(
            output_dir=d,
            num_train_epochs=1,
            per_device_train_batch_size=BATCH,
            learning_rate=LR,
            max_length=MAX_LEN,
            assistant_only_loss=True,
            bf16=False,
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            save_strategy="no",
            logging_steps=1,
            include_num_input_tokens_seen="non_padding",
        )
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(base),
            args=args,
            train_dataset=sft_dataset(recs).select_columns(["messages"]),
            processing_class=load_tokenizer(base),
        )
        trainer.remove_callback(PrinterCallback)
        t0 = time.monotonic()
        trainer.train()
        return trainer.state.num_input_tokens_seen / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-1m")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    base = ensure_tiny_model(a.model)
    recs = records(a.examples)
    runs: dict[str, list[float]] = {"ours (no packing)": [], "plain TRL": [], "ours (packing)": []}
    for _ in range(a.repeats):
        runs["ours (no packing)"].append(ours(base, recs, packing=False))
        runs["plain TRL"].append(plain_trl(base, recs))
        runs["ours (packing)"].append(ours(base, recs, packing=True))
    best = {k: max(v) for k, v in runs.items()}
    print(f"model={a.model} examples={a.examples} batch={BATCH} repeats={a.repeats}")
    for k, v in runs.items():
        print(f"  {k:18s} best {best[k]:9.0f} tok/s   runs {[round(x) for x in v]}")
    ratio = best["ours (no packing)"] / best["plain TRL"]
    print(f"ours/plain TRL (same settings, no packing): {ratio:.3f}x  (goal >= 0.95x)")
    print(f"packing on/off: {best['ours (packing)'] / best['ours (no packing)']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
