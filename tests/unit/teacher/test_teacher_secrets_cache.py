"""Secret references and the response cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_shared.teacher import DirectoryCache, MemoryCache, SecretError, SecretRef, cache_key, resolve_secret

KEY = "sk-live-abcdef0123456789"


def test_env_and_file_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOS_TEST_KEY", KEY)
    secret = resolve_secret("env:STRATOS_TEST_KEY")
    assert secret.get_secret_value() == KEY
    assert KEY not in repr(secret) and KEY not in str(secret)
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    assert resolve_secret(f"file:{path}").get_secret_value() == KEY


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("vault:kv/teacher", "unknown secret scheme 'vault'"),
        ("OPENAI_API_KEY", "must look like"),
        ("env:", "must look like"),
        ("env:STRATOS_TEST_UNSET_VAR", "'STRATOS_TEST_UNSET_VAR' is not set"),
        ("file:/nonexistent/key", "does not exist"),
    ],
)
def test_bad_refs(ref: str, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        resolve_secret(ref)


def test_errors_and_reprs_never_show_the_value(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("   \n")
    with pytest.raises(SecretError) as err:
        resolve_secret(f"file:{empty}")
    assert "is empty" in str(err.value)
    path = tmp_path / "key"
    path.write_text(KEY)
    ref = SecretRef(f"file:{path}")
    assert KEY not in repr(ref)
    assert KEY not in repr(ref.resolve())


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
