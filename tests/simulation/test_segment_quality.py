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
# five too, and nothing measured on the data asks for seven (BENCHMARKS.md): on the model's
# final window the silhouette is highest at k = 5 (0.366, 0.387, 0.379; at 7 0.304, 0.355,
# 0.373), prediction strength at k = 7 is 0.44-0.67, the gap statistic's elbow is at 5 as
# on default, BIC asks for as many as allowed; a 2-means split inside a behaviour (4.7-5.3
# pooled standard deviations) separates more than cart abandoners from premium shoppers
# (3.4) or video learners from B2B researchers (3.6). Told k = 7, the online model gives 6/7
# behaviours a segment (ARI 0.11-0.17 below batch with k = 7, 0.15-0.17 moves per steady
# person): each extra behaviour is one of the five with another event mix.
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


# Scored per person (the profile active most recently; evaluate says why): 0.72, 0.66, 0.76.
# Not reachable on these streams by any model: 3-7% of the changers' latest profiles have no
# event after the change, and 15-17 changers became e-mail readers whose latest profile has
# no e-mail since (their e-mails reach another, unlinked profile, or none): it holds only
# site visits, which look like another behaviour. So at most 0.89, 0.86, 0.87 for a model
# that places people by what it sees. Batch KMeans on the same final features places 0.76,
# 0.73, 0.76. Other hysteresis and half-life settings, a hysteresis scaled by the recent
# evidence, moves confirmed a day later, an absolute margin: none better (BENCHMARKS.md).
@pytest.mark.parametrize("seed", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=(
        "0.72, 0.66, 0.76 of the changers end in their new behaviour's segment; unseen and"
        " unlinked profiles cap it at 0.89, 0.86, 0.87 (see above)"))) for s in SEEDS])
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
