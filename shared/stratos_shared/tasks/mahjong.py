"""Mahjong winning tiles: given a 13-tile hand, name every tile that completes it.

Notation (canonical, used in questions and answers): suited tiles are digits
followed by their suit letter, ``m`` (characters), ``p`` (dots), ``s``
(bamboo); digits of one suit are run together, e.g. ``1123m``. Honors are
single capital letters: winds ``E S W N`` and dragons ``P`` (white), ``F``
(green), ``C`` (red), also run together (``EEEP``). Groups appear in the
order m, p, s, honors, separated by spaces: ``1123m 456p 789s EEEP``. An empty
answer is written ``none``.

Rules: a complete hand is one pair plus four melds; a meld is a pong (three
identical tiles) or a chow (three consecutive tiles of one suit; honors never
form chows). No seven pairs, no thirteen orphans. A tile the hand already
holds four of cannot be a winning tile (there is no fifth copy).

Trace format checked by ``check_steps``: one line per winning tile,
``with 4m: 123m 456p 789s EEE + 55m`` — the tile, four melds, ``+``, the pair.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from stratos_shared.tasks._common import final_answer, precision_recall, reasoning_body
from stratos_shared.tasks._jsonl import read_records, record_id
from stratos_shared.tasks.base import ANSWER_MARKER, Example, Extraction, Grade, StepCheck, Task
from stratos_shared.tasks.errors import TaskConfigError, TaskDataError
from stratos_shared.tasks.kinds import TaskKind, register_kind

KIND = "mahjong-winning-tiles"
SUITS = "mps"
HONORS = "ESWNPFC"
N_KINDS = 34
NONE = "none"

SYSTEM_PROMPT = (
    "You solve mahjong waits. Tiles: 1-9 of suits m, p, s written like '123m', honors E S W N P F C. "
    "A complete hand is four melds (pong = three identical tiles, chow = three consecutive tiles of "
    "one suit, never honors) plus one pair; no seven pairs or thirteen orphans; a tile already held "
    "four times cannot win. Given a 13-tile hand, find every tile that completes it. For each one "
    "write a line like 'with 4m: 123m 456p 789s EEE + 55m'. End with a final line "
    f"'{ANSWER_MARKER} <tiles>' listing the winning tiles in the same notation, or '{ANSWER_MARKER} none'."
)

Counts = list[int]

_GROUP = re.compile(r"[1-9]+[mps]|[ESWNPFC]")
_TOKEN = re.compile(r"(?:[1-9]+[mps]|[ESWNPFC])+")
_SEPARATORS = re.compile(r"[\s,;\[\]{}()'\"]+")


def tile_name(index: int) -> str:
    """``0`` -> ``"1m"``, ``27`` -> ``"E"``."""
    if index < 27:
        return f"{index % 9 + 1}{SUITS[index // 9]}"
    return HONORS[index - 27]


def parse_tiles(text: str) -> list[int] | None:
    """Tile indices in ``text`` (any mix of ``14m``, ``1m 4m``, commas); None if anything else is there."""
    tiles: list[int] = []
    for token in _SEPARATORS.split(text.strip()):
        if not token:
            continue
        if _TOKEN.fullmatch(token) is None:
            return None
        for group in _GROUP.findall(token):
            if group in HONORS:
                tiles.append(27 + HONORS.index(group))
            else:
                base = SUITS.index(group[-1]) * 9
                tiles.extend(base + int(d) - 1 for d in group[:-1])
    return tiles


def to_counts(tiles: Sequence[int]) -> Counts:
    counts = [0] * N_KINDS
    for t in tiles:
        counts[t] += 1
    return counts


def format_counts(counts: Sequence[int]) -> str:
    """Canonical notation of a multiset of tiles (``none`` when empty)."""
    groups: list[str] = []
    for s, suit in enumerate(SUITS):
        digits = "".join(str(i + 1) * counts[s * 9 + i] for i in range(9))
        if digits:
            groups.append(digits + suit)
    honors = "".join(HONORS[i] * counts[27 + i] for i in range(7))
    if honors:
        groups.append(honors)
    return " ".join(groups) if groups else NONE


def format_tiles(tiles: Sequence[int]) -> str:
    return format_counts(to_counts(tiles))


# --------------------------------------------------------------------------- solver


def _melds(counts: Counts, need: int) -> bool:
    """Can ``counts`` be split into exactly ``need`` melds? The lowest tile must start one."""
    if need == 0:
        return not any(counts)
    i = next(k for k, c in enumerate(counts) if c)
    if counts[i] >= 3:
        counts[i] -= 3
        ok = _melds(counts, need - 1)
        counts[i] += 3
        if ok:
            return True
    if i < 27 and i % 9 <= 6 and counts[i + 1] and counts[i + 2]:
        for k in (i, i + 1, i + 2):
            counts[k] -= 1
        ok = _melds(counts, need - 1)
        for k in (i, i + 1, i + 2):
            counts[k] += 1
        return ok
    return False


def is_complete(counts: Counts) -> bool:
    """Is this 14-tile hand one pair plus four melds?"""
    if sum(counts) != 14:
        return False
    for p in range(N_KINDS):
        if counts[p] >= 2:
            counts[p] -= 2
            ok = _melds(counts, 4)
            counts[p] += 2
            if ok:
                return True
    return False


def winning_tiles(counts: Sequence[int]) -> list[int]:
    """Every tile index that completes a 13-tile hand, ascending."""
    work = list(counts)
    out: list[int] = []
    for t in range(N_KINDS):
        if work[t] >= 4:
            continue
        work[t] += 1
        if is_complete(work):
            out.append(t)
        work[t] -= 1
    return out


def decomposition(counts: Sequence[int]) -> tuple[list[list[int]], list[int]] | None:
    """One ``(melds, pair)`` split of a complete hand, for worked traces."""
    work = list(counts)

    def split(need: int) -> list[list[int]] | None:
        if need == 0:
            return [] if not any(work) else None
        i = next(k for k, c in enumerate(work) if c)
        options = []
        if work[i] >= 3:
            options.append([i, i, i])
        if i < 27 and i % 9 <= 6 and work[i + 1] and work[i + 2]:
            options.append([i, i + 1, i + 2])
        for meld in options:
            for k in meld:
                work[k] -= 1
            rest = split(need - 1)
            for k in meld:
                work[k] += 1
            if rest is not None:
                return [meld, *rest]
        return None

    for p in range(N_KINDS):
        if work[p] >= 2:
            work[p] -= 2
            melds = split(4)
            work[p] += 2
            if melds is not None:
                return melds, [p, p]
    return None


# --------------------------------------------------------------------------- generator


def _all_melds() -> list[list[int]]:
    pongs = [[t, t, t] for t in range(N_KINDS)]
    chows = [[s * 9 + i, s * 9 + i + 1, s * 9 + i + 2] for s in range(3) for i in range(7)]
    return pongs + chows


_MELDS = _all_melds()


def generate_hand(rng: random.Random, single_suit: bool = False) -> Counts:
    """A random tenpai hand: build a complete hand, then take one tile out."""
    suit = rng.randrange(3)
    melds = [m for m in _MELDS if m[0] // 9 == suit and m[0] < 27] if single_suit else _MELDS
    while True:
        counts = [0] * N_KINDS
        pair_choices = [t for t in range(N_KINDS) if not single_suit or (t < 27 and t // 9 == suit)]
        pair = rng.choice(pair_choices)
        counts[pair] += 2
        for _ in range(4):
            meld = rng.choice(melds)
            for t in meld:
                counts[t] += 1
        if max(counts) > 4:
            continue
        held = [t for t in range(N_KINDS) for _ in range(counts[t])]
        counts[rng.choice(held)] -= 1
        return counts


def _stratum(n_waits: int) -> str:
    return f"waits={n_waits}" if n_waits < 3 else "waits=3+"


class MahjongTask(Task):
    """Which tiles complete a 13-tile hand; graded by exact set match with precision/recall."""

    name = KIND

    def __init__(self, examples: Sequence[Example]) -> None:
        self._examples = list(examples)

    @staticmethod
    def question_for(counts: Sequence[int]) -> str:
        return f"Hand: {format_counts(counts)}\nWhich tiles complete this hand?"

    @classmethod
    def example_for(cls, counts: Sequence[int], ident: str) -> Example:
        waits = winning_tiles(counts)
        return Example(
            id=ident, question=cls.question_for(counts), answer=format_tiles(waits), stratum=_stratum(len(waits))
        )

    @classmethod
    def from_jsonl(cls, path: str | Path, data: bytes | None = None) -> MahjongTask:
        """Load ``{"hand": "1123m 456p 789s EEEP"}`` lines; an ``answer`` field, if given, must be right."""
        examples: list[Example] = []
        seen: set[str] = set()
        for number, rec in read_records(path, ("hand",), data):
            ident = record_id(path, number, rec, seen)
            tiles = parse_tiles(rec["hand"])
            if tiles is None:
                raise TaskDataError(
                    path, number, f"cannot read hand {rec['hand']!r} (use notation like '123m 456p EEE')"
                )
            if len(tiles) != 13:
                raise TaskDataError(path, number, f"hand has {len(tiles)} tiles, expected 13")
            counts = to_counts(tiles)
            if max(counts) > 4:
                raise TaskDataError(
                    path, number, f"hand holds more than 4 of tile {tile_name(counts.index(max(counts)))}"
                )
            example = cls.example_for(counts, ident)
            if "answer" in rec:
                given = parse_tiles(str(rec["answer"])) if str(rec["answer"]).strip().lower() != NONE else []
                if given is None or set(given) != set(winning_tiles(counts)):
                    raise TaskDataError(
                        path, number, f"answer {rec['answer']!r} is wrong; the winning tiles are {example.answer}"
                    )
            examples.append(example)
        return cls(examples)

    @classmethod
    def generate(cls, *, seed: int = 0, size: int = 1000, single_suit: float = 0.3) -> MahjongTask:
        """``size`` distinct seeded tenpai hands; ``single_suit`` is the share of one-suit hands (many waits)."""
        if not 0.0 <= single_suit <= 1.0:
            raise TaskConfigError("mahjong generator option single_suit must be between 0 and 1")
        rng = random.Random(f"mahjong:{seed}")
        seen: set[tuple[int, ...]] = set()
        examples: list[Example] = []
        attempts = 0
        while len(examples) < size:
            attempts += 1
            if attempts > size * 50:
                raise TaskConfigError(f"cannot generate {size} distinct mahjong hands; ask for fewer")
            counts = generate_hand(rng, rng.random() < single_suit)
            if tuple(counts) in seen:
                continue
            seen.add(tuple(counts))
            examples.append(cls.example_for(counts, f"mahjong-{seed}-{len(examples)}"))
        return cls(examples)

    def examples(self) -> Sequence[Example]:
        return self._examples

    def system_prompt(self) -> str:
        return SYSTEM_PROMPT

    def extract_answer(self, output: str) -> str | None:
        return self._extract(output)[0]

    def _extract(self, output: str) -> tuple[str | None, Extraction | None]:
        """The winning tiles in canonical form and how they were found (the Answer: line, ####, \\boxed{})."""
        text, how = final_answer(output)
        if text is None:
            return None, None
        if text.lower().strip(".") in (NONE, "nothing", "no tiles"):
            return NONE, how
        tiles = parse_tiles(text)
        return (None, None) if tiles is None else (format_tiles(sorted(set(tiles))), how)

    def grade(self, output: str, example: Example) -> Grade:
        got, how = self._extract(output)
        if got is None:
            return Grade(correct=False, extracted=None, precision=0.0, recall=0.0)
        predicted = _tile_set(got)
        truth = _tile_set(example.answer)
        precision, recall = precision_recall(predicted, truth)
        return Grade(correct=predicted == truth, extracted=got, precision=precision, recall=recall, extraction=how)

    def check_steps(self, output: str, example: Example) -> StepCheck:
        hand = _hand_of(example.question)
        if hand is None:
            return super().check_steps(output, example)
        grouped: set[int] = set()
        for line in reasoning_body(output).splitlines():
            m = _GROUPING.match(line)
            if m is None:
                continue
            problem = _check_grouping(hand, m)
            if problem:
                return StepCheck(ok=False, reason=f"{problem}: '{line.strip()}'")
            tile = parse_tiles(m.group("tile"))
            grouped.update(tile or [])
        answer = self.extract_answer(output)
        claimed = _tile_set(answer) if answer else set()
        if not grouped and claimed:
            return StepCheck(ok=False, reason="no tile groupings such as 'with 4m: 123m 456p 789s EEE + 55m'")
        missing = claimed - {tile_name(t) for t in grouped}
        if missing:
            return StepCheck(ok=False, reason=f"no grouping shown for {', '.join(sorted(missing))}")
        if not claimed:
            return super().check_steps(output, example)
        return StepCheck(ok=True)

    def reference_trace(self, example: Example) -> str:
        hand = _hand_of(example.question)
        if hand is None:
            raise TaskDataError("<question>", 0, f"no 'Hand:' line in mahjong example '{example.id}'")
        lines = [f"Hand: {format_counts(hand)}", "Try adding each tile that is not already held four times."]
        waits = winning_tiles(hand)
        for t in waits:
            lines.append(_grouping_line(hand, t))
        lines.append("No other tile completes the hand." if waits else "No tile completes the hand.")
        lines.append(f"{ANSWER_MARKER} {format_tiles(waits)}")
        return "\n".join(lines)

    def wrong_trace(self, example: Example, rng: random.Random) -> str:
        hand = _hand_of(example.question)
        if hand is None:
            return super().wrong_trace(example, rng)
        waits = winning_tiles(hand)
        if len(waits) > 1 and rng.random() < 0.7:
            missed = rng.choice(waits)  # the classic mistake: overlooking one wait
            shown = [t for t in waits if t != missed]
        else:
            # a tile from the hand that is not a wait; if every one of them is, any other tile (never a wait)
            not_waits = [t for t in range(N_KINDS) if t not in waits]
            extra = rng.choice([t for t in not_waits if hand[t] > 0] or not_waits)
            shown = sorted([*waits, extra])
        lines = [f"Hand: {format_counts(hand)}"]
        lines += [_grouping_line(hand, t) for t in shown if t in waits]
        lines.append(f"{ANSWER_MARKER} {format_tiles(shown)}")
        return "\n".join(lines)


_GROUPING = re.compile(
    r"^\s*(?:[Ww]ith\s+)?(?P<tile>[1-9][mps]|[ESWNPFC])\s*:\s*(?:groups:?\s*)?(?P<melds>.+?)\s*\+\s*(?P<pair>\S+)\s*\.?\s*$",
)


def _tile_set(answer: str) -> set[str]:
    if answer.strip().lower() == NONE:
        return set()
    return {tile_name(t) for t in parse_tiles(answer) or []}


def _hand_of(question: str) -> Counts | None:
    m = re.search(r"Hand:\s*(.+)", question)
    tiles = parse_tiles(m.group(1)) if m else None
    if tiles is None or len(tiles) != 13:
        return None
    return to_counts(tiles)


def _grouping_line(hand: Counts, tile: int) -> str:
    full = list(hand)
    full[tile] += 1
    split = decomposition(full)
    assert split is not None, "a winning tile always has a decomposition"
    melds, pair = split
    return f"with {tile_name(tile)}: {' '.join(format_tiles(m) for m in melds)} + {format_tiles(pair)}"


def _check_grouping(hand: Counts, m: re.Match[str]) -> str:
    """Empty string when the grouping line is a valid split of hand + tile, else the reason."""
    tile = parse_tiles(m.group("tile"))
    melds = [parse_tiles(g) for g in m.group("melds").split()]
    pair = parse_tiles(m.group("pair"))
    if not tile or pair is None or any(g is None for g in melds):
        return "cannot read grouping"
    if len(melds) != 4:
        return "a grouping needs four melds and a pair"
    for g in melds:
        assert g is not None
        g.sort()
        pong = len(g) == 3 and g[0] == g[1] == g[2]
        chow = len(g) == 3 and g[2] < 27 and g[0] // 9 == g[2] // 9 and g[1] == g[0] + 1 and g[2] == g[0] + 2
        if not (pong or chow):
            return f"'{format_tiles(g)}' is not a pong or chow"
    if len(pair) != 2 or pair[0] != pair[1]:
        return f"'{m.group('pair')}' is not a pair"
    full = list(hand)
    full[tile[0]] += 1
    used = to_counts([t for g in melds if g for t in g] + pair)
    if used != full or max(full) > 4:
        return "groups do not use exactly the hand plus the winning tile"
    return ""


def task_for_prompt(system_prompt: str, question: str) -> tuple[Task, Example] | None:
    """Recognise a mahjong question under the mahjong system prompt (the simulator uses this)."""
    if system_prompt.strip() != SYSTEM_PROMPT:
        return None
    hand = _hand_of(question)
    if hand is None or max(hand) > 4:
        return None
    example = MahjongTask.example_for(hand, "prompt")
    example = example.model_copy(update={"question": question})
    return MahjongTask([example]), example


register_kind(
    TaskKind(
        name=KIND,
        load=lambda source: MahjongTask.from_jsonl(source.path, source.data),
        generate=MahjongTask.generate,
        generator_options=frozenset({"single_suit"}),
    )
)
