"""What every stage derives the same way from a job spec: the task, its split, the teacher clients.

The split is a pure function of example ids and the task seed, so teacher-eval,
data-synth, trainer and deployer agree on which examples are held out without
passing lists around, and the held-out split can never leak into training.

A task with a data file is built from the bytes the selector read at admission and stored in the artifact
store (`Artifact.TASK_DATA`, SHA-256 in `TaskSpec.data_sha256`), never from the submitter's path: stages
may run on machines that cannot see that file, and a file swapped after it was checked must change nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from stratos_shared.artifacts import ArtifactStore, NatsArtifactStore
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import (
    ARTIFACTS_BUCKET,
    JOBS_BUCKET,
    SPECS_BUCKET,
    server_artifacts_bucket,
    server_keys_bucket,
)
from stratos_shared.contracts.job import JobSpec, TaskSpec, TeacherSpec
from stratos_shared.errors import JobStateError, StratosError
from stratos_shared.jobs import JobState
from stratos_shared.layout import Artifact
from stratos_shared.policy import InputPolicy, read_regular_file
from stratos_shared.settings import TeacherClientSettings
from stratos_shared.tasks import Example, Task, TaskConfigError, build_task
from stratos_shared.tasks._jsonl import MAX_FILE_BYTES
from stratos_shared.tasks.errors import SnapshotError
from stratos_shared.teacher.cache import DirectoryCache
from stratos_shared.teacher.client import Pricing, TeacherClient
from stratos_shared.teacher.errors import TeacherAddressRefused
from stratos_shared.teacher.secrets import resolve_secret

if TYPE_CHECKING:
    from stratos_shared.service import ServiceRuntime


def task_for(spec: TaskSpec, data: bytes | None = None) -> Task:
    """The job's task: generated from the spec, or built from `data`, the bytes of its data file.

    A task with a data file is never built by opening `spec.path` here (the path only names the data in
    complaints): the selector passes what it read once at admission, stages go through `task_of`.
    Generated tasks are deterministic, so one cached copy per spec is safe.
    """
    if spec.path is None:
        return _generated(spec.model_dump_json())
    if data is None:
        raise TaskConfigError(
            f"task.path {spec.path}: a task with a data file is built from the data admitted with the job "
            "(task_of), never by reading the path again"
        )
    return _build(spec, data)


@lru_cache(maxsize=64)
def _generated(raw: str) -> Task:
    return _build(TaskSpec.model_validate_json(raw), None)


def _build(spec: TaskSpec, data: bytes | None) -> Task:
    return build_task(
        spec.kind,
        path=spec.path,
        generator=dict(spec.generator) or None,
        grader=spec.grader,
        seed=spec.seed,
        size=spec.size,
        data=data,
    )


def data_digest(data: bytes) -> str:
    """The SHA-256 that admission records for a data file and every stage checks its snapshot against."""
    return hashlib.sha256(data).hexdigest()


def check_snapshot(job_id: str, data: bytes, expected: str) -> None:
    """Refuse snapshot bytes that do not hash to what admission recorded (changed or corrupted in the store)."""
    got = data_digest(data)
    if got != expected:
        raise SnapshotError(
            f"job {job_id}: its task data snapshot ({Artifact.TASK_DATA}) has SHA-256 {got}, not the {expected} "
            "recorded when the job was admitted; it was changed or corrupted in the artifact store, so the job "
            "cannot use it"
        )


async def task_of(job_id: str, spec: TaskSpec, artifacts: ArtifactStore, cache_dir: Path) -> Task:
    """The job's task as every stage must see it: generated, or built from the data snapshotted at admission.

    The snapshot is fetched from the artifact store once per machine, checked against `spec.data_sha256` and
    kept under `cache_dir` by its hash; a local copy that no longer hashes right is fetched again. Raises
    SnapshotError (a TaskError) when the spec records no snapshot or the stored one does not match.
    """
    if spec.path is None:
        return await asyncio.to_thread(task_for, spec)
    expected = spec.data_sha256
    if expected is None:
        raise SnapshotError(
            f"job {job_id}: its task has a data file but its spec records no admitted snapshot of it "
            "(task.data_sha256); submit the job again"
        )
    raw, local = spec.model_dump_json(), str(cache_dir / f"{expected}.jsonl")
    try:
        return await asyncio.to_thread(_from_snapshot, raw, local)
    except _NoLocalCopy:
        pass
    data = await artifacts.get_bytes(control_uri(artifacts, job_id, Artifact.TASK_DATA))
    check_snapshot(job_id, data, expected)
    await asyncio.to_thread(_keep, Path(local), data)
    return await asyncio.to_thread(_from_snapshot, raw, local)


def control_uri(artifacts: ArtifactStore, job_id: str, name: str) -> str:
    """Where the control plane keeps one of a job's artifacts (the data snapshot, data-synth's traces), whichever
    bucket `artifacts` writes."""
    return artifacts.in_bucket(ARTIFACTS_BUCKET).uri_for(job_id, name)


class _NoLocalCopy(StratosError):
    """The snapshot's local copy is missing or no longer hashes to its name: fetch it again."""


@lru_cache(maxsize=16)
def _from_snapshot(raw: str, local: str) -> Task:
    """Cached per (spec, copy): the spec carries the hash and the copy is checked against it before the task is
    built, so one key always means the same bytes; failures are not cached."""
    spec = TaskSpec.model_validate_json(raw)
    try:
        data = read_regular_file(Path(local), MAX_FILE_BYTES, "task snapshot copy")
    except FileNotFoundError:
        raise _NoLocalCopy from None
    if data_digest(data) != spec.data_sha256:
        raise _NoLocalCopy
    return _build(spec, data)


