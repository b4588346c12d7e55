"""`stratos export`: fetch a job's trained model from the artifact store (the export itself is shared code)."""

from __future__ import annotations

from pathlib import Path

from stratos_cli import client
from stratos_shared.artifacts import NatsArtifactStore, get_dir


async def download_trained(model_uri: str, dest: Path, nats_url: str | None) -> Path:
    """Unpack the trained model archive (adapter or full model) at ``model_uri`` into ``dest``."""
    async with client.connect(nats_url) as (_, js):
        return await get_dir(NatsArtifactStore(js), model_uri, dest)
