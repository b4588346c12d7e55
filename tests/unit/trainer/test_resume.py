"""Checkpoint sink, clean stop on request, and resume that continues step count and loss history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stratos_trainer.domain.checkpoints import Progress, latest_checkpoint
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.sft import train_sft


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[int, Path]] = []

    def on_checkpoint(self, step: int, path: Path) -> None:
        assert (path / "trainer_state.json").exists()  # called after the checkpoint is complete
        self.calls.append((step, path))


class StopAfter:
    """``should_stop`` that asks to stop after ``n`` polls (one poll per step)."""

    def __init__(self, n: int) -> None:
        self.n, self.polls = n, 0

    def __call__(self) -> bool:
        self.polls += 1
        return self.polls >= self.n


@pytest.mark.timeout(1200)
def test_stop_checkpoint_and_resume(base_model: Path, task_data: Any, tmp_path: Path) -> None:
    data = sft_dataset(task_data[0][:400])
    cfg = TrainingConfig(
        method="lora-sft", max_steps=8, checkpoint_interval=3, batch_size=8, packing=False, learning_rate=1e-2
    )
    sink, reports = Sink(), list[Progress]()
    reports_fn = reports.append

    first = train_sft(base_model, data, cfg, tmp_path / "run", sink=sink, should_stop=StopAfter(4), progress=reports_fn)
    assert first.stopped_early and first.global_step == 4
    assert [s for s, _ in sink.calls] == [3, 4]  # interval checkpoint, then the one forced by the stop
    assert first.last_checkpoint == tmp_path / "run" / "checkpoint-4" == latest_checkpoint(tmp_path / "run")
    assert [s for s, _ in first.loss_history] == [1, 2, 3, 4]
    last: Progress = reports[-1]
    assert last.step == 4 and last.max_steps == 8 and last.tokens_per_second > 0 and last.eta_seconds > 0

    resumed_sink = Sink()
    second = train_sft(base_model, data, cfg, tmp_path / "run", resume_from=first.last_checkpoint, sink=resumed_sink)
    assert not second.stopped_early and second.global_step == 8
    assert [s for s, _ in second.loss_history] == list(range(1, 9))
    assert second.loss_history[:4] == first.loss_history  # history before the stop is kept, not re-run
    assert second.tokens_seen > first.tokens_seen
    assert [s for s, _ in resumed_sink.calls] == [6, 8]  # the final step always leaves a checkpoint
