"""The training domain: pure training code, no message bus.

The trainer service wires these to events; tests and the demo call them directly.

- :func:`train_sft` (``lora-sft`` / ``sft``) and :func:`train_grpo` run TRL with checkpoints,
  resume, a ``should_stop`` hook, a :class:`CheckpointSink` and progress reports.
- :func:`evaluate` / :func:`evaluate_path`: greedy held-out accuracy with a grader.
- :func:`prescreen`: few-shot capacity screening of candidate students.
"""

from stratos_trainer.domain.checkpoints import CheckpointSink, Progress, TrainResult, latest_checkpoint
from stratos_trainer.domain.config import PrescreenConfig, TrainingConfig, resolve_device, resolve_precision
from stratos_trainer.domain.data import eval_items, grpo_dataset, load_grpo_jsonl, load_sft_jsonl, sft_dataset
from stratos_trainer.domain.evaluate import EvalResult, Grader, evaluate, evaluate_path, load_model
from stratos_trainer.domain.grpo import train_grpo
from stratos_trainer.domain.prescreen import CandidateScore, PrescreenResult, choose, prescreen
from stratos_trainer.domain.sft import train_sft

__all__ = [
    "CandidateScore",
    "CheckpointSink",
    "EvalResult",
    "Grader",
    "PrescreenConfig",
    "PrescreenResult",
    "Progress",
    "TrainResult",
    "TrainingConfig",
    "choose",
    "eval_items",
    "evaluate",
    "evaluate_path",
    "grpo_dataset",
    "latest_checkpoint",
    "load_grpo_jsonl",
    "load_model",
    "load_sft_jsonl",
    "prescreen",
    "resolve_device",
    "resolve_precision",
    "sft_dataset",
    "train_grpo",
    "train_sft",
]
