"""Each training attempt's artifacts: the first where they always were, later ones in their own folder."""

from __future__ import annotations

from stratos_shared.layout import Artifact, AttemptArtifacts


def test_the_first_attempt_keeps_the_top_level_names() -> None:
    first = AttemptArtifacts(1)
    assert (first.latest, first.baseline, first.model(True)) == (
        Artifact.LATEST_CHECKPOINT,
        Artifact.BASELINE,
        Artifact.ADAPTER,
    )
    assert first.checkpoint(2, 40) == "checkpoints/r2-step-40.tar.gz"


def test_a_continue_attempt_has_its_own_checkpoints_and_shares_its_lines_baseline() -> None:
    continued = AttemptArtifacts(3, lineage=2)
    assert continued.latest == "attempts/3/checkpoints/latest.json"
    assert continued.checkpoint(1, 20) == "attempts/3/checkpoints/r1-step-20.tar.gz"
    assert continued.model(False) == "attempts/3/model/full.tar.gz"
    assert continued.baseline == "attempts/2/training/before.json"
    assert continued.warm_start_model == "attempts/2/model/warm-start.tar.gz"
