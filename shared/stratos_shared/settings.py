"""Settings every service shares, read once from the environment at start-up."""

from __future__ import annotations

import argparse
import os
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stratos_shared.contracts.base import TOKEN_ID_PATTERN
from stratos_shared.logs import LogFormat
from stratos_shared.policy import (
    DEFAULT_DENIED_HOSTS,
    DEFAULT_DENIED_NETWORKS,
    DEFAULT_SECRET_ENV_PREFIXES,
    InputPolicy,
    key_host_bindings,
    networks,
)


def default_home() -> Path:
    return Path.home() / ".stratos"


class StratosSettings(BaseSettings):
    """Common settings; each service subclasses this with its own fields."""

    model_config = SettingsConfigDict(env_prefix="STRATOS_", extra="ignore", populate_by_name=True)

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("NATS_URL", "STRATOS_NATS_URL"),
        description="Comma-separated NATS server URLs.",
    )
    nats_user: str | None = Field(default=None, description="NATS user name (per-service credentials).")
    nats_password: str | None = Field(default=None, description="NATS password for nats_user.")
    nats_password_file: Path | None = Field(
        default=None,
        description="A file holding the NATS password (a mounted secret, as docker compose gives each service); "
        "read once at start-up when nats_password is not set.",
    )
    nats_ca: Path | None = Field(
        default=None,
        description="CA file that signed the NATS server's TLS certificate: set, the service connects with TLS and "
        "verifies the server against it (a server on another host reaching `stratos up --tls-cert`).",
    )
    replicas: int = Field(default=1, ge=1, le=5, description="Replicas for streams, KV and object store.")
    home: Path = Field(default_factory=default_home, description="State directory: caches, traces, logs.")
    max_deliver: int = Field(default=5, ge=1, le=100, description="Deliveries before a message is dead-lettered.")
    ack_wait_s: float = Field(default=30.0, gt=0, le=3600, description="Lease on a message; extended while working.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Root log level.")
    log_format: LogFormat = Field(
        default="json", description="json: one object per line with trace/job ids; text: the same, readable."
    )
    trace_dir: Path | None = Field(default=None, description="Local span store when no OTLP endpoint is set.")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Serve Prometheus metrics here.")
    data_root: Path = Field(
        default_factory=Path.cwd,
        description="Job data files (task.path) must lie under this folder; default: where the service started.",
    )
    model_root: Path | None = Field(
        default=None, description="Local student model folders must lie under this folder; default: <home>/models."
    )
    max_data_file_mb: int = Field(default=256, ge=1, le=1_000_000, description="Largest task file admitted, MiB.")
    secret_env_prefixes: list[str] = Field(
        default=list(DEFAULT_SECRET_ENV_PREFIXES),
        description="api_key_ref 'env:NAME' must start with one of these (JSON list). STRATOS_* and NATS_* never.",
    )
    secrets_dirs: list[Path] | None = Field(
        default=None,
        description="api_key_ref 'file:/path' must lie in one of these (JSON list); default: <home>/secrets.",
    )
    teacher_deny_networks: list[str] = Field(
        default=list(DEFAULT_DENIED_NETWORKS),
        description="Teacher URLs may not reach these networks (JSON list of CIDRs): link-local and metadata.",
    )
    teacher_allow_networks: list[str] = Field(
        default_factory=list, description="When set, teacher URLs may reach only these networks (JSON list of CIDRs)."
    )
    teacher_deny_hosts: list[str] = Field(
        default=list(DEFAULT_DENIED_HOSTS),
        description="Teacher host names refused with their sub-domains (JSON list): cloud metadata services.",
    )
    teacher_key_hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Which hosts each key may be sent to (JSON object): reference or 'prefix*' -> host names or "
        '\'*.domain\', e.g. {"env:TEACHER_KEY_OPENAI": ["api.openai.com"]}. Empty: keys are not bound to hosts; '
        "once set, a reference no entry matches is refused.",
    )

    @model_validator(mode="after")
    def _password_from_file(self) -> StratosSettings:
        if self.nats_password is None and self.nats_password_file is not None:
            try:
                self.nats_password = self.nats_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"nats_password_file {self.nats_password_file}: {exc.strerror or exc}") from None
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"NATS URL {url!r} must start with nats://, tls://, ws:// or wss://")
        return value

    @field_validator("teacher_key_hosts")
    @classmethod
    def _key_hosts(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        key_host_bindings(value)
        return value

    @field_validator("teacher_deny_networks", "teacher_allow_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        networks(value)
        return value

    def input_policy(self) -> InputPolicy:
        """What job specs may reference on this service (its own NATS password is never a resolvable secret)."""
        return InputPolicy(
            data_root=self.data_root,
            model_root=self.model_root or self.home / "models",
            secret_env_prefixes=tuple(self.secret_env_prefixes),
            secret_dirs=tuple(self.secrets_dirs if self.secrets_dirs is not None else [self.home / "secrets"]),
            denied_networks=networks(self.teacher_deny_networks),
            allowed_networks=networks(self.teacher_allow_networks),
            denied_hosts=tuple(h.rstrip(".").lower() for h in self.teacher_deny_hosts),
            key_hosts=key_host_bindings(self.teacher_key_hosts),
            max_data_bytes=self.max_data_file_mb * 2**20,
        ).protecting(self.nats_password)

    def nats_tls(self) -> ssl.SSLContext | None:
        return nats_tls_context(self.nats_ca)

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",")]

    def resolved_trace_dir(self) -> Path:
        return self.trace_dir or self.home / "traces"

    def task_cache_dir(self) -> Path:
        """Where a stage keeps local copies of admitted task data, named by their SHA-256 (`jobcontext.task_of`)."""
        return self.home / "cache" / "tasks"


