"""Every integer a job spec holds has a sane bound, and a worker's server id is one subject token: a 4,000-digit
number or a dotted server id is refused with a reason, never carried into a store or a subject."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stratos_shared.contracts.job import JobSpec
from stratos_shared.settings import WorkerSettings, load_worker_settings

ROOT = Path(__file__).parents[3]
HUGE = int("9" * 4000)


def int_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths to every integer field of `model` and the models it nests (lists of models: their first item)."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        if annotation is int or (int in args and bool not in args):
            found.append((*prefix, name))
        for candidate in (annotation, *args):
            inner = typing.get_args(candidate)
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += int_fields(candidate, (*prefix, name))
            elif typing.get_origin(candidate) is list and inner and issubclass(inner[0], BaseModel):
                found += int_fields(inner[0], (*prefix, name, "0"))
    return found


FIELDS = int_fields(JobSpec)


def test_the_spec_has_integer_fields_to_check() -> None:
    assert ("task", "seed") in FIELDS and ("training", "checkpoint_every_steps") in FIELDS and len(FIELDS) >= 14


@pytest.mark.parametrize("path", FIELDS, ids=".".join)
def test_a_4000_digit_integer_is_refused_in_every_field(path: tuple[str, ...]) -> None:
    body: Any = json.loads(JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml").model_dump_json())
    node = body
    for part in path[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[path[-1]] = HUGE
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(body)
    error = info.value.errors()[0]
    assert tuple(str(p) for p in error["loc"][: len(path)]) == path and "less than" in error["msg"], error


def test_huge_integers_in_generator_options_are_refused() -> None:
    body: Any = json.loads(JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml").model_dump_json())
    body["task"]["generator"] = {"max_ops": HUGE}
    with pytest.raises(ValidationError, match=r"beyond ±2\*\*53"):
        JobSpec.model_validate(body)


@pytest.mark.parametrize("bad", ["t4.us-east", "t4-*", "t4>", "a b", ".x", "x" * 129])
def test_a_worker_refuses_a_server_id_that_is_not_one_subject_token(bad: str, monkeypatch) -> None:
    monkeypatch.setenv("STRATOS_SERVER_ID", bad)
    with pytest.raises(SystemExit) as info:
        load_worker_settings(WorkerSettings, [], "stratos-trainer")
    message = str(info.value.code)
    assert "\n" not in message and message.startswith("stratos-trainer: STRATOS_SERVER_ID:"), message
    monkeypatch.setenv("STRATOS_SERVER_ID", "t4-us_east")
    assert load_worker_settings(WorkerSettings, [], "stratos-trainer").server_id == "t4-us_east"
