"""Configuration of one training run, separate from the code that runs it.

Fields left as ``None`` take a per-method default for the base model's scale (``METHOD_DEFAULTS`` for the
tiny local models, ``REAL_MODEL_DEFAULTS`` for pretrained ones): LoRA trains far fewer weights and tolerates a
much higher learning rate than full SFT, GRPO needs a small rate because its updates are noisy, and a
pretrained model needs far smaller rates than a 1M-parameter one (its weights already encode what it knows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

Method = Literal["lora-sft", "sft", "grpo"]
Device = Literal["auto", "cpu", "cuda"]
ModelScale = Literal["auto", "tiny", "real"]

METHOD_DEFAULTS: dict[str, dict[str, float | int]] = {
    "lora-sft": {"learning_rate": 2e-3, "batch_size": 16},
    "sft": {"learning_rate": 1e-3, "batch_size": 16},
    "grpo": {"learning_rate": 1e-4, "batch_size": 64},
}
"""Per-method defaults for the tiny local students (1M-10M parameters, built from scratch), tuned on them."""

REAL_MODEL_DEFAULTS: dict[str, dict[str, float | int]] = {
    "lora-sft": {"learning_rate": 1e-3, "batch_size": 8},
    "sft": {"learning_rate": 1e-4, "batch_size": 8},
    "grpo": {"learning_rate": 1e-6, "batch_size": 16},
}
"""Per-method defaults for pretrained students (``smollm2-135m``, hub models).

