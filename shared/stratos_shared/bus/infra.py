"""Create (idempotently) the streams, KV buckets and object store Stratos needs."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from stratos_shared.bus.names import (
    ARTIFACTS_BUCKET,
    DEDUP_WINDOW_S,
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    JOBS_BUCKET,
    LIVENESS_BUCKET,
    PLACEMENTS_BUCKET,
    SERVERS_BUCKET,
    SPECS_BUCKET,
)


def events_stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        subjects=list(EVENTS_SUBJECTS),
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DEDUP_WINDOW_S,
        max_msg_size=1024 * 1024,
    )


def dlq_stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(name=DLQ_STREAM, subjects=[f"{DLQ_PREFIX}.>"], storage=StorageType.FILE, num_replicas=replicas)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Already exists with another config (e.g. an older version): bring it up to date, but keep its
        # replica count: a client started without STRATOS_REPLICAS must not shrink a cluster's R3 stream to R1.
        existing = await js.stream_info(config.name or "")
        config.num_replicas = existing.config.num_replicas
        await js.update_stream(config)


async def ensure_infrastructure(js: JetStreamContext, replicas: int = 1) -> None:
    """Streams, KV buckets and object store; safe to call from every service and client at start-up.

    `replicas` applies to what is created here; what already exists keeps its replication.
    """
    await _ensure_stream(js, events_stream_config(replicas))
    await _ensure_stream(js, dlq_stream_config(replicas))
    for bucket, history in (
        (JOBS_BUCKET, 1),
        (SPECS_BUCKET, 1),
        (SERVERS_BUCKET, 5),
        (PLACEMENTS_BUCKET, 5),
        (LIVENESS_BUCKET, 1),
    ):
        try:
            await js.create_key_value(
                KeyValueConfig(bucket=bucket, history=history, storage=StorageType.FILE, replicas=replicas)
            )
        except BadRequestError:  # exists with another replica count: use it as it is
            await js.key_value(bucket)
    try:
        await js.create_object_store(
            ARTIFACTS_BUCKET, config=ObjectStoreConfig(storage=StorageType.FILE, replicas=replicas)
        )
    except BadRequestError:
        await js.object_store(ARTIFACTS_BUCKET)
