"""Property: whatever a hostile submitter sends, parsing refuses it with a reason or yields an event that
round-trips exactly (what is accepted can be stored and read back; nothing escapes as another exception)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.parsing import parse_event
from stratos_shared.errors import InvalidEventError
from tests.hostile import hostile_submission

PATHS = ["/etc/passwd", "../outside.jsonl", "data/\x00.jsonl", "a" * 300, "/tmp", "ok.jsonl"]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10_000).flatmap(lambda i: hostile_submission(i, PATHS)))
def test_hostile_submissions_are_refused_with_a_reason_or_round_trip(payload: bytes) -> None:
    try:
        event = parse_event(JobSubmitted, payload)
    except InvalidEventError as refused:
        assert refused.reason.strip()
        return
    again = parse_event(JobSubmitted, event.to_bytes())
    assert again == event
    assert type(event.spec).model_validate_json(event.spec.model_dump_json()) == event.spec
