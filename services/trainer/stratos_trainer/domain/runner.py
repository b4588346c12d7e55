"""What SFT and GRPO runs share: TrainingArguments, model loading, running with resume, saving."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase, PrinterCallback

from stratos_shared.localmodels.tokenizer import MARKER_FILE
from stratos_trainer.domain.checkpoints import (
    ControlCallback,
    TrainResult,
    history,
    latest_checkpoint,
    series,
    tokens_seen,
)
from stratos_trainer.domain.config import Precision, TrainingConfig


def common_args(cfg: TrainingConfig, output_dir: Path, precision: Precision) -> dict[str, Any]:
    """Keyword arguments every TRL config gets from a :class:`TrainingConfig`."""
    cfg = cfg.resolved()
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "warmup_steps": cfg.warmup_ratio,
        "lr_scheduler_type": "cosine",
        "weight_decay": cfg.weight_decay,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.checkpoint_interval,
        "save_total_limit": cfg.keep_checkpoints,
        "include_num_input_tokens_seen": "non_padding",
        "bf16": precision.bf16,
        "use_cpu": precision.use_cpu,
        "gradient_checkpointing": precision.gradient_checkpointing,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": cfg.seed,
        "dataloader_num_workers": 0,
        **cfg.extra,
    }


def load_base(path: str | Path, precision: Precision) -> Any:
    """The base model in the run's dtype."""
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=precision.dtype)


def run(
    trainer: Any,
    control: ControlCallback,
    cfg: TrainingConfig,
    output_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    base_path: str | Path,
    resume_from: str | Path | None,
    metric_keys: list[str] | None = None,
) -> TrainResult:
    """Train (resuming when asked), then save a loadable model and return the result."""
    trainer.remove_callback(PrinterCallback)  # progress goes through ControlCallback, not stdout
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    state = trainer.state
    tokens_per_second, wall = control.throughput(state)
    model = trainer.model
    adapter_dir: Path | None = None
    model_dir = output_dir / "final"
    if hasattr(model, "merge_and_unload"):  # PEFT: keep the adapter, and a merged copy anyone can load
        adapter_dir = output_dir / "adapter"
        model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        model = model.merge_and_unload()
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    marker = Path(base_path) / MARKER_FILE
    for d in (model_dir, adapter_dir):
        if d is not None and marker.exists():
            shutil.copy(marker, d / MARKER_FILE)
    return TrainResult(
        method=cfg.method,
        output_dir=output_dir,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        global_step=state.global_step,
        loss_history=history(state, "loss"),
        tokens_seen=tokens_seen(state),
        tokens_per_second=tokens_per_second,
        wall_seconds=wall,
        stopped_early=control.stopped_early,
        last_checkpoint=latest_checkpoint(output_dir),
        metrics=series(state, metric_keys or []),
    )
