"""What a job spec may point at: the operator's limits on data files, local models, secrets and teacher hosts.

A spec comes from a user, but the services act on it with their own rights: they open the files it names and
send a resolved API key to the URL it names. So every reference is checked against limits the operator sets
(environment, validated at start-up, see `StratosSettings`):

- data files and local student models must lie under a root folder (symlinks resolved, ``..`` refused), be
  regular files (a FIFO would block the reader) and stay under a size limit;
- ``env:`` secret references must name a variable with an allowed prefix, ``file:`` ones a file under an allowed
  folder; the service's own credentials are never resolvable; once the operator binds keys to hosts
  (``STRATOS_TEACHER_KEY_HOSTS``), a key is sent only to the hosts bound to its reference, so a job cannot name
  the operator's OpenAI key together with its own server;
- teacher hosts, normalised first (case, trailing dot, IDNA, any spelling of an address; `stratos_shared.hosts`),
  must not be a refused name (cloud metadata services) nor resolve to a refused network (link-local and cloud
  metadata addresses by default, also when carried in an IPv6 address: IPv4-mapped, NAT64, 6to4), checked at
  submission and again when the teacher client connects.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from stratos_shared.errors import PolicyError
from stratos_shared.hosts import IpAddress, embedded_ipv4, literal_address, normalise_host

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DENIED_NETWORKS = (
    "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata at 169.254.169.254
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # AWS metadata over IPv6
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure wire server (and 169.254.169.254 above for IMDS; ECS task metadata 169.254.170.2)
    "0.0.0.0/8",  # "this host": connects to local services on some systems
    "::/128",
    "224.0.0.0/4",  # multicast
    "ff00::/8",
    "240.0.0.0/4",  # reserved, and the broadcast address
)
"""Networks a teacher URL may not reach unless the operator says otherwise (loopback and private stay open:
local teachers and in-cluster vLLM live there)."""
DEFAULT_DENIED_HOSTS = (
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",  # AWS, with any search domain
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
)
"""Host names of cloud metadata services, refused (with their sub-domains) before any lookup: a resolver inside
the cloud answers them with a metadata address, one outside may answer anything."""
DEFAULT_SECRET_ENV_PREFIXES = ("TEACHER_KEY_",)
PROTECTED_ENV_PREFIXES = ("STRATOS_", "NATS_")
"""Never resolvable, whatever the allowlist says: the services' own settings and credentials live there."""


