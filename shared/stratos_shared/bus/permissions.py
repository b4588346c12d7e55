"""Who may publish what: per-service NATS users for the embedded stack and docker-compose.

Each service may publish only its own events (plus dead letters, JetStream API,
KV and object-store traffic it needs); a test checks this table against what
each service's handlers declare, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from stratos_shared.contracts.events import (
    DataProgress,
    DataReady,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobSubmitted,
    ModelDeployed,
    ModelTrained,
    ServerChosen,
    ServerDown,
    ServerDownRequested,
    ServerRegistered,
    ServerUpRequested,
    StudentChosen,
    TeacherChosen,
    TrainingProgress,
)

EVENT_PUBLISHERS: dict[str, list[str]] = {
    "inventory": [ServerRegistered.SUBJECT, ServerDown.SUBJECT],
    "selector": [ServerChosen.SUBJECT, JobRejected.SUBJECT, JobFailed.SUBJECT],
    "teacher-eval": [TeacherChosen.SUBJECT, JobFailed.SUBJECT],
    "data-synth": [DataReady.SUBJECT, DataProgress.SUBJECT, JobFailed.SUBJECT],
    "trainer": [StudentChosen.SUBJECT, TrainingProgress.SUBJECT, ModelTrained.SUBJECT, JobFailed.SUBJECT],
    "deployer": [ModelDeployed.SUBJECT, JobCompleted.SUBJECT, JobFailed.SUBJECT],
    "cli": [JobSubmitted.SUBJECT, JobCancelRequested.SUBJECT, ServerDownRequested.SUBJECT, ServerUpRequested.SUBJECT],
    "agent": ["stratos.hb.*"],
}
"""The event subjects each NATS user may publish; everything else under stratos.evt/cmd is denied."""

INFRASTRUCTURE = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>", "stratos.dlq.>", "_INBOX.>"]
"""Subjects every service needs: JetStream API and acks, KV and object store, dead letters, replies."""


@dataclass(frozen=True)
class Credential:
    user: str
    password: str


def make_credentials() -> dict[str, Credential]:
    return {user: Credential(user, secrets.token_urlsafe(24)) for user in EVENT_PUBLISHERS}


def server_config(credentials: dict[str, Credential]) -> str:
    """An `authorization` block for nats-server: one user per service with its publish allow-list."""
    users = []
    for user, credential in credentials.items():
        publish = EVENT_PUBLISHERS[user] + ([] if user == "agent" else INFRASTRUCTURE)
        subscribe = ["stratos.>", "_INBOX.>", "$KV.>", "$O.>", "$JS.>"] if user != "agent" else ["_INBOX.>"]
        entry = {
            "user": user,
            "password": credential.password,
            "permissions": {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}},
        }
        users.append("    " + json.dumps(entry))  # nats-server's config format accepts JSON objects
    return "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"


def write_auth(home: Path) -> tuple[Path, dict[str, Credential]]:
    """Fresh credentials and the server config under `home` (mode 0600: they are secrets)."""
    credentials = make_credentials()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "nats-auth.conf"
    config.write_text(server_config(credentials), encoding="utf-8")
    config.chmod(0o600)
    store = home / "credentials.json"
    store.write_text(json.dumps({u: c.password for u, c in credentials.items()}), encoding="utf-8")
    store.chmod(0o600)
    return config, credentials
