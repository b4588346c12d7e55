"""`stratos key JOB`: the bearer key the job's endpoint requires, read from the job's artifacts."""

from __future__ import annotations

from urllib.parse import urlparse

from nats.js import JetStreamContext

from stratos_cli import client
from stratos_shared.artifacts import ArtifactStore, NatsArtifactStore
from stratos_shared.bus.names import server_keys_bucket
from stratos_shared.errors import StratosError
from stratos_shared.jobs import JobState
from stratos_shared.layout import endpoint_key


class EndpointKeyError(StratosError):
    """The job has no keyed endpoint, or its record names a key that is not this job's."""


def key_uri(state: JobState, store: ArtifactStore) -> str:
    """Where the live deployment's key is: the ledger's deployment, checked against the job's own key name.

    The URI comes from a server's event; a deployer may only point at the key of this job at the deployed
    revision, in its own server's key bucket, never at another job's artifact (which this command would otherwise
    print).
    """
    deployment = state.results.deployment
    if state.endpoint is None or deployment is None:
        raise EndpointKeyError(f"job {state.job_id!r} is not serving (status: {state.status})")
    if deployment.api_key_uri is None:
        raise EndpointKeyError(f"job {state.job_id!r}'s endpoint {state.endpoint} needs no key")
    keys = store.in_bucket(server_keys_bucket(deployment.server_id))  # the deployed server's private bucket
    expected = keys.uri_for(state.job_id, endpoint_key(deployment.revision))
    if deployment.api_key_uri != expected:
        raise EndpointKeyError(
            f"job {state.job_id!r}'s deployment names a key at {deployment.api_key_uri[:120]!r}, not {expected}"
        )
    return expected


async def read_key(state: JobState, js: JetStreamContext) -> str:
    """The key of the job's live deployment, as text, read from its server's key bucket."""
    uri = key_uri(state, NatsArtifactStore(js))
    keys = NatsArtifactStore(js, urlparse(uri).netloc)  # a key bucket is read only by a store of that bucket
    return (await keys.get_bytes(uri)).decode().strip()


async def fetch_key(state: JobState, nats_url: str | None) -> str:
    """The key, as text."""
    async with client.connect(nats_url) as (_, js):
        return await read_key(state, js)
