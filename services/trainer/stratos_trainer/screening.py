"""The trainer's student pre-screen as one call: the job's candidates, the trainer's settings, the held-out items.

What the trainer decides before it trains (and what the experiments call): each candidate answers held-out
items with verified traces shown in context (`stratos_trainer.domain.prescreen`), configured from the trainer's
settings and the job's threshold and seed.
"""

from __future__ import annotations

from collections.abc import Sequence

from stratos_shared.contracts.job import JobSpec
from stratos_shared.models import resolve_model
from stratos_shared.tasks import Example, Task
from stratos_trainer.domain.config import PrescreenConfig
from stratos_trainer.domain.data import Messages
from stratos_trainer.domain.prescreen import PrescreenResult, prescreen
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import Graded


def prescreen_config(settings: TrainerSettings, threshold: float, seed: int) -> PrescreenConfig:
    """The pre-screen as the trainer's settings configure it (shots, items, tolerance, generation budget)."""
    return PrescreenConfig(
        k_shots=settings.prescreen_shots,
        n_eval=settings.prescreen_items,
        threshold=threshold,
        tolerance=settings.prescreen_tolerance,
        max_new_tokens=settings.max_new_tokens,
        seed=seed,
    )


def candidate_paths(spec: JobSpec) -> dict[str, str]:
    """Each candidate student's model folder, by name (a bundled or tiny model is built on first use)."""
    return {s.name: resolve_model(s.model) for s in spec.students}


def screen_students(
    spec: JobSpec,
    task: Task,
    held_out: list[Example],
    shots: Sequence[Messages],
    settings: TrainerSettings,
    threshold: float | None = None,
) -> PrescreenResult:
    """Pre-screen the job's candidates on `held_out` with `shots` in context (blocking: run it in a thread).

    `threshold` defaults to the job's ``distillation.prescreen_threshold``."""
    config = prescreen_config(
        settings, spec.distillation.prescreen_threshold if threshold is None else threshold, spec.task.seed
    )
    items = [(task.student_prompt(e), e.id) for e in held_out]
    paths = list(candidate_paths(spec).values())
    return prescreen(paths, list(shots), items, Graded(task, held_out), config)
