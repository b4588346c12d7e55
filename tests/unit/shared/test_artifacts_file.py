"""Artifact names and URIs cannot escape their job or the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratos_shared.artifacts import FileArtifactStore, artifact_key, get_dir, put_dir
from stratos_shared.errors import ArtifactError


@pytest.mark.parametrize(
    "job_id, name",
    [
        ("job-1", "../job-2/data.jsonl"),
        ("job-1", "/etc/passwd"),
        ("job-1", "a/../../b"),
        ("..", "x"),
        ("job-1", ""),
        ("job-1", "a//b"),
        ("job-1", "sub/.hidden"),
        ("job 1", "x"),
    ],
)
def test_traversal_and_odd_names_are_refused(job_id: str, name: str) -> None:
    with pytest.raises(ArtifactError):
        artifact_key(job_id, name)


def test_valid_name_keeps_job_prefix() -> None:
    assert artifact_key("job-1", "data/train.jsonl") == "job-1/data/train.jsonl"


async def test_file_store_round_trip_and_uri_outside_store_refused(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "store")
    uri = await store.put_bytes("job-1", "data/train.jsonl", b'{"a": 1}\n')
    assert await store.get_bytes(uri) == b'{"a": 1}\n'
    outside = tmp_path / "secret.txt"
    outside.write_text("nope")
    with pytest.raises(ArtifactError):
        await store.get_bytes(outside.as_uri())
    with pytest.raises(ArtifactError):
        await store.get_bytes((tmp_path / "store" / "job-1" / ".." / ".." / "secret.txt").as_uri())


async def test_directory_artifact_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "adapter"
    (source / "nested").mkdir(parents=True)
    (source / "adapter_config.json").write_text("{}")
    (source / "nested" / "weights.bin").write_bytes(b"\x00\x01")
    store = FileArtifactStore(tmp_path / "store")
    uri = await put_dir(store, "job-1", "adapter.tar.gz", source)
    restored = await get_dir(store, uri, tmp_path / "restored")
    assert (restored / "adapter_config.json").read_text() == "{}"
    assert (restored / "nested" / "weights.bin").read_bytes() == b"\x00\x01"