def _keep(local: Path, data: bytes) -> None:
    """Write the copy atomically: a reader sees the whole snapshot or none."""
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, local)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Split:
    train: list[Example]
    eval: list[Example]


def _bucket(example_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_task(task: Task, spec: TaskSpec) -> Split:
    """Held-out examples are those whose hashed id falls under `eval_fraction`; the rest train."""
    train: list[Example] = []
    held_out: list[Example] = []
    for example in task.examples():
        (held_out if _bucket(example.id, spec.seed) < spec.eval_fraction else train).append(example)
    return Split(train=train, eval=held_out)


def teacher_client(
    teacher: TeacherSpec,
    cache_dir: Path,
    *,
    policy: InputPolicy,
    concurrency: int = 16,
    timeout_s: float = 60.0,
    max_retries: int = 4,
) -> TeacherClient:
    """A client for one candidate teacher; the key is resolved from its reference here and nowhere else, and
    only if `policy` allows it (the reference, and the host it is bound to); the client checks the teacher's
    address against `policy` when it connects. Raises a TeacherError saying why the teacher cannot be used."""
    problem = policy.url_problem(teacher.base_url, resolve=False)
    if problem is None and teacher.api_key_ref:
        problem = policy.key_host_problem(teacher.api_key_ref, teacher.base_url)
    if problem is not None:
        raise TeacherAddressRefused(f"teacher '{teacher.name}' is refused: {problem}")
    return TeacherClient(
        teacher.base_url,
        teacher.model,
        api_key=resolve_secret(teacher.api_key_ref, policy) if teacher.api_key_ref else None,
        address_guard=policy.address_problem,
        max_concurrency=concurrency,
        timeout_s=timeout_s,
        max_retries=max_retries,
        pricing=Pricing(
            input_usd_per_1m=teacher.usd_per_1m_input_tokens, output_usd_per_1m=teacher.usd_per_1m_output_tokens
        ),
        cache=DirectoryCache(cache_dir),
    )


def teacher_client_for(teacher: TeacherSpec, settings: TeacherClientSettings) -> TeacherClient:
    """`teacher_client` as a service's settings configure it (cache, policy, concurrency, timeout, retries)."""
    return teacher_client(
        teacher,
        settings.resolved_teacher_cache_dir(),
        policy=settings.input_policy(),
        concurrency=settings.teacher_concurrency,
        timeout_s=settings.teacher_timeout_s,
        max_retries=settings.teacher_max_retries,
    )


class SpecReader:
    """Reads accepted job specs (written by the selector before any stage runs); bound once connected."""

    def __init__(self) -> None:
        self.kv: TypedKV[JobSpec] | None = None

    async def get(self, job_id: str) -> JobSpec:
        if self.kv is None:
            raise JobStateError("the specs bucket is not attached yet")
        found = await self.kv.get(job_id)
        if found is None:
            raise JobStateError(f"job {job_id} has no accepted spec in the specs bucket")
        return found[0]


LEDGER_WAIT_S = 10.0
"""How long a worker waits for the ledger to show what the work it was given implies."""


class StageResources:
    """What a pipeline stage reads besides its event: accepted specs and the artifact store.

    Handlers are declared before the connection exists; `bind` (an on-start hook)
    attaches the buckets once the service is connected. A server's worker (`server_id`) writes its server's own
    bucket, and its endpoints' keys to its private one; a control stage writes the control plane's.
    """

    def __init__(self, server_id: str | None = None) -> None:
        self.server_id = server_id
        self.specs = SpecReader()
        self._artifacts: ArtifactStore | None = None
        self._jobs: TypedKV[JobState] | None = None

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            raise JobStateError("the artifact store is not attached yet")
        return self._artifacts

    @property
    def keys(self) -> ArtifactStore:
        """Where a server's deployer keeps its endpoints' bearer keys: its server's key bucket, which no other
        server may read (the CLI's `stratos key` does)."""
        if self.server_id is None:
            raise JobStateError("only a server's worker keeps endpoint keys")
        return self.artifacts.in_bucket(server_keys_bucket(self.server_id))

    @property
    def jobs(self) -> TypedKV[JobState]:
        """The job ledger (read-only for stages): current server, results of earlier stages."""
        if self._jobs is None:
            raise JobStateError("the jobs bucket is not attached yet")
        return self._jobs

    async def job_state(self, job_id: str) -> JobState | None:
        found = await self.jobs.get(job_id)
        return found[0] if found else None

    async def wait_for_state(
        self, job_id: str, ready: Callable[[JobState], bool], missing: str, timeout_s: float = LEDGER_WAIT_S
    ) -> JobState:
        """The job's ledger entry once `ready` holds: the ledger folds events a moment after a worker sees the
        work they caused. After `timeout_s` a `JobStateError` says the job is `missing` (e.g. "a placement at
        revision 2"), and the message is redelivered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            state = await self.job_state(job_id)
            if state is not None and ready(state):
                return state
            if loop.time() > deadline:
                raise JobStateError(f"job {job_id} is not in the ledger with {missing} yet")
            await asyncio.sleep(0.2)

    async def bind(self, runtime: ServiceRuntime) -> None:
        self.specs.kv = TypedKV(await runtime.js.key_value(SPECS_BUCKET), JobSpec)
        bucket = server_artifacts_bucket(self.server_id) if self.server_id else ARTIFACTS_BUCKET
        self._artifacts = NatsArtifactStore(runtime.js, bucket)
        self._jobs = TypedKV(await runtime.js.key_value(JOBS_BUCKET), JobState)
