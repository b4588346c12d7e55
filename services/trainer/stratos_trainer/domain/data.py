"""The dataset formats the trainer consumes, and loaders from local JSONL.

SFT format (one JSON object per line)::

    {"id": "add-17",
     "messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "What is 37 + 48?"},
                  {"role": "assistant", "content": "7 + 8 = 15 ...\\nAnswer: 85"}],
     "answer": "85"}

The loss is computed on assistant turns only; ``answer`` is the ground truth
kept for evaluation and rewards.

GRPO format: the same without the assistant turn, under ``prompt``::

    {"id": "add-17", "prompt": [{"role": "system", ...}, {"role": "user", ...}], "answer": "85"}

An SFT file can be used for GRPO: :func:`to_grpo_records` drops the assistant turns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from stratos_trainer.domain.errors import TrainingError

Messages = list[dict[str, str]]
ROLES = {"system", "user", "assistant"}


class DataFormatError(TrainingError, ValueError):
    """A record does not follow the documented format."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All non-blank lines of a JSONL file, parsed."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records one per line (used by tests, benches and the data-synth hand-off)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _check_messages(messages: Any, where: str) -> Messages:
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(f"{where}: messages must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise DataFormatError(f"{where}: bad message {m!r}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def validate_sft_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Check one SFT record and return it with only the documented keys."""
    where = f"record {rec.get('id', '?')}"
    messages = _check_messages(rec.get("messages"), where)
    if messages[-1]["role"] != "assistant":
        raise DataFormatError(f"{where}: the last message must be the assistant's")
    return {"id": str(rec["id"]), "messages": messages, "answer": str(rec.get("answer", ""))}


def validate_grpo_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Check one GRPO record and return it with only the documented keys."""
    where = f"record {rec.get('id', '?')}"
    prompt = _check_messages(rec.get("prompt"), where)
    if any(m["role"] == "assistant" for m in prompt):
        raise DataFormatError(f"{where}: a GRPO prompt must not contain assistant turns")
    if "answer" not in rec:
        raise DataFormatError(f"{where}: missing answer")
    return {"id": str(rec["id"]), "prompt": prompt, "answer": str(rec["answer"])}


def to_grpo_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn SFT records into GRPO prompts by dropping the assistant turns."""
    return [
        {"id": r["id"], "prompt": [m for m in r["messages"] if m["role"] != "assistant"], "answer": r["answer"]}
        for r in records
    ]


def sft_dataset(records: Sequence[dict[str, Any]]) -> Dataset:
    """A validated ``datasets.Dataset`` of SFT records."""
    return Dataset.from_list([validate_sft_record(r) for r in records])


def grpo_dataset(records: Sequence[dict[str, Any]]) -> Dataset:
    """A validated ``datasets.Dataset`` of GRPO records (SFT records are converted)."""
    if records and "messages" in records[0] and "prompt" not in records[0]:
        records = to_grpo_records([validate_sft_record(r) for r in records])
    return Dataset.from_list([validate_grpo_record(r) for r in records])


def load_sft_jsonl(path: str | Path) -> Dataset:
    """Load an SFT JSONL file."""
    return sft_dataset(read_jsonl(path))


def load_grpo_jsonl(path: str | Path) -> Dataset:
    """Load a GRPO JSONL file (or an SFT file, converted)."""
    return grpo_dataset(read_jsonl(path))


def eval_items(records: Sequence[dict[str, Any]]) -> list[tuple[Messages, str]]:
    """(prompt messages, answer) pairs for evaluation, from SFT or GRPO records."""
    out: list[tuple[Messages, str]] = []
    for r in records:
        prompt = r.get("prompt") or [m for m in r["messages"] if m["role"] != "assistant"]
        out.append((list(prompt), str(r["answer"])))
    return out
