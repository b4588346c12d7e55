"""Secret references and the response cache."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from stratos_shared.policy import InputPolicy
from stratos_shared.teacher import DirectoryCache, MemoryCache, SecretError, SecretRef, cache_key, resolve_secret

KEY = "sk-live-abcdef0123456789"


def policy_for(tmp_path: Path, **changes: object) -> InputPolicy:
    """An operator policy: keys in TEACHER_KEY_* variables or files under tmp_path/secrets."""
    (tmp_path / "secrets").mkdir(exist_ok=True)
    base = InputPolicy(data_root=tmp_path, model_root=tmp_path, secret_dirs=(tmp_path / "secrets",))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_env_and_file_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = policy_for(tmp_path)
    monkeypatch.setenv("TEACHER_KEY_TEST", KEY)
    secret = resolve_secret("env:TEACHER_KEY_TEST", policy)
    assert secret.get_secret_value() == KEY
    assert KEY not in repr(secret) and KEY not in str(secret)
    path = tmp_path / "secrets" / "key"
    path.write_text(KEY + "\n")
    assert resolve_secret(f"file:{path}", policy).get_secret_value() == KEY


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("vault:kv/teacher", "unknown secret scheme 'vault'"),
        ("OPENAI_API_KEY", "must look like"),
        ("env:", "must look like"),
        ("env:TEACHER_KEY_UNSET_VAR", "'TEACHER_KEY_UNSET_VAR' is not set"),
        ("file:{secrets}/nonexistent", "does not exist"),
    ],
)
def test_bad_refs(ref: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=message):
        resolve_secret(ref.format(secrets=tmp_path / "secrets"), policy_for(tmp_path))


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("env:STRATOS_NATS_PASSWORD", "names a service setting"),
        ("env:NATS_PASSWORD", "names a service setting"),
        ("env:AWS_SECRET_ACCESS_KEY", "not an allowed variable"),
        ("env:HOME", "not an allowed variable"),
        ("file:/proc/self/environ", "not in an allowed secrets folder"),
        ("file:/etc/passwd", "not in an allowed secrets folder"),
        ("file:{secrets}/../outside", "not in an allowed secrets folder"),
        ("file:{secrets}/link-out", "not in an allowed secrets folder"),
    ],
)
def test_references_outside_the_allowlist_are_never_read(
    ref: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exfiltration channel: a job naming the service's own password or any readable file as its key."""
    policy = policy_for(tmp_path)
    monkeypatch.setenv("STRATOS_NATS_PASSWORD", "service-password")
    monkeypatch.setenv("NATS_PASSWORD", "service-password")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    (tmp_path / "outside").write_text("outside-secret")
    (tmp_path / "secrets" / "link-out").symlink_to(tmp_path / "outside")
    with pytest.raises(SecretError, match=message) as err:
        resolve_secret(ref.format(secrets=tmp_path / "secrets"), policy)
    assert "service-password" not in str(err.value) and "outside-secret" not in str(err.value)


def test_a_service_credential_is_refused_even_under_an_allowed_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_for(tmp_path).protecting("service-password")
    monkeypatch.setenv("TEACHER_KEY_COPY", "service-password")
    with pytest.raises(SecretError, match="holds a service credential"):
        resolve_secret("env:TEACHER_KEY_COPY", policy)


def test_a_fifo_secret_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "secrets" / "pipe"
    policy = policy_for(tmp_path)
    os.mkfifo(fifo)
    with pytest.raises(SecretError, match="not a regular file"):
        resolve_secret(f"file:{fifo}", policy)


def test_errors_and_reprs_never_show_the_value(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    empty = tmp_path / "secrets" / "empty"
    empty.write_text("   \n")
    with pytest.raises(SecretError) as err:
        resolve_secret(f"file:{empty}", policy)
    assert "is empty" in str(err.value)
    path = tmp_path / "secrets" / "key"
    path.write_text(KEY)
    ref = SecretRef(f"file:{path}")
    assert KEY not in repr(ref)
    assert KEY not in repr(ref.resolve(policy))


def test_cache_key_depends_on_everything() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    base = cache_key("m", msgs, {"temperature": 0.7}, 0)
    assert base == cache_key("m", [{"content": "hi", "role": "user"}], {"temperature": 0.7}, 0)
    others = {
        cache_key("m2", msgs, {"temperature": 0.7}, 0),
        cache_key("m", [{"role": "user", "content": "hi!"}], {"temperature": 0.7}, 0),
        cache_key("m", msgs, {"temperature": 0.8}, 0),
        cache_key("m", msgs, {"temperature": 0.7}, 1),
        cache_key("m", msgs, {"temperature": 0.7, "seed": 1}, 0),
    }
    assert base not in others and len(others) == 5


def test_directory_cache_round_trip_and_atomicity(tmp_path: Path) -> None:
    cache = DirectoryCache(tmp_path / "c")
    key = cache_key("m", [], {}, 0)
    assert cache.get(key) is None
    cache.put(key, {"text": "héllo"})
    assert DirectoryCache(tmp_path / "c").get(key) == {"text": "héllo"}
    files = list((tmp_path / "c").rglob("*"))
    assert [f.name for f in files if f.is_file()] == [f"{key}.json"]  # no temp files left behind
    (tmp_path / "c" / key[:2] / f"{key}.json").write_text("{trunc")
    assert cache.get(key) is None  # a corrupt entry is a miss, not a crash
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")
    mem = MemoryCache()
    mem.put(key, {"text": "x"})
    assert mem.get(key) == {"text": "x"} and len(mem) == 1
    assert json.loads(json.dumps(mem.get(key))) == {"text": "x"}
