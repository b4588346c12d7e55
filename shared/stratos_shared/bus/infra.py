"""Create (idempotently) the streams, KV buckets and object store Stratos needs, or wait for them to exist."""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

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
    server_buckets,
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


log = logging.getLogger("stratos.bus")

BUCKETS = (JOBS_BUCKET, SPECS_BUCKET, SERVERS_BUCKET, PLACEMENTS_BUCKET, LIVENESS_BUCKET)


async def await_infrastructure(js: JetStreamContext, server_id: str | None = None, timeout_s: float = 300.0) -> None:
    """Wait until the control plane has created the streams, buckets and object store, and `server_id`'s own
    object stores (a server's workers may not create or change them: their credential cannot), re-checking every
    second and saying once what it waits for."""
    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        try:
            for stream in (EVENTS_STREAM, DLQ_STREAM):
                await js.stream_info(stream)
            for bucket in BUCKETS:
                await js.key_value(bucket)
            for store in (ARTIFACTS_BUCKET, *(server_buckets(server_id) if server_id else ())):
                await js.object_store(store)
            return
        except (NotFoundError, nats.errors.Error, TimeoutError) as missing:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the control plane's streams and buckets did not appear within {timeout_s:.0f} s ({missing}); "
                    "start the control services first (`stratos up`); a server's own object stores are made by the "
                    "inventory for the servers in its catalog"
                ) from missing
            if not said:
                log.info("waiting for the control plane to create the streams and buckets (%s)", missing)
                said = True
            await asyncio.sleep(1.0)


async def ensure_server_buckets(js: JetStreamContext, server_id: str, replicas: int = 1) -> None:
    """A server's two object stores (its artifacts, its endpoint keys), made by the control plane (the inventory,
    for every server of its catalog) since the server's own credential may create no stream."""
    for bucket in server_buckets(server_id):
        await _ensure_object_store(js, bucket, replicas)


async def _ensure_object_store(js: JetStreamContext, bucket: str, replicas: int) -> None:
    try:
        await js.create_object_store(bucket, config=ObjectStoreConfig(storage=StorageType.FILE, replicas=replicas))
    except BadRequestError:  # exists with another replica count: use it as it is
        await js.object_store(bucket)


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
    await _ensure_object_store(js, ARTIFACTS_BUCKET, replicas)