@dataclass(frozen=True)
class InputPolicy:
    """The operator's limits on what job specs may reference; see the module docstring."""

    data_root: Path
    model_root: Path
    secret_env_prefixes: tuple[str, ...] = DEFAULT_SECRET_ENV_PREFIXES
    secret_dirs: tuple[Path, ...] = ()
    denied_networks: tuple[IpNetwork, ...] = field(default_factory=lambda: networks(DEFAULT_DENIED_NETWORKS))
    allowed_networks: tuple[IpNetwork, ...] = ()
    denied_hosts: tuple[str, ...] = DEFAULT_DENIED_HOSTS
    key_hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(reference or ``prefix*``, host names or ``*.domain``) pairs; empty: keys are not bound to hosts."""
    max_data_bytes: int = 256 * 1024 * 1024
    protected_values: frozenset[str] = frozenset()

    def protecting(self, *values: str | None) -> InputPolicy:
        """The same policy, refusing to hand out any of `values` (a service's own passwords) as a secret."""
        return replace(self, protected_values=self.protected_values | {v for v in values if v})

    # --- files -----------------------------------------------------------------------------------

    def data_path(self, raw: str) -> Path:
        """The task file `raw` names (relative to the data root), resolved; refused outside the root."""
        return _inside(self.data_root, raw, "task.path", "STRATOS_DATA_ROOT")

    def model_path(self, raw: str) -> Path | None:
        """A student given as a local folder, resolved inside the model root; None for hub ids and built-ins.

        Local means absolute or starting with ``./`` or ``~``: a bare ``org/name`` is a hub id.
        """
        if not raw.startswith(("/", "./", "~")):
            return None
        return _inside(self.model_root, os.path.expanduser(raw), "students[].model", "STRATOS_MODEL_ROOT")

    def check_data_file(self, path: Path) -> None:
        """Refuse what is not a regular file of at most `max_data_bytes`, without opening it for reading."""
        try:
            info = path.stat()
        except FileNotFoundError:
            raise PolicyError(f"task.path {path}: file not found") from None
        except OSError as exc:
            raise PolicyError(f"task.path {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(f"task.path {path} is not a regular file ({_kind(info.st_mode)})")
        if info.st_size > self.max_data_bytes:
            raise PolicyError(
                f"task.path {path} is {info.st_size / 2**20:.0f} MiB; at most {self.max_data_bytes / 2**20:.0f} MiB "
                "are read (STRATOS_MAX_DATA_FILE_MB)"
            )

    # --- secrets ---------------------------------------------------------------------------------

    def check_secret_ref(self, ref: str) -> None:
        """Refuse a reference outside the allowlist (without reading it)."""
        scheme, _, location = ref.partition(":")
        if scheme == "env":
            if location.startswith(PROTECTED_ENV_PREFIXES):
                raise PolicyError(f"api_key_ref {ref!r} names a service setting; it can never be a teacher key")
            if not location.startswith(self.secret_env_prefixes):
                allowed = ", ".join(f"{p}*" for p in self.secret_env_prefixes) or "none"
                raise PolicyError(
                    f"api_key_ref {ref!r} is not an allowed variable (allowed: {allowed}; STRATOS_SECRET_ENV_PREFIXES)"
                )
            return
        if scheme == "file":
            real = Path(os.path.realpath(location))
            if not any(real.is_relative_to(os.path.realpath(d)) for d in self.secret_dirs):
                allowed = ", ".join(str(d) for d in self.secret_dirs) or "none"
                raise PolicyError(
                    f"api_key_ref {ref!r} is not in an allowed secrets folder "
                    f"(allowed: {allowed}; STRATOS_SECRETS_DIRS)"
                )
            return
        raise PolicyError(f"api_key_ref {ref!r} must be 'env:NAME' or 'file:/path'")

    def key_host_problem(self, ref: str, url: str) -> str | None:
        """Why the key `ref` names may not be sent to `url`'s host; None when it may (or keys are not bound).

        The most specific binding wins: an exact reference over the longest matching ``prefix*``. Once any key is
        bound, a reference no binding matches is refused: it would otherwise go to any host.
        """
        if not self.key_hosts:
            return None
        matching = [(pattern, hosts) for pattern, hosts in self.key_hosts if _ref_matches(pattern, ref)]
        if not matching:
            return f"api_key_ref {ref!r} is not bound to any teacher host (STRATOS_TEACHER_KEY_HOSTS)"
        pattern, hosts = max(matching, key=lambda item: (not item[0].endswith("*"), len(item[0])))
        try:
            host = normalise_host(urlsplit(url).hostname or "")
        except ValueError as exc:
            return str(exc)
        if any(_host_matches(allowed, host) for allowed in hosts):
            return None
        return (
            f"api_key_ref {ref!r} may be sent only to {', '.join(hosts) or 'no host'}, not to {host} "
            f"(STRATOS_TEACHER_KEY_HOSTS, binding {pattern!r})"
        )

    # --- teacher hosts ---------------------------------------------------------------------------

    def address_problem(self, address: str | IpAddress) -> str | None:
        """Why a teacher may not be reached at this IP address (or the IPv4 address it carries); None when it may."""
        ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
        carried = embedded_ipv4(ip)
        checked = [ip] if carried is None else [ip, carried]
        if self.allowed_networks and not any(a in net for a in checked for net in self.allowed_networks):
            return f"{checked[-1]} is outside the allowed teacher networks (STRATOS_TEACHER_ALLOW_NETWORKS)"
        for candidate in checked:
            for net in self.denied_networks:
                if candidate.version == net.version and candidate in net:
                    via = f" (carried in {ip})" if candidate is not ip else ""
                    return (
                        f"{candidate}{via} is in the refused network {net} "
                        "(link-local or metadata; STRATOS_TEACHER_DENY_NETWORKS)"
                    )
        return None

    def host_problem(self, host: str) -> str | None:
        """Why a teacher host may not be used without resolving it: a refused name, a refused literal address
        (any spelling), or a name no resolver could look up. `host` need not be normalised."""
        try:
            name = normalise_host(host)
        except ValueError as exc:
            return str(exc)
        for denied in self.denied_hosts:
            if name == denied or name.endswith(f".{denied}"):
                return f"{name} is a refused host (cloud metadata; STRATOS_TEACHER_DENY_HOSTS)"
        address = literal_address(name)
        return None if address is None else self.address_problem(address)

    def url_problem(self, url: str, *, resolve: bool = True) -> str | None:
        """Why a teacher URL may not be used: its host (normalised) is refused, or any address it resolves to is.

        A host that does not resolve is not refused here (the teacher client finds it unreachable, and checks
        again when it connects).
        """
        host = urlsplit(url).hostname or ""
        problem = self.host_problem(host)
        if problem is not None:
            return f"teacher URL {url}: {problem}"
        name = normalise_host(host)
        if not resolve or literal_address(name) is not None:
            return None
        try:
            addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None)})
        except (OSError, UnicodeError):
            return None
        for address in addresses:
            problem = self.address_problem(address)
            if problem:
                return f"teacher URL {url}: {name} resolves to {problem}"
        return None


