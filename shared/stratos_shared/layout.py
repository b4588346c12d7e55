"""Where a job's artifacts live: every name one stage writes and another reads, in one place.

Names are relative to the job's folder in a bucket (``nats-obj://<bucket>/<job_id>/<name>``, checked by
`stratos_shared.artifacts.artifact_key`); `JobArtifacts` turns them into URIs and reads or writes them for one
job, so no stage spells a path the next stage must guess. The control plane's names live in ``stratos-artifacts``;
a worker's in its server's own ``stratos-srv-<server>`` (the keys in ``stratos-key-<server>``), and
`ServerArtifacts` finds them in whichever server's bucket they were written.

| name | written by (bucket) | read by |
| --- | --- | --- |
| `task/data.jsonl` | selector (control; at admission, SHA-256 in the spec) | every stage (`task_of`) |
| `data/train.jsonl`, `data/eval.jsonl` | data-synth (control) | trainer (via DataReady's URIs) |
| `data/traces.jsonl` | data-synth (control; GRPO: the verified SFT traces) | trainer (warm start, shots) |
| `training/prescreen.json`, `training/before.json`, `training/warm-start.json` | trainer | trainer (resumed) |
| `checkpoints/r<revision>-step-<n>.tar.gz`, `checkpoints/latest.json` | trainer | trainer (resume) |
| `model/adapter.tar.gz` or `model/full.tar.gz`, `model/warm-start.tar.gz` | trainer | deployer, trainer |
| `deployment/r<revision>-api-key` | deployer (its server's key bucket) | CLI (`stratos key`) |
| `deployment/record.json` | deployer | deployer (a restarted one adopts its endpoint) |
| `report/report.json`, `report/report.md`, `report/<plot>.png` | deployer | CLI (`stratos report`) |
| `attempts/<n>/...`: checkpoints, model, baseline, warm start of attempt n > 1 | trainer | trainer, deployer |

(control: ``stratos-artifacts``; otherwise the writer's server's ``stratos-srv-<server>``. Other stages read a
worker's artifacts by the URIs its events carry: ModelTrained's model, ModelDeployed's key, JobCompleted's report.)

A job that misses its accuracy target trains again (`TrainingPlan`); `AttemptArtifacts` names each attempt's files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stratos_shared.artifacts import ArtifactStore
from stratos_shared.bus.names import server_artifacts_bucket
from stratos_shared.errors import ArtifactError

log = logging.getLogger("stratos.artifacts")


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


@dataclass(frozen=True)
class ServerArtifacts:
    """What the servers of one job wrote: this server writes its own bucket (`store`); a read looks there first,
    then in the bucket of every other server the job was placed on, the latest placement first. Each server writes
    only its own bucket, and a job that moved resumes from what its previous servers wrote."""

    store: ArtifactStore
    job_id: str
    servers: tuple[str, ...] = ()
    """The job's servers, first placement first (`JobState.servers`)."""

    def uris(self, name: str) -> list[str]:
        """Where `name` may be, in the order a read tries: this server's bucket, then the job's other servers'."""
        stores = [self.store, *(self.store.in_bucket(server_artifacts_bucket(s)) for s in reversed(self.servers))]
        return list(dict.fromkeys(store.uri_for(self.job_id, name) for store in stores))

    async def _copies(self, name: str) -> AsyncIterator[str]:
        """The URIs of the copies of `name` that exist. A bucket this server may not read (its server's credential
        was removed since) holds nothing it can use: skipped, said once in the log."""
        for uri in self.uris(name):
            try:
                if await self.store.exists(uri):
                    yield uri
            except TimeoutError:
                log.warning("job %s: %s cannot be read from here (no answer): skipped", self.job_id, uri)

    async def find(self, name: str) -> str | None:
        """The URI of the first copy of `name` found, or None."""
        async for uri in self._copies(name):
            return uri
        return None

    async def get_json(self, name: str) -> Any | None:
        """The first copy's JSON, or None when no server of the job wrote it (yet)."""
        found = await self.find(name)
        return None if found is None else json.loads(await self.store.get_bytes(found))

    async def every_json(self, name: str) -> list[Any]:
        """Every server's copy of `name` (its own latest checkpoint pointer each): the caller picks the newest."""
        return [json.loads(await self.store.get_bytes(uri)) async for uri in self._copies(name)]
