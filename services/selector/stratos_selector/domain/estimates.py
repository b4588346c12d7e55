"""Resource estimates: GPU memory, training time, job cost and a hardware capability score.

Deliberately simple, documented heuristics (no profiling): the selector only has
to rank servers and reject hopeless ones, so the numbers must be monotone in the
right inputs and in the right ballpark, not exact.

Memory (bytes per parameter, bf16 training with Adam):

* full SFT (``sft``): bf16 weights 2 + bf16 grads 2 + fp32 master weights 4 +
  Adam's two fp32 moments 8 = **16 B/param**;
* LoRA (``lora-sft``): frozen bf16 base 2 + the adapters (≈1% of the params)
  at 16 B/param = **2.16 B/param**;
* GRPO (``grpo``): assumed LoRA-based (the reference policy is the base with
  the adapter disabled, so no second copy), states as LoRA, activations doubled
  for the rollouts' KV cache and reference log-probs.

On a server with several GPUs the model states are sharded (ZeRO-3/FSDP), the
activations are not (each GPU runs its own micro-batch).

Activations, with gradient checkpointing, for a micro-batch of ``b`` sequences
of ``s`` tokens: ``b·s·(2·h·L + 34·h + 6·V)`` bytes, i.e. the bf16 input of
every layer kept, one layer's full activations recomputed (34·h per token,
Korthikanti et al. 2022) and the logits (bf16 + fp32 for the loss). Hidden
size and depth come from the parameter count assuming ``P ≈ 12·L·h²`` and the
usual aspect ratio ``L ≈ h / 128``.

Training time: ``6 · P · tokens`` FLOPs (forward + backward) over
``gpu_count · TFLOPS · utilisation``; GRPO pays a rollout multiplier. CPU-only
servers train with host memory at a nominal per-core throughput, so tiny
students remain placeable on a laptop.

Hardware capability: ``H = log2(1 + total TFLOPS) + log2(1 + total memory GiB)``,
a log score so that doubling compute or memory adds the same amount whatever
the scale, and neither axis swamps the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from stratos_shared.contracts.job import JobSpec

GiB = float(1 << 30)

STATE_BYTES_PER_PARAM = {"sft": 16.0, "lora-sft": 2.0 + 0.01 * 16.0, "grpo": 2.0 + 0.01 * 16.0}
"""Model-state bytes per parameter by training method (see module docstring)."""
ACTIVATION_FACTOR = {"sft": 1.0, "lora-sft": 1.0, "grpo": 2.0}
DEFAULT_EPOCHS = {"sft": 3.0, "lora-sft": 3.0, "grpo": 1.0}
FLOPS_MULTIPLIER = {"sft": 1.0, "lora-sft": 1.0, "grpo": 4.0}
"""GRPO generates a group of rollouts per prompt before each update: ≈4× the SFT compute."""

MICRO_BATCH = 4
SEQ_LEN = 1024
VOCAB = 32_000
TOKENS_PER_EXAMPLE = 512
"""Prompt + reasoning trace of a typical distillation record."""
OVERHEAD_GIB = 1.0
"""CUDA context and allocator slack, plus 10% fragmentation on top (below)."""
FRAGMENTATION = 1.10
UTILISATION = 0.35
"""Model FLOPs utilisation typical of small-batch fine-tuning."""
MULTI_GPU_EFFICIENCY = 0.9
STARTUP_HOURS = 0.05
"""Model download/load and the final evaluation, independent of the data size."""
CPU_TFLOPS_PER_CORE = 0.05
UNKNOWN_GPU_TFLOPS = 50.0
"""Conservative guess for a GPU the table does not know."""

# Dense bf16 (fp16 on pre-Ampere) tensor TFLOPS per GPU; matched as substrings, first hit wins.
GPU_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("MI300X", 1307.0),
    ("H200", 989.0),
    ("H100", 989.0),
    ("L40S", 362.0),
    ("A100", 312.0),
    ("4090", 165.0),
    ("L4", 121.0),
    ("V100", 125.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("T4", 65.0),
)


def lookup_tflops(gpu_model: str) -> float:
    """Dense bf16 TFLOPS of a GPU model name, e.g. 'A100-80G' -> 312; 0 for 'none'."""
    key = re.sub(r"[^A-Z0-9]", "", gpu_model.upper())
    if key in ("", "NONE", "CPU"):
        return 0.0
    for family, tflops in GPU_TFLOPS:
        if family in key:
            return tflops
    return UNKNOWN_GPU_TFLOPS


@dataclass(frozen=True)
class Workload:
    """The server-independent part of the estimate for one job."""

    params_b: float
    method: str
    tokens: float
    flops: float
    states_gib: float
    activations_gib: float
    serving_hours: float

    @property
    def memory_gib(self) -> float:
        """Need on a single device: states + activations + overhead."""
        return (self.states_gib + self.activations_gib) * FRAGMENTATION + OVERHEAD_GIB

    def memory_per_gpu_gib(self, gpu_count: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per-device need when the states are sharded over ``gpu_count`` GPUs (CPU-only: 1 device)."""
        devices = np.maximum(gpu_count, 1.0)
        return (self.states_gib / devices + self.activations_gib) * FRAGMENTATION + OVERHEAD_GIB

    def training_hours(self, effective_tflops: NDArray[np.float64]) -> NDArray[np.float64]:
        """Wall-clock hours at the given effective (already utilisation-scaled) TFLOPS."""
        with np.errstate(divide="ignore"):
            return self.flops / (np.maximum(effective_tflops, 1e-9) * 1e12) / 3600.0 + STARTUP_HOURS


