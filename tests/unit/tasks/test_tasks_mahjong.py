"""Mahjong winning tiles: solver vs brute force, notation, grading, step checks."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratos_shared.tasks import Example, TaskDataError
from stratos_shared.tasks.mahjong import (
    MahjongTask,
    format_counts,
    generate_hand,
    parse_tiles,
    to_counts,
    winning_tiles,
)

# ----------------------------------------------------------------------------- brute force
# Differently coded from the solver: enumerate every multiset of 4 melds from the
# list of all 55 meld shapes (any order of choice, not "lowest tile first"), and
# require what is left to be a pair.

ALL_MELDS = [(t, t, t) for t in range(34)] + [
    (s * 9 + i, s * 9 + i + 1, s * 9 + i + 2) for s in range(3) for i in range(7)
]


def brute_complete(counts: list[int]) -> bool:
    if sum(counts) != 14:
        return False
    present = [m for m in ALL_MELDS if all(counts[t] >= m.count(t) for t in m)]
    for combo in itertools.combinations_with_replacement(present, 4):
        rest = list(counts)
        for meld in combo:
            for t in meld:
                rest[t] -= 1
        if min(rest) < 0:
            continue
        left = [t for t in range(34) for _ in range(rest[t])]
        if len(left) == 2 and left[0] == left[1]:
            return True
    return False


def brute_waits(counts: list[int]) -> list[int]:
    out = []
    for t in range(34):
        if counts[t] == 4:
            continue
        full = list(counts)
        full[t] += 1
        if brute_complete(full):
            out.append(t)
    return out


def random_hand(rng: random.Random) -> list[int]:
    wall = [t for t in range(34) for _ in range(4)]
    return to_counts(rng.sample(wall, 13))


def test_solver_matches_brute_force_on_hundreds_of_hands() -> None:
    rng = random.Random(7)
    hands = [generate_hand(rng, single_suit=rng.random() < 0.4) for _ in range(250)]
    # Random deals are rarely tenpai; near-complete single-suit deals exercise the "no win" side hard.
    hands += [random_hand(rng) for _ in range(100)]
    hands += [to_counts(sorted(rng.choices(range(9), k=13))) for _ in range(100)]
    hands = [h for h in hands if max(h) <= 4]
    assert len(hands) > 400
    tenpai = 0
    for hand in hands:
        expected = brute_waits(hand)
        assert winning_tiles(hand) == expected, format_counts(hand)
        tenpai += bool(expected)
    assert tenpai >= 250


@pytest.mark.parametrize(
    ("hand", "waits"),
    [
        ("1112345678999m", "123456789m"),  # nine gates: every tile of the suit
        ("123m 456p 789s EEE P", "P"),  # single wait on an honor
        ("1111m 234p 567s EEE", "none"),  # only a fifth 1m would do, and there is none
        ("123m 456p 789s EE PP", "E P"),  # two pairs waiting on either pong
        ("13m 456p 789s EEE PP", "2m"),  # closed (kanchan) wait
        ("12m 456p 789s EEE PP", "3m"),  # edge wait: 9-free side only
        ("2345m 789p 111s EEE", "25m"),
        ("1357m 2468p 159s EW", "none"),
    ],
)
def test_known_hands(hand: str, waits: str) -> None:
    tiles = parse_tiles(hand)
    assert tiles is not None
    assert format_counts(to_counts(winning_tiles(to_counts(tiles)))) == format_counts(
        to_counts(parse_tiles(waits) or [])
    )


def test_honors_never_chow_and_no_seven_pairs() -> None:
    # E S W is not a chow, so this honor-run hand waits on nothing.
    assert winning_tiles(to_counts(parse_tiles("123m 456p 789s ESW N") or [])) == []
    # Six pairs + single would be seven pairs; not a win under these rules.
    assert winning_tiles(to_counts(parse_tiles("1199m 2288p 33s EE W") or [])) == []


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("14m 7p E", "14m 7p E"), ("1m, 4m, 7p, E", "14m 7p E"), ("[E, 4m 1m 7p]", "14m 7p E"), ("1m4m7pE", "14m 7p E")],
)
def test_notation(text: str, parsed: str) -> None:
    assert format_counts(to_counts(parse_tiles(text) or [])) == parsed


@pytest.mark.parametrize("text", ["1x", "0m", "14", "e", "tiles 1m"])
def test_notation_refuses_junk(text: str) -> None:
    assert parse_tiles(text) is None


TASK = MahjongTask([])
EX = MahjongTask.example_for(to_counts(parse_tiles("2345m 789p 111s EEE") or []), "e")


@pytest.mark.parametrize(
    ("output", "correct", "precision", "recall"),
    [
        ("Answer: 25m", True, 1.0, 1.0),
        ("Answer: 5m, 2m", True, 1.0, 1.0),
        ("Answer: 2m 5m 2m", True, 1.0, 1.0),
        ("Answer: 2m", False, 1.0, 0.5),
        ("Answer: 2m 5m 8m", False, 2 / 3, 1.0),
        ("Answer: none", False, 1.0, 0.0),
        ("Answer: two and five", False, 0.0, 0.0),
        ("no answer", False, 0.0, 0.0),
    ],
)
def test_grade_set(output: str, correct: bool, precision: float, recall: float) -> None:
    grade = TASK.grade(output, EX)
    assert grade.correct is correct
    assert grade.precision == pytest.approx(precision) and grade.recall == pytest.approx(recall)


def test_check_steps() -> None:
    good = "with 2m: 234m 5m5m?"  # unreadable groupings are refused, not skipped
    assert not TASK.check_steps(good + "\nAnswer: 25m", EX).ok
    ok = "with 2m: 234m 789p 111s EEE + 55m\nwith 5m: 234m 789p 111s EEE + 55m\nAnswer: 25m"
    assert not TASK.check_steps(ok, EX).ok  # 2m + hand = 22345m: 234m leaves 2m 5m, not 55m
    trace = TASK.reference_trace(EX)
    assert TASK.check_steps(trace, EX).ok and TASK.grade(trace, EX).correct
    missing = "\n".join(line for line in trace.splitlines() if not line.startswith("with 5m"))
    assert "5m" in TASK.check_steps(missing, EX).reason
    assert not TASK.check_steps("Answer: 25m", EX).ok
    not_a_meld = "\n".join(
        line.replace("789p", "78p 9p") if line.startswith("with") else line for line in trace.splitlines()
    )
    assert not TASK.check_steps(not_a_meld, EX).ok


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_generated_examples_are_consistent(seed: int) -> None:
    task = MahjongTask.generate(seed=seed, size=3)
    for ex in task.examples():
        trace = task.reference_trace(ex)
        assert task.grade(trace, ex).correct and task.check_steps(trace, ex).ok
        assert ex.answer != "none"
        assert not task.grade(task.wrong_trace(ex, random.Random(seed)), ex).correct


def test_loader(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"hand": "2345m 789p 111s EEE", "answer": "2m 5m"}) + "\n")
    assert [e.answer for e in MahjongTask.from_jsonl(path).examples()] == ["25m"]
    for line, reason in [
        ({"hand": "2345m 789p 111s EE"}, "12 tiles"),
        ({"hand": "11111m 789p 111s EE"}, "more than 4"),
        ({"hand": "2345x"}, "cannot read hand"),
        ({"hand": "2345m 789p 111s EEE", "answer": "2m"}, "answer '2m' is wrong"),
    ]:
        path.write_text(json.dumps(line) + "\n")
        with pytest.raises(TaskDataError, match=f"line 1: .*{reason}"):
            MahjongTask.from_jsonl(path)


def test_generator_seeded_distinct_stratified() -> None:
    a = MahjongTask.generate(seed=1, size=200)
    assert a.examples() == MahjongTask.generate(seed=1, size=200).examples()
    assert len({e.question for e in a.examples()}) == 200
    assert {e.stratum for e in a.examples()} == {"waits=1", "waits=2", "waits=3+"}
    assert all(Example.model_validate(e.model_dump()) == e for e in a.examples())
