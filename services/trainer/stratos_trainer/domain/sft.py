"""LoRA-SFT and full SFT on chat records with TRL's ``SFTTrainer``.

Loss is on assistant tokens only, so the student learns to answer, not to
predict prompts. The trainer locates those tokens itself with the model's own
chat template (:mod:`.masks`), so any prefix-preserving template trains, not
only ones with TRL's ``{% generation %}`` markers. Batches are padded unless the
job asks for packing (best-fit-decreasing, padding-free; see ``TrainingConfig.packing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from peft import LoraConfig
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

from stratos_shared.localmodels import load_tokenizer
from stratos_trainer.domain.checkpoints import CheckpointSink, ControlCallback, ProgressFn, StopFn, TrainResult
from stratos_trainer.domain.config import TrainingConfig, resolve_precision
from stratos_trainer.domain.masks import assistant_masked_dataset
from stratos_trainer.domain.runner import common_args, load_base, run


def sft_config(cfg: TrainingConfig, output_dir: Path) -> SFTConfig:
    """The TRL ``SFTConfig`` for a :class:`TrainingConfig`."""
    args = common_args(cfg, output_dir, resolve_precision(cfg.device))
    return SFTConfig(
        **args,
        max_length=cfg.max_seq_len,
        packing=cfg.packing,
        packing_strategy="bfd",
        # The dataset arrives tokenized with an ``assistant_masks`` column (see .masks), which TRL turns into
        # labels; its own assistant_only_loss would demand {% generation %} markers in the template.
        assistant_only_loss=False,
    )


def lora_config(cfg: TrainingConfig) -> LoraConfig:
    """The PEFT LoRA config for a :class:`TrainingConfig`."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def train_sft(
    base_model: str | Path,
    train: Dataset,
    cfg: TrainingConfig,
    output_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    sink: CheckpointSink | None = None,
    should_stop: StopFn | None = None,
    progress: ProgressFn | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune ``base_model`` on SFT records (see :mod:`.data`); ``cfg.method`` picks LoRA or full SFT.

    ``callbacks`` are extra observers (the benchmark times the loop with one, as it does the plain TRL script).
    """
    if cfg.method not in ("lora-sft", "sft"):
        raise ValueError(f"train_sft cannot run method {cfg.method!r}")
    cfg = cfg.for_base(base_model)
    out = Path(output_dir)
    precision = resolve_precision(cfg.device)
    tokenizer = load_tokenizer(base_model)
    control = ControlCallback(sink, should_stop, progress)
    trainer = SFTTrainer(
        model=load_base(base_model, precision),
        args=sft_config(cfg, out),
        train_dataset=assistant_masked_dataset(tokenizer, train),
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.method == "lora-sft" else None,
        callbacks=[control, *callbacks],
    )
    return run(trainer, control, cfg, out, tokenizer, base_model, resume_from)