Measured on SmolLM2-135M-Instruct, two-digit addition, 40 steps of 8, 20 held-out items
(``bench/real_model_lr.py``): LoRA at 2e-4 learned the format but not the task (5%), 1e-3 and 2e-3 did
equally well (75%, 80%), so LoRA keeps a high rate at this size; 1e-3 is the lower of the two good ones (it
reached 20/20 in 150 steps). Full SFT is where the tiny default hurts: 1e-3 20%, 1e-4 95%, 2e-5 10% (too
slow for 40 steps). GRPO 1e-6 is TRL's default, not measured here. Batch 8 of 128-token sequences peaks at
3.5 GB on a CPU. Billion-scale bases usually want a lower LoRA rate (2e-4 is common): set ``learning_rate``.
"""

DEFAULTS_BY_SCALE = {"tiny": METHOD_DEFAULTS, "real": REAL_MODEL_DEFAULTS}


@dataclass
class TrainingConfig:
    """One training run of a student model."""

    method: Method = "lora-sft"
    """``"lora-sft"`` (adapter on a frozen base), ``"sft"`` (all weights) or ``"grpo"`` (RL on a correctness reward)."""
    epochs: float = 3.0
    """Passes over the training data; ignored when ``max_steps`` > 0."""
    max_steps: int = -1
    """Stop after this many optimizer steps (> 0 overrides ``epochs``); re-planning and tests use it to bound time."""
    learning_rate: float | None = None
    """Peak learning rate; ``None`` takes the method default for the model's scale (see ``model_scale``)."""
    batch_size: int | None = None
    """Sequences (SFT) or completions (GRPO) per optimizer step; ``None`` takes the method default."""
    gradient_accumulation_steps: int = 1
    """Micro-batches accumulated per optimizer step (raise on small GPUs instead of the batch size)."""
    warmup_ratio: float = 0.05
    """Share of steps with linear warm-up before cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    lora_r: int = 16
    """LoRA rank; ample for narrow tasks, cheap to store and upload."""
    lora_alpha: int = 32
    """LoRA scaling numerator (effective scale ``alpha / r``)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input; 0 because distilled datasets are small but clean and runs short."""
    lora_target_modules: str | list[str] = "all-linear"
    """Modules that get adapters; ``"all-linear"`` adapts attention and MLP, which tiny models need."""
    packing: bool = False
    """Pack several examples per sequence (TRL best-fit-decreasing, padding-free) instead of padding batches.

    Off by default, measured (``bench/rules_ceiling.py``, tiny-1m, 600 steps of ~15 custom-rules records on
    CPU): padded 54.5% held-out in 91 s, packed 15.5% in 164 s. On CPU/SDPA a packed row is one long sequence
    with a dense block-diagonal mask, so attention cost grows with the square of the row; flash-attention
    kernels on a GPU avoid that, which is where packing pays. Why the packed run also learned less is not
    settled: its forward pass matches the padded one (examples do not attend to each other), but it saw ~12
    records a step instead of 16, and on that task learning is a late jump that a few steps' lag can miss.
    """
    max_seq_len: int = 512
    """Longest tokenized example; longer ones are truncated (packing bins are this long too)."""
    checkpoint_interval: int = 50
    """Save a resumable checkpoint every this many optimizer steps (and always at the end)."""
    keep_checkpoints: int = 2
    """Local checkpoints kept on disk; older ones are deleted after the sink has seen them."""
    logging_steps: int = 1
    """Record the loss every this many steps; 1 gives a complete loss history at negligible cost."""
    num_generations: int = 8
    """GRPO: completions sampled per prompt (the group whose rewards are normalised); must divide ``batch_size``."""
    max_completion_length: int = 64
    """GRPO: new tokens per sampled completion."""
    beta: float = 0.0
    """GRPO: KL penalty to the reference model; 0 skips the reference model (halves memory, TRL's default)."""
    temperature: float = 0.5
    """GRPO: sampling temperature of the rollouts.

    0.5, not the usual 1.0: a small student's distribution is flat, so at 1.0 most
    rollouts are noise and GRPO made the 1M student worse (``bench/grpo_sweep.py``);
    billion-scale students are sharper and tolerate 0.7-1.0."""
    warm_start_steps: int = 0
    """GRPO: full-SFT steps on verified traces first, with the SFT defaults (``warm_start_config``); 0: none."""
    grpo_use_lora: bool = False
    """GRPO: train a LoRA adapter instead of all weights (for students too big to update fully)."""
    model_scale: ModelScale = "auto"
    """Which defaults fill ``learning_rate`` and ``batch_size``: ``"tiny"`` (``METHOD_DEFAULTS``), ``"real"``
    (``REAL_MODEL_DEFAULTS``), or ``"auto"``: decided from the base model by :meth:`for_base` (the training
    functions call it), tiny for models built by ``stratos_shared.localmodels``, real for any other."""
    seed: int = 0
    """Seed for data order, LoRA init and sampling."""
    device: Device = "auto"
    """``"auto"`` picks CUDA when available, else CPU."""
    extra: dict[str, object] = field(default_factory=dict)
    """Extra keyword arguments passed verbatim to TRL's ``SFTConfig``/``GRPOConfig`` (escape hatch)."""

    def for_base(self, base_model: str | Path) -> TrainingConfig:
        """A copy whose ``"auto"`` scale is decided from the base model directory (see ``model_scale``)."""
        if self.model_scale != "auto":
            return self
        from stratos_shared.localmodels import is_local_tiny_model

        return replace(self, model_scale="tiny" if is_local_tiny_model(base_model) else "real")

    def resolved(self) -> TrainingConfig:
        """A copy with per-method defaults filled in; raises ``ValueError`` on inconsistent settings.

        An ``"auto"`` scale not yet decided by :meth:`for_base` takes the tiny defaults.
        """
        if self.method not in METHOD_DEFAULTS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {sorted(METHOD_DEFAULTS)}")
        defaults = DEFAULTS_BY_SCALE["real" if self.model_scale == "real" else "tiny"][self.method]
        batch = self.batch_size if self.batch_size is not None else int(defaults["batch_size"])
        if self.method == "grpo" and batch % self.num_generations:
            raise ValueError(f"GRPO batch_size {batch} must be a multiple of num_generations {self.num_generations}")
        return replace(
            self,
            learning_rate=self.learning_rate if self.learning_rate is not None else float(defaults["learning_rate"]),
            batch_size=self.batch_size if self.batch_size is not None else int(defaults["batch_size"]),
        )

    def warm_start_config(self) -> TrainingConfig:
        """The SFT run a GRPO job with ``warm_start_steps`` starts with: full SFT at the SFT defaults."""
        if self.method != "grpo" or self.warm_start_steps <= 0:
            raise ValueError("a warm start needs method 'grpo' and warm_start_steps > 0")
        return replace(
            self, method="sft", max_steps=self.warm_start_steps, learning_rate=None, batch_size=None, warm_start_steps=0
        ).resolved()

    @property
    def lr(self) -> float:
        """The effective learning rate."""
        return float(self.resolved().learning_rate)  # type: ignore[arg-type]

    @property
    def batch(self) -> int:
        """The effective batch size."""
        return int(self.resolved().batch_size)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Precision:
    """How to run on a device."""

    device: str
    """``"cpu"`` or ``"cuda"``."""
    bf16: bool
    """Train in bfloat16 mixed precision (GPU only; TRL defaults to it and fails on CPU)."""
    gradient_checkpointing: bool
    """Trade compute for memory; off: on CPU it costs ~15x, and students fit in memory without it."""
    use_cpu: bool
    """Tell transformers/accelerate not to look for an accelerator."""
    dtype: torch.dtype
    """Dtype to load the model weights in."""


def resolve_device(device: Device = "auto") -> str:
    """``"cuda"`` when asked for or available under ``"auto"``, else ``"cpu"``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(device: Device = "auto") -> Precision:
    """CPU: fp32, no gradient checkpointing. GPU: bf16 (students are small, so no checkpointing either)."""
    dev = resolve_device(device)
    if dev == "cpu":
        return Precision(device="cpu", bf16=False, gradient_checkpointing=False, use_cpu=True, dtype=torch.float32)
    return Precision(device=dev, bf16=True, gradient_checkpointing=False, use_cpu=False, dtype=torch.bfloat16)


@dataclass
class PrescreenConfig:
    """Student capacity pre-screening: few-shot accuracy of each candidate base before any training."""

    k_shots: int = 3
    """Verified reasoning traces shown in context before each question.

    Enough to show the format, short enough for small context windows."""
    n_eval: int = 64
    """Task items per candidate; 64 keeps the standard error near 6 points at mid accuracies."""
    threshold: float = 0.1
    """Candidates below this screened accuracy are dropped.

    They cannot yet follow the format or the task in context: distillation would have to teach everything."""
    tolerance: float = 0.05
    """Among passing candidates, pick the smallest within this of the best accuracy (size drives serving cost)."""
    max_new_tokens: int = 64
    """Generation budget per answer."""
    batch_size: int = 32
    """Prompts per generation batch."""
    seed: int = 0
    """Seed for picking the shots and items."""
    device: Device = "auto"
    """Device for the candidates' forward passes."""
