"""What an experiment hands to run_all: a docs section (setup, table, plot, interpretation) and its plot helpers."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"


@dataclass
class Section:
    """One experiment's part of docs/results.md; every number in it comes from the run."""

    title: str
    command: str
    setup: str
    table: str
    interpretation: str
    plot: Path | None = None
    seconds: float = 0.0
    extra_tables: list[str] = field(default_factory=list)
    summary: list[tuple[str, str, str]] = field(default_factory=list)
    """Rows for the page's at-a-glance table: (result, paper, measured here)."""

    def markdown(self, doc_dir: Path) -> str:
        parts = [f"## {self.title}", self.setup, f"Reproduce: `{self.command}`", self.table, *self.extra_tables]
        if self.plot is not None:
            parts.append(f"![{self.title}]({Path(os.path.relpath(self.plot, doc_dir)).as_posix()})")
        parts.append(self.interpretation)
        took = f"{self.seconds:.0f} s" if self.seconds < 90 else f"{self.seconds / 60:.1f} min"
        parts.append(f"*Measured in {took} on this machine.*")
        return "\n\n".join(parts)


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags every experiment takes, so run_all can hand the same ones to each."""
    parser.add_argument("--quick", action="store_true", help="smoke size (minutes, numbers not meaningful)")
    parser.add_argument("--seed", type=int, default=0, help="seed for tasks, simulator and training")
    parser.add_argument("--images", type=Path, default=IMAGES, help="where the PNG plot goes")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; a smoke run's plots go to a temporary folder unless ``--images`` says where (docs/ is for full runs)."""
    args = parser.parse_args(argv)
    if args.quick and args.images == IMAGES:
        args.images = Path(tempfile.gettempdir()) / "stratos-results-quick"
    return args


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` gives one of l/r per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save(fig: Figure, images: Path, name: str) -> Path:
    images.mkdir(parents=True, exist_ok=True)
    path = images / f"results-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
