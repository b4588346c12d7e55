"""`stratos server add/remove`: hand a server on another host its own NATS credential, or take it back.

The running embedded nats-server keeps its users in `<home>/nats-auth.conf`; a change rewrites that file from
`<home>/credentials.json` (every other user's password as it was) and sends nats-server SIGHUP. nats-server
reloads `authorization` in place: connections of unchanged users stay up, connections of a removed or replaced
user are closed, and the new user can log in. Why not decentralized JWT auth: see docs/architecture.md (Trust
model).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import nats
import nats.errors
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stratos_cli.stack import StackState, alive
from stratos_shared.bus.permissions import SERVER_USER_PREFIX, Credential, load_credentials, save_auth
from stratos_shared.contracts.base import ServerId
from stratos_shared.contracts.parsing import PATTERN_HINTS, describe_validation_error, valid_server_id
from stratos_shared.errors import StratosError
from stratos_shared.settings import nats_tls_context


class MembershipError(StratosError):
    """A server could not be added, removed or joined; the message says why and what to do."""


class ServerCredentialFile(BaseModel):
    """What `stratos server add` writes and `stratos server join` reads: one server's way into the bus.

    Unknown fields are ignored, so a file written by a newer `stratos` still joins with an older one.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    server_id: ServerId = Field(description="The catalog server these workers run as.")
    user: str = Field(description="The NATS user: server-<server_id>.")
    password: str = Field(min_length=1, description="Its password (minted by `stratos server add`).")
    nats_url: str = Field(description="Where the control host's NATS takes clients (comma-separated for a cluster).")
    ca: str | None = Field(default=None, description="PEM of the CA that signed NATS's TLS certificate, if TLS.")

    @field_validator("nats_url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://")):
                raise ValueError(f"{url!r} must start with nats:// or tls://")
        return value

    @model_validator(mode="after")
    def _user_of_server(self) -> ServerCredentialFile:
        if self.user != SERVER_USER_PREFIX + self.server_id:
            raise ValueError(f"user must be {SERVER_USER_PREFIX + self.server_id!r}, not {self.user!r}")
        return self

    @classmethod
    def read(cls, path: Path) -> ServerCredentialFile:
        """The file at `path`, or a one-line MembershipError saying what is wrong with it."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MembershipError(f"credential file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MembershipError(f"credential file {path} cannot be read: {type(exc).__name__}") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise MembershipError(
                    f"credential file {path} is not JSON (write it with `stratos server add`)"
                ) from None
            problems = "; ".join(describe_validation_error(exc))
            raise MembershipError(f"credential file {path} is not a server credential: {problems}") from None

    def write(self, path: Path, force: bool = False) -> None:
        """Write it readable by its owner only; an existing file is kept unless `force`."""
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise MembershipError(f"{path} exists; choose another --out or pass --force to overwrite it") from None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.model_dump_json(indent=2, exclude_none=True) + "\n")
        path.chmod(0o600)  # an overwritten file keeps its old mode otherwise


def running_stack(home: Path) -> StackState:
    """The embedded stack under `home` with its own nats-server and per-user auth, or why there is none."""
    state = StackState.load(home)
    nats_pids = [pid for name, pid in (state.pids if state else {}).items() if name.startswith("nats")]
    if state is None or not any(alive(pid) for pid in nats_pids):
        raise MembershipError(f"no embedded stack runs under {home}: start one with `stratos up --listen 0.0.0.0`")
    if not state.auth:
        raise MembershipError("the stack runs without per-user auth: restart it with `stratos down && stratos up`")
    return state


def check_server_id(server_id: str) -> None:
    if not valid_server_id(server_id):
        raise MembershipError(f"{server_id!r} is not a server id: {PATTERN_HINTS['server_id']}")


def reload_nats(state: StackState) -> None:
    """SIGHUP every nats-server of the stack: each re-reads its config (the users) without restarting."""
    for name, pid in state.pids.items():
        if name.startswith("nats") and alive(pid):
            os.kill(pid, signal.SIGHUP)


async def can_log_in(url: str, credential: Credential, ca_file: str | None) -> bool:
    """Whether NATS at `url` accepts `credential` now (a refused login is False, an unreachable NATS raises)."""

    async def quiet(_: Exception) -> None:
        return None

    try:
        nc = await nats.connect(
            servers=url.split(","),
            user=credential.user,
            password=credential.password,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
            tls=nats_tls_context(ca_file),
        )
    except nats.errors.Error as exc:
        if "authorization" in str(exc).lower():
            return False
        raise
    await nc.close()
    return True


async def await_login(
    url: str, credential: Credential, accepted: bool, ca_file: str | None, timeout_s: float = 10.0
) -> None:
    """Wait until nats-server's reload took effect: `credential` is accepted (or refused, `accepted=False`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, TimeoutError, nats.errors.Error):
            if await can_log_in(url, credential, ca_file) == accepted:
                return
        if time.monotonic() > deadline:
            what = "accept" if accepted else "refuse"
            raise MembershipError(f"NATS did not {what} {credential.user} within {timeout_s:.0f} s of the reload")
        await asyncio.sleep(0.1)


