"""Throughput of Stratos' SFT path vs a plain TRL ``SFTTrainer`` script, and the effect of packing.

Four runs on the same local model, data and hyper-parameters, a fixed number
of optimizer steps each:

- ``TRL defaults``: what a user would write from the TRL docs (padded batches, CPU-safe
  precision flags); TRL's ``SFTConfig`` turns gradient checkpointing on by default;
- ``plain TRL``: the same script with gradient checkpointing off, as we train on CPU: the
  same work as ``ours, padded``;
- ``ours, padded``: ``train_sft`` as the trainer service calls it, packing off, so
  ``ours / plain TRL`` is the overhead of our wrapper (callbacks, per-step logging, the final
  resumable checkpoint); goal >= 0.95x;
- ``ours, packed``: packing on (best-fit-decreasing, padding-free; a job opts in with
  ``training.packing``), with as many 512-token bins per step as hold the padded runs' tokens,
  so all three train on about the same number of tokens per step. On CPU, attention over a
  packed row costs the square of its length, which is why padding is the default.

Runs are interleaved (defaults, plain, padded, packed, defaults, ...) so load from other
processes hits all alike, and the median of the repeats is reported. Throughput
is non-padding input tokens per second of the training loop, timed by one
callback for all variants (``on_train_begin`` to ``on_train_end``), both per
wall-clock second and per CPU second of this process: on a shared machine
other processes stretch wall time, so the CPU-second ratio is the fair one.
Model FLOPs utilisation is printed when ``--peak-tflops`` (the device's dense
peak at the run's precision) is given, with 6 x parameters FLOPs per token.

    python bench/trainer.py [--model tiny-4m] [--steps 20] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PrinterCallback, TrainerCallback
from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer
from stratos_shared.localmodels.corpus import chat_item
from stratos_trainer.domain.config import TrainingConfig, resolve_device
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.sft import train_sft

MAX_LEN, LR = 512, 1e-3


@dataclass(frozen=True)
class Run:
    """One training run's measurement."""

    tokens: int
    """Non-padding input tokens trained on."""
    seconds: float
    """Wall time of the training loop."""
    cpu_seconds: float
    """CPU time of this process during the training loop."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_seconds


class Clock(TrainerCallback):
    """Times the training loop (wall and process CPU) the same way for every variant."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, *args: Any, **kwargs: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def run(self, tokens: int) -> Run:
        return Run(tokens, self.wall, self.cpu)


def records(n: int) -> list[dict[str, Any]]:
    """``n`` chat records in the trainer's SFT format (short system prompt, question, reasoning, answer)."""
    rng = random.Random(0)
    out: list[dict[str, Any]] = []
    for i in range(n):
        msgs = chat_item(rng)
        out.append({"id": str(i), "messages": msgs, "answer": msgs[-1]["content"].rsplit("Answer: ", 1)[-1]})
    return out


def mean_tokens(base: Path, recs: list[dict[str, Any]]) -> float:
    """Average tokenized length of a record (chat template applied)."""
    tokenizer = load_tokenizer(base)
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True)["input_ids"]) for r in recs[:500]]
    return statistics.mean(lengths)


def ours(base: Path, recs: list[dict[str, Any]], steps: int, batch: int, packing: bool) -> Run:
    """``train_sft`` exactly as the trainer service runs it (no checkpoint interval inside the run)."""
    cfg = TrainingConfig(
        method="sft",
        max_steps=steps,
        learning_rate=LR,
        batch_size=batch,
        packing=packing,
        max_seq_len=MAX_LEN,
        checkpoint_interval=10**9,
    )
    clock = Clock()
    with tempfile.TemporaryDirectory() as d:
        result = train_sft(base, sft_dataset(recs), cfg, d, callbacks=[clock])
    return clock.run(result.tokens_seen)


def plain_trl(base: Path, recs: list[dict[str, Any]], steps: int, batch: int, checkpointing: bool) -> Run:
    """What a user would write from the TRL docs (CPU-safe flags, no packing, assistant-only loss)."""
    on_cpu = resolve_device() == "cpu"
    clock = Clock()
    with tempfile.TemporaryDirectory() as d:
        args = SFTConfig(
            output_dir=d,
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=LR,
            max_length=MAX_LEN,
            assistant_only_loss=True,
            bf16=not on_cpu,
            use_cpu=on_cpu,
            report_to="none",
            disable_tqdm=True,
            save_strategy="no",
            include_num_input_tokens_seen="non_padding",
            gradient_checkpointing=checkpointing,
        )
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if on_cpu else torch.bfloat16),
            args=args,
            train_dataset=sft_dataset(recs).select_columns(["messages"]),
            processing_class=load_tokenizer(base),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        return clock.run(int(trainer.state.num_input_tokens_seen))


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print the table, return the median tokens per CPU second per variant."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-4m", help="tiny local model (built and cached on first use)")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak, to print model FLOPs utilisation")
    a = ap.parse_args(argv)
    base = ensure_tiny_model(a.model)
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())
    recs = records(a.examples)
    bins = max(1, round(a.batch * mean_tokens(base, recs) / MAX_LEN))
    variants: dict[str, Callable[[], Run]] = {
        "TRL defaults": lambda: plain_trl(base, recs, a.steps, a.batch, checkpointing=True),
        "plain TRL": lambda: plain_trl(base, recs, a.steps, a.batch, checkpointing=False),
        "ours, padded": lambda: ours(base, recs, a.steps, a.batch, packing=False),
        "ours, packed": lambda: ours(base, recs, a.steps, bins, packing=True),
    }
    runs: dict[str, list[Run]] = {k: [] for k in variants}
    for _ in range(a.repeats):
        for name, fn in variants.items():
            runs[name].append(fn())
    wall = {k: statistics.median(r.tokens_per_s for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r.tokens_per_cpu_s for r in v) for k, v in runs.items()}

    print(f"model={a.model} ({params / 1e6:.1f}M params) device={resolve_device()} threads={torch.get_num_threads()}")
    print(f"steps={a.steps} batch={a.batch} (packed: {bins} bins of {MAX_LEN}) repeats={a.repeats} (medians)")
    mfu_head = "    MFU" if a.peak_tflops else ""
    head = f"{'variant':14s} {'tok/s':>7s} {'vs plain':>8s} {'tok/cpu-s':>9s} {'vs plain':>8s} {'tokens':>7s}"
    print(f"{head}{mfu_head}  runs tok/s")
    for name, v in runs.items():
        mfu = f" {6 * params * wall[name] / (a.peak_tflops * 1e12):6.1%}" if a.peak_tflops else ""
        print(
            f"{name:14s} {wall[name]:7.0f} {wall[name] / wall['plain TRL']:7.3f}x {cpu[name]:9.0f} "
            f"{cpu[name] / cpu['plain TRL']:7.3f}x {statistics.median(r.tokens for r in v):7.0f}{mfu}  "
            f"{[round(r.tokens_per_s) for r in v]}"
        )
    for label, m in (("wall", wall), ("CPU", cpu)):
        print(
            f"{label:4s}: ours/plain TRL (same work) {m['ours, padded'] / m['plain TRL']:.3f}x (goal >= 0.95x); "
            f"packing (ours packed/padded) {m['ours, packed'] / m['ours, padded']:.2f}x"
        )
    return cpu


if __name__ == "__main__":
    main()