def key_host_bindings(raw: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Validate ``{"env:TEACHER_KEY_OPENAI": ["api.openai.com"], "file:/run/secrets/*": ["*.internal"]}``: each
    key a reference or a ``prefix*`` of one, each host a name, an address or ``*.domain``; hosts normalised.
    Raises ValueError naming the bad entry."""
    out = []
    for pattern, hosts in raw.items():
        if not pattern.startswith(("env:", "file:")):
            raise ValueError(f"{pattern!r} is not a key reference ('env:NAME', 'file:/path', or a prefix ending in *)")
        normalised = []
        for host in hosts:
            wildcard = host.startswith("*.")
            try:
                name = normalise_host(host[2:] if wildcard else host)
            except ValueError as exc:
                raise ValueError(f"key binding {pattern!r}: {exc}") from None
            normalised.append(f"*.{name}" if wildcard else name)
        out.append((pattern, tuple(normalised)))
    return tuple(out)


def _ref_matches(pattern: str, ref: str) -> bool:
    return ref.startswith(pattern[:-1]) if pattern.endswith("*") else ref == pattern


def _host_matches(allowed: str, host: str) -> bool:
    return host.endswith(allowed[1:]) if allowed.startswith("*.") else host == allowed


def networks(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    """Parse CIDR strings; raises ValueError naming the bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network (e.g. 169.254.0.0/16): {exc}") from None
    return tuple(out)


def read_regular_file(path: Path, max_bytes: int, what: str) -> bytes:
    """Read at most `max_bytes` of a regular file; never blocks on a FIFO or device; OS errors as PolicyError
    (FileNotFoundError excepted, so callers can say "not found" their own way)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{what} '{path}' cannot be opened ({_os_reason(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(f"{what} '{path}' is not a regular file ({_kind(info.st_mode)})")
        if info.st_size > max_bytes:
            raise PolicyError(f"{what} '{path}' is larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PolicyError(f"{what} '{path}' cannot be read ({_os_reason(exc)})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise PolicyError(f"{what} '{path}' is larger than {max_bytes} bytes")
    return data


def _inside(root: Path, raw: str, field_name: str, setting: str) -> Path:
    if "\x00" in raw:
        raise PolicyError(f"{field_name} contains a NUL byte")
    candidate = Path(raw) if os.path.isabs(raw) else root / raw
    try:
        real = Path(os.path.realpath(candidate))
        real_root = Path(os.path.realpath(root))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{field_name} {raw!r} cannot be resolved ({_os_reason(exc)})") from None
    if ".." in Path(raw).parts or not real.is_relative_to(real_root):
        raise PolicyError(f"{field_name} {raw!r} is outside the allowed folder {real_root} ({setting})")
    return real


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def _os_reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
