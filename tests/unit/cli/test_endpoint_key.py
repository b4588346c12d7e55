"""`stratos key` reads only the key of the job's live deployment, whatever a deployer's event names."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from stratos_cli.endpointkey import EndpointKeyError, key_uri
from stratos_cli.views import job_view
from stratos_shared.artifacts import FileArtifactStore
from stratos_shared.bus.names import ARTIFACTS_BUCKET, server_artifacts_bucket, server_keys_bucket
from stratos_shared.jobs import JobState


def deployed(job_id: str, revision: int, api_key_uri: str | None) -> JobState:
    deployment = {
        "p50_ms": 1.0, "p95_ms": 1.0, "ttft_p50_ms": 1.0, "accuracy": 1.0, "backend": "cpu",
        "server_id": "s1", "revision": revision, "api_key_uri": api_key_uri,
    }  # fmt: skip
    return JobState(
        job_id=job_id, status="completed", endpoint="http://10.0.0.7:8000/v1", results={"deployment": deployment}
    )


def keys_of(store: FileArtifactStore, server_id: str) -> FileArtifactStore:
    return store.in_bucket(server_keys_bucket(server_id))


def test_the_key_of_the_deployed_revision_is_read_and_status_points_at_it(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    uri = keys_of(store, "s1").uri_for("j1", "deployment/r2-api-key")
    assert key_uri(deployed("j1", 2, uri), store) == uri
    console = Console(width=200, record=True)
    console.print(job_view(deployed("j1", 2, uri)))
    assert "http://10.0.0.7:8000/v1 (key: stratos key j1)" in console.export_text()


@pytest.mark.parametrize(
    "named",
    [
        "deployment/r1-api-key",  # an earlier revision's key: a stale deployer's
        "report/report.md",  # any other artifact of the job
    ],
)
def test_a_key_name_other_than_the_deployed_revisions_is_refused(tmp_path: Path, named: str) -> None:
    store = FileArtifactStore(tmp_path)
    with pytest.raises(EndpointKeyError, match="names a key at"):
        key_uri(deployed("j1", 2, keys_of(store, "s1").uri_for("j1", named)), store)


def test_another_jobs_key_is_refused(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    with pytest.raises(EndpointKeyError, match="names a key at"):
        key_uri(deployed("j1", 2, keys_of(store, "s1").uri_for("j2", "deployment/r2-api-key")), store)


@pytest.mark.parametrize("bucket", [ARTIFACTS_BUCKET, server_artifacts_bucket("s1"), server_keys_bucket("s2")])
def test_a_key_outside_the_deployed_servers_key_bucket_is_refused(tmp_path: Path, bucket: str) -> None:
    """The right job and revision, but a bucket others may write (or another server's keys): not this key."""
    store = FileArtifactStore(tmp_path)
    with pytest.raises(EndpointKeyError, match="names a key at"):
        key_uri(deployed("j1", 2, store.in_bucket(bucket).uri_for("j1", "deployment/r2-api-key")), store)


def test_no_endpoint_or_no_key_says_so(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    with pytest.raises(EndpointKeyError, match="needs no key"):
        key_uri(deployed("j1", 1, None), store)
    with pytest.raises(EndpointKeyError, match="is not serving"):
        key_uri(JobState(job_id="j1", status="running"), store)
