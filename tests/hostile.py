"""Hypothesis strategies for what a hostile or careless submitter sends: JobSubmitted payloads as raw bytes.

Each payload starts from a valid submission and is broken in one or more of the ways seen in the wild: nesting
past any limit, numbers JSON can carry but a spec cannot hold (1e309, NaN, 5,000-digit integers), ids that KV
keys or subject tokens refuse, paths to FIFOs, directories, NUL bytes and places outside the data root, secret
references to the service's own credentials, teacher URLs at metadata addresses or carrying keys, and envelope
fields of the wrong type. Raw text (not `json.dumps`) carries the numbers `json.dumps` cannot write.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import JobSpec

ROOT = Path(__file__).parents[1]
BASE = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
RAW = "__raw__:"
"""A string value starting with this is written into the JSON as the raw text after it."""

ID_ALPHABET = st.sampled_from(list("abcXYZ019_-.*>/ \n\t$=:@#%é☃\x00"))
RAW_NUMBERS = ["1e309", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 5000, "1e-400"]


def valid_submission(job_id: str, name: str) -> dict[str, Any]:
    """A valid submission as a dict (then given `job_id` as is, valid or not)."""
    spec = BASE.model_copy(update={"name": name})
    body = json.loads(JobSubmitted(job_id="placeholder", spec=spec).to_bytes())
    body["job_id"] = job_id
    return body


def to_bytes(body: object) -> bytes:
    """JSON text with every ``__raw__:`` string replaced by its raw text (numbers json.dumps refuses to write)."""
    text = json.dumps(body)
    return _unraw(text).encode()


def _unraw(text: str) -> str:
    out, start = [], 0
    marker = json.dumps(RAW)[:-1]  # '"__raw__:'
    while (at := text.find(marker, start)) != -1:
        value, end = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        out.append(text[start:at])
        out.append(value[len(RAW) :])
        start = end
    out.append(text[start:])
    return "".join(out)


def _nested(depth: int) -> str:
    """Raw JSON nested `depth` levels (json.dumps itself would overflow the stack writing it)."""
    return RAW + '{"x": [' * (depth // 2) + "1" + "]}" * (depth // 2)


def _set(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


NUMBER_FIELDS: list[tuple[str | int, ...]] = [
    ("spec", "constraints", "budget_usd"),
    ("spec", "constraints", "latency_slo_ms"),
    ("spec", "constraints", "accuracy_target"),
    ("spec", "students", 0, "params_b"),
    ("spec", "selection", "weights", 1),
    ("spec", "task", "eval_fraction"),
    ("spec", "task", "size"),
    ("spec", "distillation", "tau"),
    ("spec", "task", "generator", "max_ops"),
    ("schema_version",),
]


@st.composite
def mutation(draw: st.DrawFn, body: dict[str, Any], hostile_paths: list[str]) -> None:
    """Break `body` in place, one way."""
    kind = draw(
        st.sampled_from(
            ["nesting", "number", "job_id", "path", "secret", "url", "version", "event_type", "student", "server_id"]
        )
    )
    if kind == "nesting":
        where = draw(st.sampled_from([("spec", "task", "generator", "opts"), ("spec", "teachers"), ("extra",)]))
        _set(body, where, _nested(draw(st.integers(60, 3000))))
    elif kind == "number":
        _set(body, draw(st.sampled_from(NUMBER_FIELDS)), RAW + draw(st.sampled_from(RAW_NUMBERS)))
    elif kind == "job_id":
        body["job_id"] = draw(st.text(ID_ALPHABET, min_size=0, max_size=120))
    elif kind == "path":
        body["spec"]["task"].update(kind="jsonl", grader="exact", path=draw(st.sampled_from(hostile_paths)))
    elif kind == "secret":
        ref = draw(
            st.sampled_from(
                [
                    "env:STRATOS_NATS_PASSWORD",
                    "env:NATS_PASSWORD",
                    "env:HOME",
                    "env:AWS_SECRET_ACCESS_KEY",
                    "file:/proc/self/environ",
                    "file:/etc/passwd",
                    "file:relative/key",
                    "sk-live-0123456789abcdef",
                    "env:",
                    "file:/run/secrets/../../etc/shadow",
                ]
            )
        )
        body["spec"]["teachers"][0]["api_key_ref"] = ref
    elif kind == "url":
        body["spec"]["teachers"][0]["base_url"] = draw(
            st.sampled_from(
                [
                    "http://169.254.169.254/latest/meta-data",
                    "http://[fe80::1]/v1",
                    "http://[::ffff:169.254.169.254]/v1",
                    "http://2852039166/v1",
                    "http://user:sk-secret@127.0.0.1:8100/v1",
                    "http://127.0.0.1:8100/v1?api_key=sk-secret",
                    "http://127.0.0.1:99999/v1",
                    "http://0.0.0.0:8100/v1",
                    "ftp://127.0.0.1/v1",
                    "http:///v1",
                    "http://127.0.0.1:8100/v1#frag",
                ]
            )
        )
    elif kind == "version":
        body["schema_version"] = draw(st.sampled_from(["1", 1.0, True, 1.5, None, [1], 2, -1, 0]))
    elif kind == "event_type":
        body["event_type"] = draw(st.sampled_from(["JobCancelRequested", "ServerDown", "", None, 7]))
    elif kind == "student":
        body["spec"]["students"][0]["model"] = draw(
            st.sampled_from(["/etc", "../../models", "./x/../../y", "/tmp/\x00m", "~/../../root", "a" * 2000])
        )
    else:
        body["spec"]["teachers"][0]["name"] = draw(st.text(ID_ALPHABET, min_size=0, max_size=80))


@st.composite
def hostile_submission(draw: st.DrawFn, index: int, hostile_paths: list[str]) -> bytes:
    """A submission broken in one to three ways (job id and spec name unique per `index`, unless mutated)."""
    body = valid_submission(f"h{index}", f"hostile-{index}")
    for _ in range(draw(st.integers(1, 3))):
        with contextlib.suppress(TypeError, KeyError, IndexError):  # an earlier mutation replaced that part
            draw(mutation(body, hostile_paths))
    return to_bytes(body)
