"""Names of the JetStream streams, KV buckets and object store, in one place.

Subjects:
- ``stratos.evt.<entity>.<verb>``: events (stream ``STRATOS_EVENTS``).
- ``stratos.cmd.<entity>.<verb>``: operator commands (same stream).
- ``stratos.dlq.<original subject>``: dead letters (stream ``STRATOS_DLQ``).
- ``stratos.hb.<server_id>``: heartbeats (core NATS, not persisted).
- ``stratos.work.<kind>.<server_id>``: work assigned to one server's workers (same stream as events;
  each server's workers pull only their own subject through per-server durable consumers).
"""

from __future__ import annotations

EVENTS_STREAM = "STRATOS_EVENTS"
WORK_PREFIX = "stratos.work"
EVENTS_SUBJECTS = ["stratos.evt.>", "stratos.cmd.>", f"{WORK_PREFIX}.>"]
DLQ_STREAM = "STRATOS_DLQ"
DLQ_PREFIX = "stratos.dlq"
HEARTBEAT_PREFIX = "stratos.hb"

JOBS_BUCKET = "stratos-jobs"
"""Job state projected from events (stage, history, current server): read by the CLI."""
SPECS_BUCKET = "stratos-specs"
"""Accepted job specs, written once by the selector before any stage runs."""
SERVERS_BUCKET = "stratos-servers"
"""The server inventory: one key per server with its spec and status."""
LIVENESS_BUCKET = "stratos-liveness"
"""Last heartbeat per server and worker, so a restarted inventory still knows who fell silent."""
PLACEMENTS_BUCKET = "stratos-placements"
"""Where each active job is placed, with compare-and-set so two decisions never double-book."""
ARTIFACTS_BUCKET = "stratos-artifacts"
"""Object store for datasets, checkpoints, adapters and reports."""

DEDUP_WINDOW_S = 2 * 3600.0
"""JetStream de-duplicates a re-published event id within this window."""


def dlq_subject(subject: str) -> str:
    return f"{DLQ_PREFIX}.{subject}"


def server_token(server_id: str) -> str:
    """A server id as one subject token and a valid consumer name (ids may hold dots; those may not)."""
    return server_id.replace(".", "_")


def heartbeat_subject(server_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{server_token(server_id)}"


def work_subject(kind: str, server_id: str) -> str:
    """Where one server's workers find their work: ``stratos.work.train.<server>``, ``stratos.work.deploy.<server>``."""
    return f"{WORK_PREFIX}.{kind}.{server_token(server_id)}"
