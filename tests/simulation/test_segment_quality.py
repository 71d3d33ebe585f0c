"""Segments keep their meaning (issue 15) on every simulate variant, three seeds each:
``run`` over the stream, then ``evaluate`` against the truth, next to batch sklearn
KMeans (k-means++, 10 starts) on the same final feature vectors.

What is not met is marked xfail (strict) with the figure it misses; BENCHMARKS.md
(``bench.py quality``) has the figures on 2,000-person streams.
"""

from __future__ import annotations

import dataclasses
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.io.drive import run_files
from workers.simulation.generator import VARIANTS, Variant, write_stream
from workers.simulation.quality import SegmentQuality, batch_kmeans_ari, evaluate_run

SEEDS = (1, 2, 3)
PEOPLE = 1200
DAYS = 21
CASES = [(v, s) for v in VARIANTS for s in SEEDS]
_TMP = tempfile.TemporaryDirectory(prefix="persona-stream-quality-")


@cache
def scored(variant: Variant, seed: int) -> tuple[SegmentQuality, float]:
    """evaluate's figures, and the batch KMeans ARI on the same profiles and features."""
    folder = Path(_TMP.name) / f"{variant}-{seed}"
    folder.mkdir()
    source, truth_path = folder / "in.jsonl", folder / "truth.json"
    write_stream(str(source), PEOPLE, seed, truth=str(truth_path), days=DAYS, variant=variant)
    truth = orjson.loads(truth_path.read_bytes())
    config = load()
    run_files(config, [str(source)], folder / "out")
    return evaluate_run(folder / "out", truth), batch_kmeans_ari(folder / "out", truth, config)


def _known_gap(variant: str, seed: int, failing: set[tuple[str, int]], reason: str) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if (variant, seed) in failing else []
    return pytest.param(variant, seed, marks=marks, id=f"{variant}-{seed}")


@pytest.mark.parametrize(("variant", "seed"), CASES)
def test_no_segment_id_changes_meaning_and_behaviours_move_only_through_lineage(
        variant: Variant, seed: int) -> None:
    q, _ = scored(variant, seed)
    assert q.versions >= 2
    assert q.ids_changed_meaning == 0
    assert q.behaviour_moves_without_lineage == 0


@pytest.mark.parametrize(("variant", "seed"), CASES)
def test_no_empty_segment_and_every_card_value_in_its_feature_range(
        variant: Variant, seed: int) -> None:
    q, _ = scored(variant, seed)
    assert q.empty_segments == 0
    assert q.card_values_out_of_domain == 0


# many_behaviours: seven behaviours for the default five segments; n_clusters auto picks
# five too. Batch KMeans with k = 7 on the recent features separates all seven (seed 1:
# ARI 0.845 against 0.712 with k = 5), but nothing in the geometry asks for seven: the
# silhouette is highest at k = 5 (0.316 against 0.305 at k = 7), as are Calinski-Harabasz
# (k = 5), Davies-Bouldin (k = 4) and prediction strength (0.97 at k = 5, 0.45-0.57 at
# k = 7 on seeds 1-3); BIC keeps rising with k; the inertia falls 6% from 5 to 6 centres
# as on default (7%); a 2-means split of each true behaviour separates its halves more
# (premium shoppers 6.9, by recent orders) than cart abandoners are from premium shoppers
# (3.7). Even told k = 7 the online model gives 6/7 behaviours a segment (ARI 0.07-0.25
# below batch, 0.16-0.24 moves per steady person): each extra behaviour is one of the five
# with another event mix (same devices, channels, hours).
@pytest.mark.parametrize(("variant", "seed"), [
    _known_gap(v, s, {("many_behaviours", s) for s in SEEDS},
               "many_behaviours: seven behaviours, five segments (n_clusters auto picks five"
               " too: the silhouette peaks at k = 5; see above)")
    for v, s in CASES])
def test_every_behaviour_has_a_segment_of_its_own(variant: Variant, seed: int) -> None:
    q, _ = scored(variant, seed)
    assert q.behaviours_with_own_segment == q.behaviours


@pytest.mark.parametrize(("variant", "seed"), CASES)
def test_online_ari_is_within_0_03_of_batch_kmeans(variant: Variant, seed: int) -> None:
    q, batch = scored(variant, seed)
    assert q.ari >= batch - 0.03, (q.ari, batch)


# Scored per person (the profile active most recently; evaluate says why): 0.71, 0.66, 0.72
# (0.58, 0.56, 0.60 per profile). Not reachable on these streams by any model: 3-7% of the
# changers' latest profiles have no event after the change, and 5-7% became e-mail
# readers whose e-mails reach no profile of theirs that is seen (another, unlinked one,
# or none): the latest holds only their site visits, which look like another behaviour.
# So no model gets past 0.91, 0.88, 0.88. Batch KMeans on the same final features places
# 0.76, 0.72, 0.75; with no hysteresis and a 2-day recent set (0.41 moves per steady
# person) seed 1 reaches 0.80. Other hysteresis and half-life settings, a hysteresis scaled
# by the recent evidence and moves confirmed a day later: none better (BENCHMARKS.md).
@pytest.mark.parametrize("seed", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=(
        "0.71, 0.66, 0.72 of the changers end in their new behaviour's segment; unseen and"
        " unlinked profiles cap it at 0.91, 0.88, 0.88 (see above)"))) for s in SEEDS])
def test_behaviour_changers_end_in_their_new_behaviours_segment(seed: int) -> None:
    q, _ = scored("changers", seed)
    assert q.changers > 50
    assert q.changers_in_new_segment >= 0.9


@pytest.mark.parametrize(("variant", "seed"), CASES)
def test_steady_people_rarely_move(variant: Variant, seed: int) -> None:
    q, _ = scored(variant, seed)
    assert q.moves_per_steady_person <= 0.1


def test_the_figures_are_a_plain_record() -> None:
    q, _ = scored("default", 1)
    assert set(dataclasses.asdict(q)) >= {"ari", "ids_changed_meaning", "empty_segments"}