def nats_tls_context(ca_file: Path | str | None) -> ssl.SSLContext | None:
    """A client TLS context that trusts `ca_file` (and verifies the server's name), or None for plain NATS.

    A private CA rather than the system store: the control host's certificate is usually self-signed
    (README: "Adding a server on another host").
    """
    if not ca_file:
        return None
    return ssl.create_default_context(cafile=str(ca_file))


class TeacherClientSettings(StratosSettings):
    """What a service that asks teachers needs (teacher-eval, data-synth): one definition, the same defaults."""

    teacher_concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight per teacher.")
    teacher_timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    teacher_max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries of a failed request (429, 5xx, timeouts) before giving up on it."
    )

    teacher_cache_dir: Path | None = Field(
        default=None,
        description="The teachers' response cache (a restarted stage re-uses every answer it already paid for); "
        "default: <home>/cache/teachers.",
    )

    def resolved_teacher_cache_dir(self) -> Path:
        return self.teacher_cache_dir or self.home / "cache" / "teachers"


def default_instance() -> str:
    """host:pid: unique per process, even for N workers on one host."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerSettings(StratosSettings):
    """What a process that runs on a server (trainer, deployer) needs: which server, and how it beats."""

    server_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=TOKEN_ID_PATTERN,  # the events' ServerId: one subject token (no '.', '*', '>'), or the broker
        # would route this worker's heartbeats and work under another server's subjects
        description="The catalog server this process runs on (STRATOS_SERVER_ID, or --server-id): it takes "
        "only that server's work and heartbeats on stratos.hb.<server_id>.",
        examples=["a10-us-central"],
    )
    instance: str = Field(
        default_factory=default_instance,
        min_length=1,
        max_length=256,
        description="This process's name in its heartbeats and events (e.g. the pod name).",
    )
    heartbeat_s: float = Field(default=2.0, gt=0, le=60, description="Seconds between heartbeats.")
    fence_after_s: float = Field(
        default=8.0,
        gt=0,
        le=3600,
        description="Cut off from NATS this long (no heartbeat went through), the process stops its own work: "
        "by then the inventory may have declared its server down and moved its jobs.",
    )
    advertise_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=253,
        description="The address of this server that users and other servers reach: model servers bind to it and "
        "endpoints name it.",
    )


W = TypeVar("W", bound=WorkerSettings)


def load_worker_settings(cls: type[W], argv: Sequence[str], prog: str) -> W:
    """Flags, then the environment, validated once; a missing server id stops the process saying what to set."""
    worker_arguments(argv, prog)
    try:
        return cls()
    except ValidationError as invalid:
        problems = "; ".join(
            f"STRATOS_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in invalid.errors()
        )
        raise SystemExit(
            f"{prog}: {problems}. A worker runs on one catalog server: start it with --server-id ID "
            "(or STRATOS_SERVER_ID=ID), e.g. --server-id a10-us-central"
        ) from None


def worker_arguments(argv: Sequence[str], prog: str) -> None:
    """``python -m stratos_trainer --server-id ID [--advertise-host ADDR]``: the flags become the settings'
    environment (STRATOS_SERVER_ID, STRATOS_ADVERTISE_HOST), so flags and environment mean the same thing."""
    parser = argparse.ArgumentParser(prog=prog, description="A worker process of one server.")
    parser.add_argument("--server-id", help="the catalog server this process runs on (STRATOS_SERVER_ID)")
    parser.add_argument("--advertise-host", help="this server's address for endpoints (STRATOS_ADVERTISE_HOST)")
    args = parser.parse_args(list(argv))
    if args.server_id:
        os.environ["STRATOS_SERVER_ID"] = args.server_id
    if args.advertise_host:
        os.environ["STRATOS_ADVERTISE_HOST"] = args.advertise_host
