"""Teacher URLs as the network reads them: hosts normalised before any check, metadata services refused in every
spelling, key-like parameters refused by a rule, keys sent only to the hosts the operator bound them to.

The property tests compare the checks with oracles written from the documented rules (docs/architecture.md,
"Input policy"), over spellings drawn by hypothesis.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stratos_shared.contracts.job import TeacherSpec
from stratos_shared.hosts import credential_parameters, normalise_host
from stratos_shared.policy import DEFAULT_DENIED_NETWORKS, InputPolicy, key_host_bindings, networks
from stratos_shared.settings import StratosSettings

POLICY = InputPolicy(data_root=Path("/data"), model_root=Path("/models"))
DENIED = networks(DEFAULT_DENIED_NETWORKS)
CREDENTIAL_WORDS = ("key", "token", "secret", "sig", "signature", "password", "auth", "credential", "code")
BENIGN_WORDS = ("model", "version", "region", "deployment", "format", "lang", "q", "id", "v")


def refused_ipv4(ip: ipaddress.IPv4Address) -> bool:
    """The oracle: an IPv4 address is refused when a default refused network holds it."""
    return any(ip.version == net.version and ip in net for net in DENIED)


def spellings(ip: ipaddress.IPv4Address) -> st.SearchStrategy[str]:
    """Ways to write `ip` as a URL host that reach it: dotted, trailing dot, integer, hex, octal, IPv6 wrappers."""
    value = int(ip)
    octets = str(ip).split(".")
    return st.sampled_from(
        [
            str(ip),
            f"{ip}.",
            f"{ip}..",
            str(value),
            hex(value),
            hex(value).upper().replace("0X", "0x"),
            ".".join(f"0{int(o):o}" for o in octets),
            f"{octets[0]}.{octets[1]}.{int(octets[2]) * 256 + int(octets[3])}",
            f"[::ffff:{ip}]",
            f"[::FFFF:{value >> 16:x}:{value & 0xFFFF:X}]",
            f"[64:ff9b::{ip}]",
            f"[64:FF9B::{value >> 16:x}:{value & 0xFFFF:x}]",
            f"[2002:{value >> 16:x}:{value & 0xFFFF:x}::1]",
        ]
    )


interesting_ipv4 = st.one_of(
    st.sampled_from(
        [
            "169.254.169.254",
            "169.254.170.2",
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
            "127.0.0.1",
            "10.0.0.5",
            "8.8.8.8",
            "224.0.0.1",
            "100.100.100.201",
        ]
    ).map(ipaddress.IPv4Address),
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
)


@given(st.data(), interesting_ipv4)
def test_an_address_is_refused_in_every_spelling_exactly_when_the_rules_say(
    data: st.DataObject, ip: ipaddress.IPv4Address
) -> None:
    host = data.draw(spellings(ip))
    problem = POLICY.url_problem(f"http://{host}:8000/v1", resolve=False)
    assert (problem is not None) == refused_ipv4(ip), (host, problem)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254./latest/meta-data",
        "http://[fd00:ec2::254]/v1",
        "http://[FD00:EC2:0::254]/v1",
        "http://100.100.100.200/v1",
        "http://168.63.129.16/machine",
        "http://169.254.170.2/v2/credentials",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://METADATA.Google.Internal./computeMetadata/v1",
        "http://metadata/computeMetadata/v1",
        "http://instance-data/latest",
        "http://[64:ff9b::169.254.169.254]/v1",
        "http://[::ffff:a9fe:a9fe]/v1",
        "http://[fe80::1%25eth0]/v1",
    ],
)
def test_cloud_metadata_services_are_refused_without_a_lookup(url: str) -> None:
    assert POLICY.url_problem(url, resolve=False) is not None, url


def test_local_and_private_teachers_stay_allowed() -> None:
    for url in ("http://127.0.0.1:8100/v1", "http://10.1.2.3/v1", "http://vllm.internal/v1", "http://[::1]/v1"):
        assert POLICY.url_problem(url, resolve=False) is None, url


def test_hosts_are_normalised_before_checks() -> None:
    assert normalise_host("API.OpenAI.com.") == "api.openai.com"
    assert normalise_host("[FD00:EC2::254]") == "fd00:ec2::254"
    assert normalise_host("bücher.example") == "xn--bcher-kva.example"
    with pytest.raises(ValueError, match="not a valid host name"):
        normalise_host("a..b")


param_name = st.tuples(
    st.sampled_from(["", "x_", "X-Amz-", "access_", "api"]),
    st.sampled_from(CREDENTIAL_WORDS + BENIGN_WORDS),
    st.sampled_from(["", "_id", "Id", "-v2", "s"]),
).map("".join)
cased = param_name.flatmap(lambda n: st.sampled_from([n, n.upper(), n.title()]))


@given(st.lists(st.tuples(cased, st.sampled_from(["query", "path"]), st.booleans()), min_size=1, max_size=4))
def test_key_like_parameters_are_refused_by_rule(params: list[tuple[str, str, bool]]) -> None:
    query = "&".join(f"{name}=v" if valued else name for name, where, valued in params if where == "query")
    path = "".join(f";{name}=v" for name, where, _ in params if where == "path")
    url = f"https://teacher.example/v1{path}" + (f"?{query}" if query else "")
    oracle = any(word in name.lower() for name, _, _ in params for word in CREDENTIAL_WORDS)
    assert bool(credential_parameters(url)) == oracle, url
    if oracle:
        with pytest.raises(ValidationError, match="must not carry a key"):
            TeacherSpec(name="t", base_url=url, model="m")
    else:
        TeacherSpec(name="t", base_url=url, model="m")


@pytest.mark.parametrize(
    "url",
    [
        "https://fn.azurewebsites.net/api/chat?code=abc",
        "https://bucket.example/v1?X-Amz-Signature=abc",
        "https://teacher.example/v1?sig=abc",
        "https://teacher.example/v1?access_key_id=abc",
        "https://teacher.example/v1;api_key=abc",
        "https://teacher.example/v1?api%5Fkey=abc",
        "https://teacher.example/v1?a=1;token=abc",
    ],
)
def test_known_key_carrying_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="must not carry a key") as info:
        TeacherSpec(name="t", base_url=url, model="m")
    assert "abc" not in info.value.errors()[0]["msg"]


BINDINGS = {
    "env:TEACHER_KEY_OPENAI": ["api.openai.com"],
    "env:TEACHER_KEY_AZURE_*": ["*.openai.azure.com"],
    "env:TEACHER_KEY_*": ["127.0.0.1", "vllm.internal."],
}
BOUND = InputPolicy(data_root=Path("/data"), model_root=Path("/models"), key_hosts=key_host_bindings(BINDINGS))


def test_a_key_goes_only_to_the_hosts_bound_to_it() -> None:
    problem = BOUND.key_host_problem("env:TEACHER_KEY_OPENAI", "http://attacker:9000/v1")
    assert problem is not None and "only to api.openai.com, not to attacker" in problem
    assert BOUND.key_host_problem("env:TEACHER_KEY_OPENAI", "https://API.openai.com./v1") is None
    assert BOUND.key_host_problem("env:TEACHER_KEY_AZURE_EU", "https://eu.openai.azure.com/v1") is None
    assert BOUND.key_host_problem("env:TEACHER_KEY_AZURE_EU", "https://openai.azure.com.evil/v1") is not None
    # the exact binding wins over the prefix that also matches it
    assert BOUND.key_host_problem("env:TEACHER_KEY_OPENAI", "http://127.0.0.1:8100/v1") is not None
    assert BOUND.key_host_problem("env:TEACHER_KEY_LOCAL", "http://vllm.internal/v1") is None
    unbound = BOUND.key_host_problem("file:/run/secrets/k", "http://127.0.0.1/v1")
    assert unbound is not None and "not bound to any teacher host" in unbound
    assert POLICY.key_host_problem("env:TEACHER_KEY_OPENAI", "http://attacker:9000/v1") is None, "unbound by default"


@given(
    st.sampled_from(["env:TEACHER_KEY_OPENAI", "env:TEACHER_KEY_AZURE_X", "env:TEACHER_KEY_OTHER", "file:/k"]),
    st.sampled_from(["api.openai.com", "x.openai.azure.com", "127.0.0.1", "vllm.internal", "attacker", "evil.com"]),
    st.sampled_from(["", ".", "UPPER"]),
)
def test_key_binding_against_its_oracle(ref: str, host: str, spelling: str) -> None:
    written = host.upper() if spelling == "UPPER" else host + spelling
    patterns = [p for p in BINDINGS if (ref.startswith(p[:-1]) if p.endswith("*") else ref == p)]
    best = max(patterns, key=lambda p: (not p.endswith("*"), len(p)), default=None)
    allowed = best is not None and any(
        host.endswith(h[1:]) if h.startswith("*.") else host == h.rstrip(".") for h in BINDINGS[best]
    )
    assert (BOUND.key_host_problem(ref, f"http://{written}:1/v1") is None) == allowed


def test_bindings_are_validated_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOS_TEACHER_KEY_HOSTS", '{"TEACHER_KEY_X": ["a.example"]}')
    with pytest.raises(ValidationError, match="is not a key reference"):
        StratosSettings()
    monkeypatch.setenv("STRATOS_TEACHER_KEY_HOSTS", '{"env:TEACHER_KEY_X": ["API.Example."]}')
    assert StratosSettings().input_policy().key_hosts == (("env:TEACHER_KEY_X", ("api.example",)),)