async def catalog_ids(url: str) -> list[str]:
    """The server ids the inventory registered from its catalog (the `stratos-servers` bucket)."""
    from stratos_cli import client
    from stratos_shared.bus.kv import TypedKV
    from stratos_shared.bus.names import SERVERS_BUCKET
    from stratos_shared.contracts.servers import ServerRecord

    async with client.connect(url) as (_, js):
        records = await TypedKV(await js.key_value(SERVERS_BUCKET), ServerRecord).items()
    return sorted(record.spec.id for record in records.values())


def add_server(home: Path, server_id: str, out: Path, force: bool = False) -> ServerCredentialFile:
    """Mint `server-<id>`'s password, reload NATS, confirm the login works, and write the credential file."""
    check_server_id(server_id)
    state = running_stack(home)
    if server_id in state.servers:
        raise MembershipError(f"{server_id} already runs workers in this stack (`stratos server kill` stops them)")
    known = asyncio.run(catalog_ids(state.nats_url))
    if server_id not in known:
        raise MembershipError(f"{server_id!r} is not in the catalog; its servers: {', '.join(known) or 'none yet'}")
    if out.exists() and not force:
        raise MembershipError(f"{out} exists; choose another --out or pass --force to overwrite it")
    if not out.parent.is_dir():
        raise MembershipError(f"cannot write {out}: folder {out.parent} does not exist")
    credentials = load_credentials(home)
    user = SERVER_USER_PREFIX + server_id
    credentials[user] = Credential(user, secrets.token_urlsafe(24))
    save_auth(home, credentials)
    reload_nats(state)
    ca = state.nats_ca or os.environ.get("STRATOS_NATS_CA")
    asyncio.run(await_login(state.nats_url, credentials[user], accepted=True, ca_file=ca))
    granted = ServerCredentialFile(
        server_id=server_id,
        user=user,
        password=credentials[user].password,
        nats_url=state.advertise_url or state.nats_url,
        ca=Path(ca).read_text(encoding="utf-8") if ca else None,
    )
    granted.write(out, force)
    return granted


def remove_server(home: Path, server_id: str) -> None:
    """Drop `server-<id>` from NATS's users and reload: its credential is refused, its connections closed."""
    check_server_id(server_id)
    state = running_stack(home)
    if server_id in state.servers:
        raise MembershipError(f"{server_id} runs workers in this stack (`stratos server kill` stops them)")
    credentials = load_credentials(home)
    user = SERVER_USER_PREFIX + server_id
    removed = credentials.pop(user, None)
    if removed is None:
        added = sorted(u.removeprefix(SERVER_USER_PREFIX) for u in credentials if u.startswith(SERVER_USER_PREFIX))
        others = [s for s in added if s not in state.servers]
        raise MembershipError(
            f"{server_id!r} has no credential to remove; added servers: {', '.join(others) or 'none'}"
        )
    save_auth(home, credentials)
    reload_nats(state)
    ca = state.nats_ca or os.environ.get("STRATOS_NATS_CA")
    asyncio.run(await_login(state.nats_url, removed, accepted=False, ca_file=ca))
