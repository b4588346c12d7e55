"""Event and job-spec contracts: round trips, validation messages, versioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import EVENT_TYPES, JobFailed, JobSubmitted, ServerDown
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.parsing import parse_event
from stratos_shared.errors import InvalidEventError

EXAMPLES = Path(__file__).parents[3] / "examples"


def example_spec() -> JobSpec:
    return JobSpec.from_yaml(EXAMPLES / "math-alignment.yaml")


NOT_JOBS = {"servers.yaml", "teacher-sim.yaml"}
JOB_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name not in NOT_JOBS)


@pytest.mark.parametrize("path", JOB_EXAMPLES, ids=lambda p: p.name)
def test_example_job_specs_load(path: Path) -> None:
    spec = JobSpec.from_yaml(path)
    assert spec.teachers and spec.students


def test_job_submitted_round_trips_through_json() -> None:
    event = JobSubmitted(job_id="math-1", spec=example_spec())
    again = parse_event(JobSubmitted, event.to_bytes())
    assert again == event
    assert again.schema_version == 1 and again.event_type == "JobSubmitted"


def test_every_event_type_names_its_subject_and_type() -> None:
    for name, cls in EVENT_TYPES.items():
        assert cls.model_fields["event_type"].default == name
        assert cls.SUBJECT.startswith(("stratos.evt.", "stratos.cmd.", "stratos.hb", "stratos.work."))
    subjects = [cls.SUBJECT for cls in EVENT_TYPES.values()]
    assert len(subjects) == len(set(subjects))


def test_events_are_immutable() -> None:
    event = ServerDown(server_id="s1", reason="operator")
    with pytest.raises(ValidationError):
        event.reason = "changed"  # type: ignore[misc]


def test_newer_schema_version_is_refused_with_a_reason() -> None:
    body = json.loads(JobFailed(job_id="j", stage="x", reason="y").to_bytes())
    body["schema_version"] = 99
    with pytest.raises(InvalidEventError, match="newer than this service understands"):
        parse_event(JobFailed, json.dumps(body).encode())


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    body = json.loads(JobFailed(job_id="j", stage="x", reason="y").to_bytes())
    body["added_later"] = {"anything": 1}
    assert parse_event(JobFailed, json.dumps(body).encode()).reason == "y"


def test_wrong_event_type_on_subject_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="expected a JobFailed"):
        parse_event(JobFailed, ServerDown(server_id="s", reason="r").to_bytes())


@pytest.mark.parametrize(
    "mutation, field",
    [
        (lambda d: d["spec"].pop("teachers"), "spec.teachers"),
        (lambda d: d["spec"]["constraints"].update(budget_usd=-5), "spec.constraints.budget_usd"),
        (lambda d: d["spec"]["teachers"][0].update(api_key_ref="sk-live-123"), "spec.teachers.0.api_key_ref"),
        (lambda d: d["spec"]["task"].update(kind="poetry"), "spec.task.kind"),
        (lambda d: d.update(job_id="../../etc"), "job_id"),
    ],
)
def test_invalid_job_submitted_names_the_field(mutation, field: str) -> None:
    body = json.loads(JobSubmitted(job_id="math-1", spec=example_spec()).to_bytes())
    mutation(body)
    with pytest.raises(InvalidEventError) as caught:
        parse_event(JobSubmitted, json.dumps(body).encode())
    assert any(line.startswith(field) for line in caught.value.errors), caught.value.errors


def test_secret_value_is_refused_and_not_echoed() -> None:
    data = example_spec().model_dump()
    data["teachers"][0]["api_key_ref"] = "sk-live-SECRET"
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(data)
    assert "reference" in str(caught.value)


def test_job_spec_json_schema_is_generated() -> None:
    schema = JobSpec.model_json_schema()
    assert {"task", "teachers", "students"} <= set(schema["required"])


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        parse_event(JobSubmitted, data)
    except InvalidEventError as refused:
        assert refused.reason


def test_stable_ids_are_deterministic_and_distinct() -> None:
    assert stable_id("job", "server-chosen", 1) == stable_id("job", "server-chosen", 1)
    assert stable_id("job", "server-chosen", 1) != stable_id("job", "server-chosen", 2)
    assert isinstance(Event.model_fields["event_id"].default_factory(), str)  # type: ignore[misc]
