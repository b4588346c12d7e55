"""Refusing a job that can never work, or that points at what the operator does not allow, before a server slot
or a teacher call is spent on it.

The constraints on servers (memory, latency, budget, capacity) are the domain's business; this module checks
what the spec references and the task itself:

- every path, secret reference and teacher URL against the operator's `InputPolicy` (data and model roots,
  the secret allowlist, refused hosts and networks, the hosts each key is bound to); relative paths are
  resolved against their root;
- the data file is read once, bounded by the policy's size limit, and must load (every line, so a corrupt line
  is named at submission rather than found by a later stage); the split must leave held-out examples for the
  teacher evaluation and enough training examples for `min_dataset_size` to be reachable at all.

The bytes that were checked are the bytes every stage uses: `admit_spec` hands them back with the spec that
records their SHA-256 (`task.data_sha256`, whatever the submitter put there is replaced), and the planner
stores them as the job's snapshot before the spec. No stage opens the submitter's path again, so stages need
no shared file system and a file swapped after the check changes nothing.

All of it may touch the file system or DNS, so the selector runs it off the event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from stratos_shared.contracts.job import JobSpec
from stratos_shared.errors import PolicyError
from stratos_shared.jobcontext import data_digest, split_task, task_for
from stratos_shared.policy import InputPolicy, read_regular_file
from stratos_shared.tasks.errors import TaskError

PROBE_SIZE = 64
"""Generated tasks larger than this are checked on a sample this size (generating mahjong is slow)."""


def fingerprint(spec: JobSpec) -> str:
    """Identity of a submission: a re-used job id with another spec is refused, the same spec is a redelivery."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def resolve_paths(spec: JobSpec, policy: InputPolicy) -> JobSpec:
    """The spec with its data file and local student folders resolved inside the operator's roots.

    Raises PolicyError for a path outside its root (``..`` and symlinks that leave it included).
    """
    task = spec.task
    if task.path is not None:
        task = task.model_copy(update={"path": str(policy.data_path(task.path))})
    students = []
    for student in spec.students:
        local = policy.model_path(student.model)
        students.append(student if local is None else student.model_copy(update={"model": str(local)}))
    return spec.model_copy(update={"task": task, "students": students})


@dataclass(frozen=True)
class Admitted:
    """A job that may run: its spec as it will be stored, and the data file's bytes to snapshot (if it has one)."""

    spec: JobSpec
    """Paths resolved; `task.data_sha256` is the hash of `data` (None without a data file)."""
    data: bytes | None


def admit_spec(submitted: JobSpec, policy: InputPolicy) -> Admitted | str:
    """The job as admitted, or why it may not run (in words a user can act on)."""
    try:
        spec = resolve_paths(submitted, policy)
        data = read_data(spec, policy)
    except PolicyError as exc:
        return str(exc)
    problem = admission_problem(spec, policy, data)
    if problem is not None:
        return problem
    digest = None if data is None else data_digest(data)
    task = spec.task.model_copy(update={"data_sha256": digest})
    return Admitted(spec.model_copy(update={"task": task}), data)


def read_data(spec: JobSpec, policy: InputPolicy) -> bytes | None:
    """The (path-resolved) data file's bytes, read once and never past the policy's size limit; None without one.

    Raises PolicyError for what is not a regular file, is too large, or is missing.
    """
    if spec.task.path is None:
        return None
    path = Path(spec.task.path)
    policy.check_data_file(path)  # the size limit named in the user's terms before anything is read
    try:
        return read_regular_file(path, policy.max_data_bytes, "task.path")
    except FileNotFoundError:
        raise PolicyError(f"task.path {path}: file not found") from None


def admission_problem(spec: JobSpec, policy: InputPolicy, data: bytes | None = None) -> str | None:
    """Why the (path-resolved) job may not run, in words a user can act on; None when it may. A task with a
    data file is checked on `data`, the file's bytes as `read_data` read them."""
    try:
        for student in spec.students:
            local = policy.model_path(student.model)
            if local is not None and not local.is_dir():
                return f"student '{student.name}': model folder {local} does not exist or is not a folder"
        for teacher in spec.teachers:
            if teacher.api_key_ref is not None:
                policy.check_secret_ref(teacher.api_key_ref)
            problem = policy.url_problem(teacher.base_url)
            if problem is None and teacher.api_key_ref is not None:
                problem = policy.key_host_problem(teacher.api_key_ref, teacher.base_url)
            if problem is not None:
                return f"teacher '{teacher.name}': {problem}"
    except PolicyError as exc:
        return str(exc)
    return task_problem(spec, data)


def task_problem(spec: JobSpec, data: bytes | None = None) -> str | None:
    """Why the job's task can never produce a model, in words a user can act on; None when it can. A task with
    a data file is built from `data`, its bytes."""
    task_spec = spec.task
    exact = task_spec.path is not None or task_spec.size <= PROBE_SIZE
    probe = task_spec if exact else task_spec.model_copy(update={"size": PROBE_SIZE})
    try:
        task = task_for(probe, data)
    except TaskError as exc:
        return f"the task cannot be loaded: {exc}"
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:  # e.g. generator options it can't use
        return f"the task cannot be built: {type(exc).__name__}: {exc}"[:1000]
    distillation = spec.distillation
    if not exact:
        most = task_spec.size * distillation.keep_per_question
        return _too_small(most, task_spec.size, distillation.keep_per_question, distillation.min_dataset_size)
    split = split_task(task, task_spec)
    total = len(split.train) + len(split.eval)
    if not split.eval:
        return (
            f"the task's {total} examples leave none held out for evaluation (eval_fraction "
            f"{task_spec.eval_fraction:g}); add examples or raise eval_fraction"
        )
    if not split.train:
        return f"the task's {total} examples are all held out for evaluation; add examples or lower eval_fraction"
    most = len(split.train) * distillation.keep_per_question
    return _too_small(most, len(split.train), distillation.keep_per_question, distillation.min_dataset_size)


def _too_small(most: int, questions: int, keep: int, minimum: int) -> str | None:
    if most >= minimum:
        return None
    return (
        f"min_dataset_size {minimum} can never be reached: {questions} training questions with at most {keep} "
        f"trace(s) kept per question give {most} records at most; lower min_dataset_size or add examples"
    )
