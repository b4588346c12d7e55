"""Reading a teacher URL the way the network will: its host in one canonical form, and what in it looks like a key.

Checks that compare spellings are bypassed by another spelling of the same thing: ``169.254.169.254.`` (a
trailing dot), ``METADATA.google.internal``, ``0xa9fea9fe``, ``[::ffff:169.254.169.254]``,
``[64:ff9b::a9fe:a9fe]`` (NAT64). So every check first reduces the host to one form (`normalise_host`), reads
an address written in any form the resolver accepts (`literal_address`) and the IPv4 address an IPv6 one
carries (`embedded_ipv4`). Likewise a key hides in a URL under many names (``?code=``, ``?sig=``,
``;api_key=``): a parameter is refused by what its name contains (`credential_parameters`), not by a list
of names.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import unquote_plus, urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CREDENTIAL_NAME_PARTS = ("key", "token", "secret", "sig", "password", "passwd", "auth", "credential", "code")
"""A URL parameter whose name (lower-cased) contains any of these is taken for a credential (``sig`` covers
``signature``, ``auth`` covers ``authorization``, ``key`` covers ``access_key_id``)."""
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
"""The well-known NAT64 prefix: ``64:ff9b::a9fe:a9fe`` reaches 169.254.169.254 through a NAT64 gateway."""


def normalise_host(host: str) -> str:
    """`host` as the resolver will look it up: lower case, without trailing dots, IDNA (punycode) for names.

    Raises ValueError for a host that has no such form (empty labels, characters IDNA refuses).
    """
    name = host.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name:
        raise ValueError(f"host {host!r} is empty")
    try:
        return str(ipaddress.ip_address(name.split("%", 1)[0]))
    except ValueError:
        pass
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"host {host!r} is not a valid host name ({exc})") from None


def literal_address(host: str) -> IpAddress | None:
    """The address `host` (normalised) spells, in any form the C resolver reads as one (``2852039166``,
    ``0xa9.0376.43518``, ``127.1``); None for a name to be resolved."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(ch in "0123456789abcdefx." for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches: IPv4-mapped, NAT64 (64:ff9b::/96), 6to4,
    IPv4-compatible (``::a.b.c.d``); None for an IPv4 address or a plain IPv6 one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(int(address))
    return None


def credential_parameters(url: str) -> list[str]:
    """Names of the query and path parameters of `url` that look like credentials (see CREDENTIAL_NAME_PARTS).

    Query parameters (``?a=1&b;c``, with or without a value) and path parameters (``/v1;api_key=x``, also
    ``&`` or ``,`` separated within a segment) are read percent-decoded and lower-cased.
    """
    parts = urlsplit(url)
    names = [piece.split("=", 1)[0] for piece in parts.query.replace(";", "&").split("&")]
    for segment in parts.path.split("/"):
        names += [piece.split("=", 1)[0] for piece in segment.replace("&", ";").replace(",", ";").split(";")[1:]]
    found: list[str] = []
    for raw in names:
        name = unquote_plus(raw).lower()
        if any(part in name for part in CREDENTIAL_NAME_PARTS) and name not in found:
            found.append(name)
    return found
