"""Refusing a job whose task can never work, before a server slot or a teacher call is spent on it.

The constraints on servers (memory, latency, budget, capacity) are the domain's
business; this module checks the task itself: its data file must load (every
line, so a corrupt line is named at submission rather than found by a later
stage), and the split must leave held-out examples for the teacher evaluation
and enough training examples for `min_dataset_size` to be reachable at all.
"""

from __future__ import annotations

from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import split_task, task_for
from stratos_shared.tasks.errors import TaskError

PROBE_SIZE = 64
"""Generated tasks larger than this are checked on a sample this size (generating mahjong is slow)."""


def task_problem(spec: JobSpec) -> str | None:
    """Why the job's task can never produce a model, in words a user can act on; None when it can."""
    task_spec = spec.task
    exact = task_spec.path is not None or task_spec.size <= PROBE_SIZE
    probe = task_spec if exact else task_spec.model_copy(update={"size": PROBE_SIZE})
    try:
        task = task_for(probe)
    except TaskError as exc:
        return f"the task cannot be loaded: {exc}"
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
