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
"""The control plane's object store: each job's data snapshot (selector) and datasets (data-synth)."""
SERVER_ARTIFACTS_PREFIX = "stratos-srv-"
"""Each server's own object store, ``stratos-srv-<server>``: what its workers write (checkpoints, models, reports)."""
SERVER_KEYS_PREFIX = "stratos-key-"
"""Each server's private object store, ``stratos-key-<server>``: its endpoints' bearer keys."""

DEDUP_WINDOW_S = 2 * 3600.0
"""JetStream de-duplicates a re-published event id within this window."""


def dlq_subject(subject: str) -> str:
    return f"{DLQ_PREFIX}.{subject}"


def server_token(server_id: str) -> str:
    """A server id as one subject token and a valid consumer name (ids may hold dots; those may not)."""
    return server_id.replace(".", "_")


def server_artifacts_bucket(server_id: str) -> str:
    """The object store only `server_id`'s workers write and every server reads (to resume and serve a moved job).

    A server id is ``[A-Za-z0-9][A-Za-z0-9_-]{0,127}``, so ``OBJ_stratos-srv-<id>`` is always a valid stream name
    (at most 144 characters, no dot, space or wildcard); the two prefixes differ before the id, so no server's
    artifact bucket is ever another server's key bucket (``stratos-srv-a-keys`` is server ``a-keys``'s, not ``a``'s).
    """
    return f"{SERVER_ARTIFACTS_PREFIX}{server_token(server_id)}"


def server_keys_bucket(server_id: str) -> str:
    """The object store only `server_id`'s workers and the control plane read: its endpoints' keys."""
    return f"{SERVER_KEYS_PREFIX}{server_token(server_id)}"


def server_buckets(server_id: str) -> tuple[str, str]:
    """Both object stores of a server: its artifacts and its keys."""
    return server_artifacts_bucket(server_id), server_keys_bucket(server_id)


def object_stream(bucket: str) -> str:
    """The JetStream stream behind an object store bucket."""
    return f"OBJ_{bucket}"


def liveness_subject(server_id: str) -> str:
    """Where the inventory writes a server's liveness record: what `stratos server join` watches for its beats."""
    return f"$KV.{LIVENESS_BUCKET}.{server_token(server_id)}"


def inbox_prefix(user: str | None) -> str:
    """A NATS user's reply subjects (``_INBOX.<user>.…``): a server's credential may subscribe to its own only, so
    no server hears another client's replies (KV reads, object chunks, publish acks)."""
    return f"_INBOX.{user}" if user else "_INBOX"


def heartbeat_subject(server_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{server_token(server_id)}"


def work_subject(kind: str, server_id: str) -> str:
    """Where one server's workers find their work: ``stratos.work.train.<server>``, ``stratos.work.deploy.<server>``."""
    return f"{WORK_PREFIX}.{kind}.{server_token(server_id)}"
