"""Who may publish what: per-service NATS users for the embedded stack and docker-compose.

Each service may publish only its own events (plus dead letters, JetStream API,
KV and object-store traffic it needs): the table is made from what each service's
handlers declare (`stratos_shared.bus.wiring_table`), so the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stratos_shared.bus.names import (
    ARTIFACTS_BUCKET,
    EVENTS_STREAM,
    HEARTBEAT_PREFIX,
    JOBS_BUCKET,
    SPECS_BUCKET,
    heartbeat_subject,
    inbox_prefix,
    liveness_subject,
    object_stream,
    server_artifacts_bucket,
    server_keys_bucket,
    server_token,
)
from stratos_shared.bus.wiring import ServiceWiring
from stratos_shared.bus.wiring_table import SERVICES
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    FROM_CONTROL,
    FROM_SERVER,
    FromServer,
    JobCancelRequested,
    JobSubmitted,
    ServerDownRequested,
    ServerUpRequested,
)


def control_subject(cls: type[Event]) -> str:
    """Where a control service publishes `cls`: its subject (a job failure: the control one, no server's)."""
    return f"{cls.SUBJECT}.{FROM_CONTROL}" if issubclass(cls, FromServer) else cls.SUBJECT


def server_subject(cls: type[FromServer], server_id: str = "*") -> str:
    """Where the workers of `server_id` (any server: ``*``) publish `cls`."""
    return f"{cls.SUBJECT}.{FROM_SERVER}.{server_token(server_id) if server_id != '*' else '*'}"


def publish_subjects(service: ServiceWiring) -> list[str]:
    """Where `service` publishes what it declares: a worker on subjects naming a server (and its heartbeats), a
    control service on its events' subjects (a failure on the control one, work on ``<subject>.<server>``)."""
    if service.runs == "server":
        worker = [server_subject(cls) for cls in service.publishes if issubclass(cls, FromServer)]
        return [*worker, f"{HEARTBEAT_PREFIX}.*"]
    return [
        control_subject(cls) if issubclass(cls, FromServer) else f"{cls.SUBJECT}.*" if routed(cls) else cls.SUBJECT
        for cls in service.publishes
    ]


def routed(cls: type[Event]) -> bool:
    """Whether `cls` travels on a subject naming the server it is for (an assignment: ``<subject>.<server>``)."""
    return hasattr(cls, "routed_subject") and not issubclass(cls, FromServer)


WORKER_EVENTS: tuple[type[FromServer], ...] = tuple(
    cls for s in SERVICES if s.runs == "server" for cls in s.publishes if issubclass(cls, FromServer)
)
"""What a server's workers publish (on subjects naming their server), from their handlers' declarations."""

CLI_PUBLISHES: tuple[type[Event], ...] = (JobSubmitted, JobCancelRequested, ServerDownRequested, ServerUpRequested)
"""What the `stratos` command publishes (it has no handlers to declare it)."""
WORKER_SIGNALS: tuple[type[Event], ...] = tuple(
    dict.fromkeys(cls for s in SERVICES if s.runs == "server" for cls in s.signals)
)
"""What a server's workers hear as core-NATS signals (the trainer's re-plan and cancel), from their declarations:
its credential may subscribe to these subjects and to its own replies, nothing else."""

EVENT_PUBLISHERS: dict[str, list[str]] = {
    **{service.name: publish_subjects(service) for service in SERVICES},
    "cli": [cls.SUBJECT for cls in CLI_PUBLISHES],
    "agent": ["stratos.hb.*"],
}
"""The event subjects each NATS user may publish, made from the services' declarations (the wiring table);
everything else under stratos.evt/cmd is denied. The shared ``trainer`` and ``deployer`` users may speak for any
server; a server's own credential (`server_permissions`) only for itself."""

INFRASTRUCTURE = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>", "stratos.dlq.>", "_INBOX.>"]
"""Subjects every service needs: JetStream API and acks, KV and object store, dead letters, replies."""


@dataclass(frozen=True)
class Credential:
    user: str
    password: str


SERVER_USER_PREFIX = "server-"
"""Each server's workers log in as ``server-<id>``: one credential per machine, as a real deployment has."""


def server_consumers(server_id: str) -> list[str]:
    """The durable consumers a server's workers pull from, as the workers' handlers declare them."""
    return [consumer.named_for(server_id) for s in SERVICES if s.runs == "server" for consumer in s.consumers]


def server_jetstream(server_id: str, servers: Iterable[str] = ()) -> list[str]:
    """The JetStream API a server's workers need, and nothing more.

    Pull, ack and inspect its own durable consumers; read streams' info, the specs and jobs buckets (get and
    watch), the control plane's object store and every known server's (`servers`: a moved job resumes from the
    checkpoints and serves the model its previous server wrote); write and purge only its own two object stores
    (checkpoints, models, reports; its endpoints' keys, which no other server may read). Not: creating, changing,
    purging or deleting any other stream, deleting any consumer of the events stream, binding a control service's
    or another server's consumer, writing a KV bucket (no ``$KV.>``), or another bucket's objects, which is what a
    wider credential could use to lose every job's events or artifacts, take the selector's submissions or mark
    another job completed.
    """
    api = "$JS.API"
    own = []
    for consumer in server_consumers(server_id):
        for verb in ("MSG.NEXT", "INFO", "DURABLE.CREATE", "CREATE"):
            own.append(f"{api}.CONSUMER.{verb}.{EVENTS_STREAM}.{consumer}")
        own += [f"{api}.CONSUMER.CREATE.{EVENTS_STREAM}.{consumer}.>", f"$JS.ACK.{EVENTS_STREAM}.{consumer}.>"]
    reads = [f"{api}.INFO", f"{api}.STREAM.INFO.*", f"{api}.STREAM.NAMES"]
    # A KV watch and an object read are ordered (ephemeral) consumers on those streams, which nats-py deletes when
    # done. (A NATS wildcard is a whole subject token, so each stream is named: no `OBJ_stratos-srv-*`.)
    mine = (server_artifacts_bucket(server_id), server_keys_bucket(server_id))
    buckets = {ARTIFACTS_BUCKET, *mine, *(server_artifacts_bucket(s) for s in servers)}
    streams = [*(f"KV_{bucket}" for bucket in (SPECS_BUCKET, JOBS_BUCKET)), *map(object_stream, sorted(buckets))]
    for stream in streams:
        reads += [f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>", f"{api}.STREAM.MSG.GET.{stream}"]
        reads += [f"{api}.CONSUMER.CREATE.{stream}", f"{api}.CONSUMER.CREATE.{stream}.>"]
        reads += [f"{api}.CONSUMER.DELETE.{stream}.*", f"{api}.CONSUMER.INFO.{stream}.*"]
    # An overwrite purges the object's old chunks (a filtered purge); only its own streams, so no purge of it can
    # reach another server's or the control plane's artifacts.
    writes = [f"$O.{bucket}.>" for bucket in mine] + [f"{api}.STREAM.PURGE.{object_stream(b)}" for b in mine]
    return own + reads + writes + ["$JS.FC.>", "stratos.dlq.>"]


def server_permissions(server_id: str, servers: Iterable[str] = ()) -> list[str]:
    """The publish allow list of a server's credential: what it does not name is refused.

    It may publish its own heartbeats and its workers' events on subjects that name it, and use the JetStream
    API only as `server_jetstream` says; it may not beat or speak for another server (nor declare a failure as a
    control service), nor pull from, redefine or delete any other consumer: that would take its work. No reply
    subject (``_INBOX``): its workers answer no request, so they cannot forge another client's reply.
    """
    allow = [heartbeat_subject(server_id)]
    allow += [server_subject(cls, server_id) for cls in WORKER_EVENTS]
    return sorted(set(allow)) + server_jetstream(server_id, servers)


def server_subscriptions(server_id: str) -> list[str]:
    """The subscribe allow list of a server's credential: its own replies (``_INBOX.server-<id>.>``: JetStream
    deliveries, KV and object reads, publish acks, all derived from the connection's inbox prefix), the signals
    its workers declare (`WORKER_SIGNALS`) and its own liveness record (what `stratos server join` watches).
    Not another client's replies, object chunks, KV updates or events."""
    signals = sorted({cls.SUBJECT for cls in WORKER_SIGNALS})
    return [f"{inbox_prefix(SERVER_USER_PREFIX + server_id)}.>", *signals, liveness_subject(server_id)]


def make_credentials(servers: list[str] | None = None) -> dict[str, Credential]:
    users = [*EVENT_PUBLISHERS, *(f"{SERVER_USER_PREFIX}{s}" for s in servers or [])]
    return {user: Credential(user, secrets.token_urlsafe(24)) for user in users}


def server_ids(credentials: Iterable[str]) -> list[str]:
    """The servers among these users (``server-<id>``)."""
    return sorted(u.removeprefix(SERVER_USER_PREFIX) for u in credentials if u.startswith(SERVER_USER_PREFIX))


def server_config(credentials: dict[str, Credential]) -> str:
    """An `authorization` block for nats-server: one user per service and per server, with publish and subscribe
    lists. Each server may read every listed server's artifacts, so adding one rewrites (and reloads) them all."""
    users = []
    servers = server_ids(credentials)
    for user, credential in credentials.items():
        if user.startswith(SERVER_USER_PREFIX):
            server_id = user.removeprefix(SERVER_USER_PREFIX)
            publish = server_permissions(server_id, servers)
            subscribe = server_subscriptions(server_id)
        else:
            publish = EVENT_PUBLISHERS[user] + ([] if user == "agent" else INFRASTRUCTURE)
            subscribe = ["stratos.>", "_INBOX.>", "$KV.>", "$O.>", "$JS.>"] if user != "agent" else ["_INBOX.>"]
        rules: dict[str, list[str]] = {"allow": publish}
        entry = {
            "user": user,
            "password": credential.password,
            "permissions": {"publish": rules, "subscribe": {"allow": subscribe}},
        }
        users.append("    " + json.dumps(entry))  # nats-server's config format accepts JSON objects
    return "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"


def write_auth(home: Path, servers: list[str] | None = None) -> tuple[Path, dict[str, Credential]]:
    """Fresh credentials (one per service, one per server) and the server config under `home` (mode 0600)."""
    credentials = make_credentials(servers or [])
    return save_auth(home, credentials), credentials


AUTH_CONFIG = "nats-auth.conf"
CREDENTIALS_FILE = "credentials.json"


def save_auth(home: Path, credentials: dict[str, Credential]) -> Path:
    """Write nats-server's `authorization` config and the password store (both mode 0600); returns the config.

    The store is what `stratos server add/remove` start from, so a change rewrites the config with every other
    user's password as it was: their connections survive nats-server's reload.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / AUTH_CONFIG
    _write_private(config, server_config(credentials))
    _write_private(home / CREDENTIALS_FILE, json.dumps({u: c.password for u, c in credentials.items()}))
    return config


def load_credentials(home: Path) -> dict[str, Credential]:
    """The credentials `save_auth` stored under `home` (empty when there are none: a stack without auth)."""
    try:
        stored = json.loads((home / CREDENTIALS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {user: Credential(user, password) for user, password in stored.items()}


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, never readable by others even for an instant."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)  # atomic: nats-server reloading at that moment reads the old file or the new, never half


USERS_FOLDER = "users"
"""Under the folder `main` writes: one file per user holding its password (a service's STRATOS_NATS_PASSWORD_FILE)."""


def write_user_files(folder: Path, credentials: dict[str, Credential], owner: int | None = None) -> None:
    """Each user's password in ``<folder>/users/<user>`` (mode 0600, owned by `owner` when given: the uid the
    services run as, when this runs as root beside a nats-server that needs the config)."""
    users = folder / USERS_FOLDER
    users.mkdir(parents=True, exist_ok=True)
    for user, credential in credentials.items():
        path = users / user
        _write_private(path, credential.password)
        if owner is not None:
            os.chown(path, owner, owner)
    if owner is not None:
        os.chown(users, owner, owner)


def main(argv: list[str] | None = None) -> None:
    """``python -m stratos_shared.bus.permissions --out DIR --servers ID...``: the users of a nats-server started
    elsewhere (docker compose's ``nats-auth`` service): DIR/nats-auth.conf for nats-server to include, and
    DIR/users/<user> with each password. Passwords already in DIR are kept, so running it again (every
    ``docker compose up``) changes nobody's: a service that restarts later still logs in."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stratos_shared.bus.permissions", description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for nats-auth.conf and users/")
    parser.add_argument("--servers", nargs="*", default=[], help="catalog servers with workers (server-<id> users)")
    parser.add_argument("--owner", type=int, help="uid to own the password files (the services' user)")
    args = parser.parse_args(argv)
    kept = load_credentials(args.out)
    credentials = {user: kept.get(user, fresh) for user, fresh in make_credentials(args.servers).items()}
    save_auth(args.out, credentials)
    write_user_files(args.out, credentials, args.owner)


if __name__ == "__main__":
    main()
