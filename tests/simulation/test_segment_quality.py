"""Segments keep their meaning (issue 15) on every simulate variant, three seeds each:
``run`` over the stream, then ``evaluate`` against the truth, next to batch sklearn
KMeans (k-means++, 10 starts) on the same final feature vectors.

What is not met yet is marked xfail (strict) with the figure it misses; BENCHMARKS.md
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
from workers.core.features import FeatureSpec
from workers.core.segments import feature_columns
from workers.io.drive import run_files
from workers.simulation.generator import VARIANTS, Variant, write_stream
from workers.simulation.quality import (
    SegmentQuality,
    adjusted_rand_index,
    evaluate_run,
    persons_of,
)

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
    return evaluate_run(folder / "out", truth), _batch_ari(folder / "out", truth, config)


def _batch_ari(out: Path, truth: dict[str, Any], config: Any) -> float:
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    profiles = [orjson.loads(line) for line in (out / "profiles.jsonl").read_bytes().splitlines()]
    used = set(orjson.loads((out / "personas.json").read_bytes())[0]["centroid"])
    spec = FeatureSpec(config.features)
    columns, weights = feature_columns(spec, config.segmentation)
    picked = [(spec.names[c], w) for c, w in zip(columns, weights, strict=True)
              if spec.names[c] in used]
    person_of = persons_of(profiles, truth)
    kept = [p for p in profiles if p["segment"] is not None and p["event_count"] >= 8
            and p["profile_id"] in person_of]
    matrix = StandardScaler().fit_transform(
        [[p["features"][name] for name, _ in picked] for p in kept]) * [w for _, w in picked]
    labels = KMeans(n_clusters=config.segmentation.n_clusters, init="k-means++", n_init=10,
                    random_state=0).fit_predict(matrix)
    behaviours = [truth["persons"][person_of[p["profile_id"]]]["persona"] for p in kept]
    return adjusted_rand_index(behaviours, [int(x) for x in labels])


def _known_gap(variant: str, seed: int, failing: set[tuple[str, int]], reason: str) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if (variant, seed) in failing else []
    return pytest.param(variant, seed, marks=marks, id=f"{variant}-{seed}")


# one_channel seed 3: without the channel features the warm-up's centres settle on two
# behaviours sharing a segment while another is split; the two halves of the split one
# trade the majority between versions (no id changes meaning, but that behaviour's
# segment changes with no lineage event), and batch KMeans on the final features finds
# a better partition (ARI 0.91 against 0.73). More fresh starts per check do not help.
ONE_CHANNEL_3 = {("one_channel", 3)}
LOCAL_OPTIMUM = "one_channel seed 3: a behaviour without a segment of its own (see above)"


@pytest.mark.parametrize(("variant", "seed"), [
    _known_gap(v, s, ONE_CHANNEL_3, LOCAL_OPTIMUM) for v, s in CASES])
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


@pytest.mark.parametrize(("variant", "seed"), [
    _known_gap(v, s, {("many_behaviours", s) for s in SEEDS} | ONE_CHANNEL_3,
               "many_behaviours: seven behaviours, five segments (n_clusters auto picks five"
               " too: two of the seven hardly differ in these features); " + LOCAL_OPTIMUM)
    for v, s in CASES])
def test_every_behaviour_has_a_segment_of_its_own(variant: Variant, seed: int) -> None:
    q, _ = scored(variant, seed)
    assert q.behaviours_with_own_segment == q.behaviours


@pytest.mark.parametrize(("variant", "seed"), [
    _known_gap(v, s, {("default", 1), ("changers", 1), ("changers", 3)} | ONE_CHANNEL_3,
               "hysteresis keeps a profile whose features sit between two segments where it"
               " was (batch KMeans has no memory): changers 0.66 vs 0.70 and 0.63 vs 0.67,"
               " default seed 1 0.882 vs 0.914; " + LOCAL_OPTIMUM)
    for v, s in CASES])
def test_online_ari_is_within_0_03_of_batch_kmeans(variant: Variant, seed: int) -> None:
    q, batch = scored(variant, seed)
    assert q.ari >= batch - 0.03, (q.ari, batch)


@pytest.mark.parametrize("seed", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=(
        "about half the changers end in their new behaviour's segment: decayed counts "
        "(half-life 14 days) still hold the old habits, payment shares and basket size "
        "are lifetime figures"))) for s in SEEDS])
def test_behaviour_changers_end_in_their_new_behaviours_segment(seed: int) -> None:
    q, _ = scored("changers", seed)
    assert q.changers > 50
    assert q.changers_in_new_segment >= 0.9


@pytest.mark.parametrize(("variant", "seed"), [
    _known_gap(v, s, ONE_CHANNEL_3, LOCAL_OPTIMUM + ": 0.113 moves per steady person")
    for v, s in CASES])
def test_steady_people_rarely_move(variant: Variant, seed: int) -> None:
    q, _ = scored(variant, seed)
    assert q.moves_per_steady_person <= 0.1


def test_the_figures_are_a_plain_record() -> None:
    q, _ = scored("default", 1)
    assert set(dataclasses.asdict(q)) >= {"ari", "ids_changed_meaning", "empty_segments"}
