"""Where a job's artifacts live: every name one stage writes and another reads, in one place.

Names are relative to the job's folder in the artifact store (``nats-obj://stratos-artifacts/<job_id>/<name>``,
checked by `stratos_shared.artifacts.artifact_key`); `JobArtifacts` turns them into URIs and reads or writes
them for one job, so no stage spells a path the next stage must guess.

| name | written by | read by |
| --- | --- | --- |
| `task/data.jsonl` | selector (at admission: the task's data file, SHA-256 in the spec) | every stage (`task_of`) |
| `data/train.jsonl`, `data/eval.jsonl` | data-synth | trainer (via DataReady's URIs) |
| `data/traces.jsonl` | data-synth (GRPO jobs: the verified SFT traces) | trainer (warm start, pre-screen shots) |
| `training/prescreen.json`, `training/before.json`, `training/warm-start.json` | trainer | trainer (a resumed run) |
| `checkpoints/r<revision>-step-<n>.tar.gz`, `checkpoints/latest.json` | trainer | trainer (resume) |
| `model/adapter.tar.gz` or `model/full.tar.gz`, `model/warm-start.tar.gz` | trainer | deployer, trainer |
| `deployment/record.json` | deployer | deployer (a restarted one adopts its endpoint) |
| `report/report.json`, `report/report.md`, `report/<plot>.png` | deployer | CLI (`stratos report`) |
| `attempts/<n>/...`: checkpoints, model, baseline, warm start of attempt n > 1 | trainer | trainer, deployer |

A job that misses its accuracy target trains again (`TrainingPlan`); `AttemptArtifacts` names each attempt's files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stratos_shared.artifacts import ArtifactStore
from stratos_shared.errors import ArtifactError


class Artifact(StrEnum):
    """The fixed artifact names of a job (the names with a revision, step or plot in them are functions below)."""

    TASK_DATA = "task/data.jsonl"
    """The task's data file as admitted (its SHA-256 is the spec's `task.data_sha256`): what stages read."""
    TRAIN = "data/train.jsonl"
    """Training records: chat SFT records, or GRPO prompts."""
    EVAL = "data/eval.jsonl"
    """The held-out prompts and answers."""
    TRACES = "data/traces.jsonl"
    """A GRPO job's verified teacher traces in chat format (its SFT warm start, its pre-screen shots)."""
    PRESCREEN = "training/prescreen.json"
    """The pre-screen's decision, kept so a resumed job reuses it."""
    BASELINE = "training/before.json"
    """The chosen student's held-out accuracy before training."""
    WARM_START_RECORD = "training/warm-start.json"
    """The GRPO warm start's wall time and steps (the job's training time includes them)."""
    WARM_START_MODEL = "model/warm-start.tar.gz"
    """The GRPO warm start's model, the base GRPO trains (and resumes) on."""
    LATEST_CHECKPOINT = "checkpoints/latest.json"
    """The newest uploaded checkpoint: what a resumed run starts from."""
    ADAPTER = "model/adapter.tar.gz"
    """The trained LoRA adapter."""
    FULL_MODEL = "model/full.tar.gz"
    """The trained model (full fine-tuning)."""
    DEPLOYMENT_RECORD = "deployment/record.json"
    """What a restarted deployer needs to adopt or stop the endpoint its predecessor started."""
    REPORT_JSON = "report/report.json"
    REPORT_MD = "report/report.md"


def checkpoint(revision: int, step: int) -> str:
    """A checkpoint's name: the placement revision in it, so a stale owner never overwrites the new owner's."""
    return f"checkpoints/r{revision}-step-{step}.tar.gz"


def endpoint_key(revision: int) -> str:
    """A deployment's bearer key: per revision, so a stale deployer never overwrites the live endpoint's key."""
    return f"deployment/r{revision}-api-key"


def trained_model(is_adapter: bool) -> Artifact:
    return Artifact.ADAPTER if is_adapter else Artifact.FULL_MODEL


def report_plot(name: str) -> str:
    return f"report/{name}.png"


def _in_attempt(attempt: int, name: str) -> str:
    """The first attempt's files at the job's top level (as before escalation existed), later ones in their folder."""
    return name if attempt == 1 else f"attempts/{attempt}/{name}"


@dataclass(frozen=True)
class AttemptArtifacts:
    """Where one training attempt keeps its artifacts.

    A student's baseline and GRPO warm start belong to its line of training (`lineage`: the attempt that
    started it), so a 'continue' attempt reuses them; checkpoints and the model belong to the attempt, so a
    crash resumes the attempt it interrupted, never an earlier one.
    """

    attempt: int
    lineage: int = 1

    @property
    def latest(self) -> str:
        return _in_attempt(self.attempt, Artifact.LATEST_CHECKPOINT)

    def checkpoint(self, revision: int, step: int) -> str:
        return _in_attempt(self.attempt, checkpoint(revision, step))

    def model(self, is_adapter: bool) -> str:
        return _in_attempt(self.attempt, trained_model(is_adapter))

    @property
    def baseline(self) -> str:
        return _in_attempt(self.lineage, Artifact.BASELINE)

    @property
    def warm_start_model(self) -> str:
        return _in_attempt(self.lineage, Artifact.WARM_START_MODEL)

    @property
    def warm_start_record(self) -> str:
        return _in_attempt(self.lineage, Artifact.WARM_START_RECORD)


@dataclass(frozen=True)
class JobArtifacts:
    """One job's artifacts in a store: URIs, reads and writes by name."""

    store: ArtifactStore
    job_id: str

    def uri(self, name: str) -> str:
        return self.store.uri_for(self.job_id, name)

    async def exists(self, name: str) -> bool:
        return await self.store.exists(self.uri(name))

    async def put(self, name: str, data: bytes) -> str:
        return await self.store.put_bytes(self.job_id, name, data)

    async def put_json(self, name: str, value: Any, indent: int | None = None) -> str:
        return await self.put(name, json.dumps(value, indent=indent).encode())

    async def get_json(self, name: str) -> Any | None:
        """The artifact's JSON, or None when it does not exist (yet)."""
        try:
            return json.loads(await self.store.get_bytes(self.uri(name)))
        except ArtifactError:
            return None
