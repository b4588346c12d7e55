"""One job through the services' own domain code, in process: the decisions and the learning, not the delivery.

The stages run in the order the events would drive them, calling the same
functions each service's handler calls: teacher-eval (``decide_teacher``),
data-synth (``synthesise_mode`` against the teacher simulator served on a local
port), trainer (``screening.screen_students``, ``train_sft`` with the job's
``training_config``, ``evaluate_path`` on the held-out split). NATS, KV, artifacts and checkpoints are left out: the
experiments measure accuracy, not delivery (the e2e tests cover that).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from stratos_data_synth.dataset import synthesise_mode
from stratos_data_synth.settings import DataSynthSettings
from stratos_shared.contracts.events import DistillationMode, TeacherScore
from stratos_shared.contracts.job import JobSpec, TeacherSpec
from stratos_shared.jobcontext import split_task, task_for
from stratos_shared.models import resolve_model
from stratos_shared.tasks import Example, Task
from stratos_shared.teacher.simulator import ModelSpec, SimulatorConfig, running_simulator
from stratos_teacher_eval.evaluation import decide_teacher
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.evaluate import evaluate_path
from stratos_trainer.domain.prescreen import PrescreenResult
from stratos_trainer.domain.sft import train_sft
from stratos_trainer.screening import screen_students as stage_prescreen
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import Graded, training_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def trainer_settings() -> TrainerSettings:
    """The trainer's defaults (pre-screen shots, eval sizes): the experiments run its code in-process, on no
    server, so the server id is only a name."""
    return TrainerSettings(server_id="bench-local")


def quiet() -> None:
    """No progress bars or per-run chatter from datasets/transformers: the experiments print their own progress."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    warnings.filterwarnings("ignore", category=UserWarning)


@dataclass(frozen=True)
class SimTeacher:
    """A simulated teacher: its accuracy per task kind (the simulator answers right with that probability)."""

    name: str
    accuracy: dict[str, float]
    sloppy_rate: float = 0.2


@dataclass(frozen=True)
class Served:
    """Teachers served by one simulator, and a response cache private to it.

    The cache is keyed by model name and prompt, so a cache shared with a simulator
    configured with other accuracies would replay the wrong answers.
    """

    teachers: list[TeacherSpec]
    cache_dir: Path


@contextlib.contextmanager
def served_teachers(teachers: Sequence[SimTeacher], seed: int) -> Iterator[Served]:
    """Serve the teacher simulator on a free local port; yield the job's teacher entries pointing at it."""
    config = SimulatorConfig(
        seed=seed,
        models={t.name: ModelSpec(accuracy=t.accuracy, sloppy_rate=t.sloppy_rate) for t in teachers},
    )
    with running_simulator(config) as sim, tempfile.TemporaryDirectory(prefix="stratos-teachers-") as cache:
        yield Served([TeacherSpec(name=t.name, base_url=sim.base_url, model=t.name) for t in teachers], Path(cache))


def job_from_example(example: str, teachers: list[TeacherSpec], **updates: Any) -> JobSpec:
    """A shipped example job (examples/*.yaml) with its teachers replaced and sections partly overridden."""
    raw = JobSpec.from_yaml(EXAMPLES / example).model_dump(mode="json")
    raw["teachers"] = [t.model_dump(mode="json") for t in teachers]
    for section, values in updates.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(raw.get(section), dict) else values
    return JobSpec.model_validate(raw)


@dataclass(frozen=True)
class TeacherDecision:
    """What teacher-eval publishes in TeacherChosen: every score, the chosen teacher and the mode."""

    scores: list[TeacherScore]
    chosen: TeacherScore
    mode: DistillationMode


@dataclass
class Synthesised:
    """What data-synth would write and announce in DataReady."""

    records: list[dict[str, Any]]
    asked: int
    rejected: dict[str, int]


@dataclass
class Trained:
    """What the trainer reports in ModelTrained, plus the loss curve for plots."""

    student: str
    before: float
    after: float
    steps: int
    wall_s: float
    records: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    distinct_answers: int = 0
    """Different final answers the trained student gave over the held-out items: 1 means it ignores the question."""


def held_out(spec: JobSpec, n: int) -> tuple[Task, list[Example]]:
    """The job's task and the first ``n`` held-out examples (what the trainer evaluates on)."""
    task = task_for(spec.task)
    return task, split_task(task, spec.task).eval[:n]


def teacher_settings(cache_dir: Path) -> DataSynthSettings:
    """The stages' teacher client settings (shared by teacher-eval and data-synth), with the served simulator's
    private response cache."""
    return DataSynthSettings(teacher_cache_dir=cache_dir)


async def evaluate_teachers(spec: JobSpec, cache_dir: Path, sample: Sequence[Example] | None = None) -> TeacherDecision:
    """Teacher-eval's decision (`decide_teacher`): every teacher scored on a stratified held-out sample (or on
    `sample`), the teacher chosen, then the mode by tau."""
    decision = await decide_teacher(spec, task_for(spec.task), teacher_settings(cache_dir), sample)
    if decision.chosen is None:
        raise RuntimeError(decision.no_teacher_reason())
    return TeacherDecision(list(decision.scores), decision.chosen, decision.mode)


