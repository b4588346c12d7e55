"""Stages build a data-file task from the snapshot admitted with the job, checked by its SHA-256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_shared.artifacts import FileArtifactStore
from stratos_shared.contracts.job import TaskSpec
from stratos_shared.jobcontext import data_digest, task_for, task_of
from stratos_shared.layout import Artifact
from stratos_shared.tasks import TaskConfigError
from stratos_shared.tasks.errors import SnapshotError

ROWS = [{"question": f"q{i}?", "answer": str(i)} for i in range(10)]
DATA = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def spec(data: bytes = DATA) -> TaskSpec:
    return TaskSpec(kind="jsonl", path="/nowhere/data.jsonl", grader="exact", data_sha256=data_digest(data))


async def test_the_task_comes_from_the_snapshot_and_is_kept_by_its_hash(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "store")
    await store.put_bytes("job-1", Artifact.TASK_DATA, DATA)
    cache = tmp_path / "cache"
    task = await task_of("job-1", spec(), store, cache)
    assert [e.question for e in task.examples()] == [r["question"] for r in ROWS]
    assert (cache / f"{data_digest(DATA)}.jsonl").read_bytes() == DATA


async def test_a_snapshot_that_does_not_match_its_hash_is_refused_naming_the_job(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "store")
    await store.put_bytes("job-2", Artifact.TASK_DATA, DATA.replace(b"q3?", b"q4?"))
    with pytest.raises(SnapshotError, match=r"job job-2: its task data snapshot .* not the [0-9a-f]{64} recorded"):
        await task_of("job-2", spec(), store, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*"))  # nothing unchecked is kept


async def test_a_local_copy_that_no_longer_matches_is_fetched_again(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "store")
    await store.put_bytes("job-3", Artifact.TASK_DATA, DATA)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{data_digest(DATA)}.jsonl").write_bytes(b'{"question": "tampered", "answer": "x"}\n')
    task = await task_of("job-3", spec(), store, cache)
    assert len(task.examples()) == len(ROWS)


async def test_a_data_file_task_without_a_recorded_snapshot_is_refused(tmp_path: Path) -> None:
    unrecorded = spec().model_copy(update={"data_sha256": None})
    with pytest.raises(SnapshotError, match=r"job job-4: .* records no admitted snapshot"):
        await task_of("job-4", unrecorded, FileArtifactStore(tmp_path), tmp_path / "cache")


def test_task_for_never_reads_a_data_file_from_its_path(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(DATA)
    on_disk = TaskSpec(kind="jsonl", path=str(path), grader="exact")
    with pytest.raises(TaskConfigError, match="never by reading the path again"):
        task_for(on_disk)
    assert len(task_for(on_disk, DATA).examples()) == len(ROWS)


def test_a_submitted_hash_must_look_like_one() -> None:
    with pytest.raises(ValueError, match="data_sha256"):
        TaskSpec(kind="jsonl", path="d.jsonl", grader="exact", data_sha256="../../etc/passwd")
