"""Pure helpers behind bench/experiments and bench/selection_quality (the experiments themselves are benchmarks)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

from bench.experiments.report import IMAGES, common_args, parse_args
from bench.experiments.stats import pct_ci, ranks, spearman
from bench.selection_quality import compare, generate_jobs, place_all
from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.strategies import Selection, select
from stratos_selector.domain.table import ServerTable


def test_ranks_share_the_average_rank_on_ties() -> None:
    assert ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]


def test_spearman_matches_a_worked_example() -> None:
    # Textbook example (IQ vs hours of TV, Wikipedia "Spearman's rank correlation coefficient"): rho = -29/165.
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    assert spearman(iq, tv) == pytest.approx(-29 / 165)


def test_spearman_with_ties_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    x = [0.0, 0.0, 0.1, 0.1, 0.3]
    y = [0.05, 0.12, 0.11, 0.2, 0.4]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_spearman_is_undefined_for_a_constant_ranking() -> None:
    assert spearman([0.0, 0.0, 0.0], [0.1, 0.2, 0.3]) is None
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_accuracy_interval_is_printed_around_the_value() -> None:
    assert pct_ci(0.5, 100) == "50.0% [40.4%, 59.6%]"


def test_capacity_placement_never_overfills_a_server() -> None:
    table = ServerTable.from_servers(generate_catalog(40, seed=3))
    jobs = generate_jobs(30, seed=3)
    placed = place_all(table, jobs, "pareto", capacity=True)
    load: Counter[str] = Counter()
    for job in jobs:  # replay to learn where each placed job went
        if job.name in placed:
            result = select(table, job, strategy="pareto", load=load)
            assert isinstance(result, Selection)
            load[result.server.id] += 1
    capacity = {s.id: s.capacity for s in table.servers}
    assert load and all(n <= capacity[sid] for sid, n in load.items())
    # Without capacity the same strategy piles more than a server's capacity onto one server.
    free = Counter(r.server.id for j in jobs if isinstance(r := select(table, j, strategy="pareto"), Selection))
    assert any(n > capacity[sid] for sid, n in free.items())


def test_compare_scores_every_strategy_on_the_same_jobs() -> None:
    table = ServerTable.from_servers(generate_catalog(200, seed=0))
    rows = compare(table, generate_jobs(12, seed=0), ("pareto", "cost-first", "accuracy-first"), capacity=True)
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    assert len({r.compared for r in rows}) == 1 and rows[0].compared > 0
    by = {r.strategy: r for r in rows}
    assert by["cost-first"].total_cost_usd <= by["accuracy-first"].total_cost_usd
    assert by["accuracy-first"].accuracy == max(r.accuracy for r in rows)


def test_smoke_runs_keep_their_plots_out_of_docs() -> None:
    def images(*argv: str) -> Path:
        return Path(parse_args(common_args(argparse.ArgumentParser()), list(argv)).images)

    assert images() == IMAGES
    assert images("--quick") != IMAGES
    assert images("--quick", "--images", "/tmp/here") == Path("/tmp/here")


def test_regenerating_the_results_keeps_the_sections_measured_outside_the_script(tmp_path: Path) -> None:
    from bench.experiments.run_all import KEPT, kept_tail

    doc = tmp_path / "results.md"
    assert kept_tail(doc) == ""
    doc.write_text(f"# old generated part\n\n{KEPT}\n\n## A real teacher\n\nmeasured by hand\n")
    assert kept_tail(doc) == f"{KEPT}\n\n## A real teacher\n\nmeasured by hand\n"
