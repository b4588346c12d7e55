"""docker-compose.yml as the tests read it (no container engine here): services, their environment with the
defaults compose would use, their mounts, and the `nats-auth` service's command run on this machine."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from stratos_shared.bus import permissions

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
STRATOS = {name: s for name, s in SERVICES.items() if "build" in s and "command" not in s}
"""The six Stratos services: built from docker/service.Dockerfile, running the image's own command."""
AUTH_VOLUME = "nats-auth"


def defaults(value: object) -> str:
    """A value as compose runs it with nothing set on the host: ``${NAME:-default}`` becomes the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: defaults(value) for key, value in (service.get("environment") or {}).items()}


def mounts(service: dict[str, Any]) -> dict[PurePosixPath, str]:
    """Container path -> source (a ./ path in the repository, or a named volume)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[PurePosixPath(target)] = source
    return found


def host_path(service: dict[str, Any], path: PurePosixPath, volumes: dict[str, Path] | None = None) -> Path | None:
    """Where a container path lies on this machine: in the repository for a bind mount, in `volumes` (named volume
    -> folder) for a named one; None when no mount holds it."""
    for target, source in mounts(service).items():
        if path == target or target in path.parents:
            base = ROOT / source if source.startswith("./") else (volumes or {}).get(source)
            if base is not None:
                return base / path.relative_to(target)
    return None


def run_nats_auth(folder: Path) -> list[str]:
    """Run the `nats-auth` service's own command with its volume at `folder` (and no chown: not root here);
    returns the command's arguments as compose gives them."""
    service = SERVICES["nats-auth"]
    command = service["command"]
    assert command[:3] == ["python", "-m", permissions.__name__], command
    args = list(command[3:])
    volume_target = next(t for t, s in mounts(service).items() if s == AUTH_VOLUME)
    out = args.index("--out") + 1
    args[out] = str(folder / PurePosixPath(args[out]).relative_to(volume_target))
    owner = args.index("--owner")
    del args[owner : owner + 2]
    permissions.main(args)
    return list(command[3:])
