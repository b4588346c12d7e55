"""Checkpointing, resume, clean stop and progress reporting for any TRL/transformers trainer.

The service must be able to (a) upload every checkpoint to the artifact store,
(b) stop a job cleanly when it is re-planned, losing no work, and (c) resume it
later with the same global step and loss history. Transformers' own
checkpoints (weights, optimizer, scheduler, RNG and ``trainer_state.json``)
already make resume exact; this module adds the hooks around them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointSink(Protocol):
    """Receives each checkpoint right after it is written (e.g. to upload it)."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """Called with the global step and the local checkpoint directory."""


@dataclass(frozen=True)
class Progress:
    """One progress report."""

    step: int
    """Global optimizer step just finished."""
    max_steps: int
    """Planned total steps."""
    loss: float | None
    """Latest logged training loss (None before the first log)."""
    tokens_per_second: float
    """Input tokens (non-padding) per second since this run started."""
    eta_seconds: float
    """Estimated seconds to ``max_steps`` at the current step rate."""


ProgressFn = Callable[[Progress], None]
StopFn = Callable[[], bool]


@dataclass
class TrainResult:
    """What a training run produced."""

    method: str
    """``"lora-sft"``, ``"sft"`` or ``"grpo"``."""
    output_dir: Path
    """Run directory holding ``checkpoint-N`` sub-directories."""
    model_dir: Path
    """Directory loadable with ``AutoModelForCausalLM.from_pretrained`` (LoRA merged into the base)."""
    adapter_dir: Path | None
    """The LoRA adapter alone (None for full fine-tuning)."""
    global_step: int
    """Optimizer steps done, counting steps before a resume."""
    loss_history: list[tuple[int, float]]
    """(step, loss) pairs, including those logged before a resume."""
    tokens_seen: int
    """Non-padding input tokens processed, including before a resume."""
    tokens_per_second: float
    """Throughput of this run (excluding steps done before a resume)."""
    wall_seconds: float
    """Wall time of this run's training loop."""
    stopped_early: bool
    """True when ``should_stop`` ended the run before its planned end."""
    last_checkpoint: Path | None
    """The newest checkpoint directory (resume from it)."""
    metrics: dict[str, list[float]] = field(default_factory=dict)
    """Other logged series (GRPO: ``reward``, ``reward_std`` ...), in log order."""


def tokens_seen(state: TrainerState) -> int:
    """Input tokens so far: the trainer's counter, else TRL's logged ``num_tokens`` (GRPO counts its own)."""
    if state.num_input_tokens_seen:
        return int(state.num_input_tokens_seen)
    logged = [e["num_tokens"] for e in state.log_history if "num_tokens" in e]
    return int(logged[-1]) if logged else 0


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-step ``checkpoint-N`` directory in a run directory, if any."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


class ControlCallback(TrainerCallback):
    """Polls ``should_stop`` each step, forces a save at stop and at the end, notifies the sink, reports progress."""

    def __init__(
        self, sink: CheckpointSink | None = None, should_stop: StopFn | None = None, progress: ProgressFn | None = None
    ) -> None:
        self.sink = sink
        self.should_stop = should_stop
        self.progress = progress
        self.stopped_early = False
        self.last_loss: float | None = None
        self._t0 = time.monotonic()
        self._step0 = 0
        self._tokens0 = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._t0 = time.monotonic()
        self._step0 = state.global_step
        self._tokens0 = tokens_seen(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if state.global_step >= state.max_steps:
            control.should_save = True  # always leave a resumable checkpoint at the end
        elif self.should_stop is not None and self.should_stop():
            self.stopped_early = True
            control.should_save = True
            control.should_training_stop = True
        if self.progress is not None:
            elapsed = max(1e-9, time.monotonic() - self._t0)
            done = state.global_step - self._step0
            rate = done / elapsed
            self.progress(
                Progress(
                    step=state.global_step,
                    max_steps=state.max_steps,
                    loss=self.last_loss,
                    tokens_per_second=(tokens_seen(state) - self._tokens0) / elapsed,
                    eta_seconds=(state.max_steps - state.global_step) / rate if rate > 0 else float("inf"),
                )
            )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.sink is not None:
            path = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
            self.sink.on_checkpoint(state.global_step, path)

    def throughput(self, state: TrainerState) -> tuple[float, float]:
        """(tokens/s, wall seconds) of this run so far."""
        elapsed = max(1e-9, time.monotonic() - self._t0)
        return (tokens_seen(state) - self._tokens0) / elapsed, elapsed


def history(state: TrainerState, key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) pairs of one logged metric from a trainer state (survives resume)."""
    return [(int(e["step"]), float(e[key])) for e in state.log_history if key in e and "step" in e]


def series(state: TrainerState, keys: list[str]) -> dict[str, list[float]]:
    """Logged values of several metrics, in log order."""
    return {k: [float(e[k]) for e in state.log_history if k in e] for k in keys}