async def synthesise_data(spec: JobSpec, teacher: str, mode: DistillationMode, cache_dir: Path) -> Synthesised:
    """Data-synth's synthesis in ``mode`` over the training split (`synthesise_mode`; no fallback: the experiments
    choose the mode)."""
    settings = teacher_settings(cache_dir)
    task = task_for(spec.task)  # the experiments' tasks are generated: no data file to snapshot
    outcome = await synthesise_mode(spec, task, teacher, mode, settings, budget_usd=spec.constraints.budget_usd)
    builder = outcome.builder
    return Synthesised(builder.records(split_task(task, spec.task).train), builder.asked, dict(builder.rejected))


def screen_students(spec: JobSpec, records: list[dict[str, Any]], threshold: float = 0.0) -> PrescreenResult:
    """The trainer's pre-screen (`stratos_trainer.screening`): each candidate answers held-out items with verified
    traces shown in context."""
    settings = trainer_settings()
    task, items = held_out(spec, settings.eval_samples)
    shots = [r["messages"] for r in records[: settings.prescreen_shots]]
    return stage_prescreen(spec, task, items, shots, settings, threshold)


@dataclass(frozen=True)
class Scale:
    """How big the experiments run: the full size for docs/results.md, or a smoke size."""

    task_size: int
    """Examples generated per task (20% held out)."""
    max_steps: int
    """Optimizer steps per training run (of the example jobs' batch size: 16 records)."""
    eval_items: int
    """Held-out items the teacher and the students are measured on."""


FULL = Scale(task_size=2500, max_steps=600, eval_items=200)
"""The example jobs as `make demo` runs them."""
QUICK = Scale(task_size=200, max_steps=6, eval_items=16)


class Lab:
    """Runs training and evaluation for several experiments, doing identical work once.

    A training run is a pure function of (base model, dataset, training settings,
    seed), so runs are memoised on a hash of exactly those; the base model's
    held-out accuracy is memoised per (model, task, items). With the simulator,
    injection traces do not depend on the teacher's forward accuracy, so e.g.
    the mode-switch and threshold experiments share their injection runs.
    """

    def __init__(self, scale: Scale, seed: int) -> None:
        self.scale = scale
        self.seed = seed
        self.trainings = 0
        self._trained: dict[str, Trained] = {}
        self._base: dict[str, float] = {}

    def spec(self, example: str, teachers: list[TeacherSpec], **updates: Any) -> JobSpec:
        """An example job at this lab's scale (task size, steps), with ``updates`` applied last."""
        sized: dict[str, Any] = {
            "task": {"size": self.scale.task_size},
            "training": {"max_steps": self.scale.max_steps},
        }
        for section, values in updates.items():
            sized[section] = {**sized[section], **values} if section in sized else values
        return job_from_example(example, teachers, **sized)

    def train(self, spec: JobSpec, records: list[dict[str, Any]], student: str) -> Trained:
        """Held-out accuracy of ``student`` before and after SFT on ``records`` with the job's training settings."""
        config = replace(training_config(spec), seed=self.seed)
        ref = next(s.model for s in spec.students if s.name == student)
        key = _digest(ref, records, asdict(config), spec.task.model_dump(mode="json"), self.scale.eval_items)
        if key in self._trained:
            return self._trained[key]
        settings = trainer_settings()
        task, items = held_out(spec, self.scale.eval_items)
        grader = Graded(task, items)
        prompts = [(task.student_prompt(e), e.id) for e in items]
        base = resolve_model(ref)
        base_key = _digest(ref, spec.task.model_dump(mode="json"), self.scale.eval_items)
        if base_key not in self._base:
            self._base[base_key] = evaluate_path(base, prompts, grader, max_new_tokens=settings.max_new_tokens).accuracy
        with tempfile.TemporaryDirectory(prefix="stratos-exp-") as out:
            started = time.monotonic()
            result = train_sft(base, sft_dataset(records), config, out)
            wall = time.monotonic() - started
            after = evaluate_path(result.model_dir, prompts, grader, max_new_tokens=settings.max_new_tokens)
        self.trainings += 1
        trained = Trained(
            student,
            self._base[base_key],
            after.accuracy,
            result.global_step,
            wall,
            len(records),
            result.loss_history,
            len({task.extract_answer(o) for o in after.outputs}),
        )
        self._trained[key] = trained
        return trained


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class JobRun:
    """One job through teacher-eval, data-synth and the trainer."""

    decision: TeacherDecision
    teacher_held_out: float
    """The chosen teacher's accuracy on the items the student is tested on (the fair comparison)."""
    mode: DistillationMode
    """The mode the data was synthesised in: the decision's, unless the experiment forced one."""
    data: Synthesised
    trained: Trained


def run_job(
    lab: Lab, served: Served, example: str, student: str, mode: DistillationMode | None = None, **updates: Any
) -> JobRun:
    """An example job with one tiny student, end to end; ``mode`` overrides the teacher-eval decision (ablations)."""
    students = [{"name": student, "model": f"tiny:{student}", "params_b": 0.001}]
    spec = lab.spec(example, served.teachers, students=students, **updates)
    decision = asyncio.run(evaluate_teachers(spec, served.cache_dir))
    _, items = held_out(spec, lab.scale.eval_items)
    on_items = asyncio.run(evaluate_teachers(spec, served.cache_dir, items))
    teacher_acc = next(s.accuracy for s in on_items.scores if s.name == decision.chosen.name)
    used = mode or decision.mode
    data = asyncio.run(synthesise_data(spec, decision.chosen.name, used, served.cache_dir))
    return JobRun(decision, teacher_acc, used, data, lab.train(spec, data.records, student))