def _shape(params: float) -> tuple[float, float]:
    """Hidden size and layer count from the parameter count (P ≈ 12·L·h², L ≈ h/128)."""
    hidden = (params * 128.0 / 12.0) ** (1.0 / 3.0)
    return hidden, max(1.0, hidden / 128.0)


def workload_for(job: JobSpec) -> Workload:
    """Estimate the job's needs, for its largest candidate student (any of them may win)."""
    params_b = max(s.params_b for s in job.students)
    params = params_b * 1e9
    method = job.training.method
    hidden, layers = _shape(params)
    per_token = 2.0 * hidden * layers + 34.0 * hidden + 6.0 * VOCAB
    activations = MICRO_BATCH * SEQ_LEN * per_token * ACTIVATION_FACTOR[method]
    task, dist = job.task, job.distillation
    examples = task.size * (1.0 - task.eval_fraction) * dist.keep_per_question
    epochs = job.training.epochs or DEFAULT_EPOCHS[method]
    tokens = examples * TOKENS_PER_EXAMPLE * epochs
    if job.training.max_steps is not None:
        tokens = min(tokens, float(job.training.max_steps * MICRO_BATCH * TOKENS_PER_EXAMPLE))
    return Workload(
        params_b=params_b,
        method=method,
        tokens=tokens,
        flops=6.0 * params * tokens * FLOPS_MULTIPLIER[method],
        states_gib=STATE_BYTES_PER_PARAM[method] * params / GiB,
        activations_gib=activations / GiB,
        serving_hours=job.constraints.serving_hours,
    )


def effective_tflops(
    gpu_count: NDArray[np.float64], tflops: NDArray[np.float64], cpu_cores: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Sustained TFLOPS: GPUs × peak × utilisation (× scaling loss when >1 GPU); CPU cores when GPU-less."""
    scaling = np.where(gpu_count > 1, MULTI_GPU_EFFICIENCY, 1.0)
    gpu = gpu_count * tflops * UTILISATION * scaling
    return np.where(gpu_count > 0, gpu, cpu_cores * CPU_TFLOPS_PER_CORE * UTILISATION)


def hardware_score(total_tflops: NDArray[np.float64], total_memory_gib: NDArray[np.float64]) -> NDArray[np.float64]:
    """H = log2(1 + total TFLOPS) + log2(1 + total memory GiB); higher is better."""
    return np.log2(1.0 + total_tflops) + np.log2(1.0 + total_memory_gib)


def job_cost(workload: Workload, hours: NDArray[np.float64], cost_per_hour: NDArray[np.float64]) -> NDArray[np.float64]:
    """Estimated USD: (training hours + serving hours) × price per hour."""
    return (hours + workload.serving_hours) * cost_per_hour
