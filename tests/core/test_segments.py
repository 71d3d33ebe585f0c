"""Online segmentation (workers/segments.py): warm-up, determinism, assignment with
hysteresis, scores, explanations and stable segment ids across model versions.

Fast: synthetic feature vectors drawn from well separated blobs, no broker.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.config import load
from workers.core.features import FeatureSpec
from workers.core.segments import (
    Assignment,
    LearnedWindow,
    Segment,
    SegmentModel,
    Snapshot,
    _quote,
    assign,
    choose,
    explain,
)
from workers.testing import output_under_other_hashseed

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load()
SPEC = FeatureSpec(CONFIG.features)
WARMUP = 80
K = 4
CFG = dataclasses.replace(CONFIG.segmentation, warmup_profiles=WARMUP, n_clusters=K,
                          snapshot_every_learns=50)

# each blob: features set high (others near 0); picked among the model's weighted columns
BLOBS = [
    {"recent.type.email_open": 0.7, "recent.channel.email": 0.9},
    {"recent.type.product_view": 0.6, "recent.channel.web": 0.9,
     "recent.device.desktop": 0.8},
    {"recent.type.app_open": 0.7, "recent.channel.mobile_app": 0.9,
     "recent.device.mobile": 0.9},
    {"recent.type.ad_click": 0.6, "recent.channel.ads": 0.8, "recent.aov_log": 4.0},
]


def blob_vector(rng: random.Random, blob: int, shift: float = 0.0) -> list[float]:
    v = [0.0] * len(SPEC.names)
    for name, value in BLOBS[blob].items():
        v[SPEC.index[name]] = value + shift + rng.gauss(0.0, 0.01)
    return v


def blob_stream(seed: int, n: int, shift: float = 0.0,
                balanced: bool = False) -> list[tuple[int, list[float]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        blob = i % K if i < K or balanced else rng.randrange(K)
        out.append((blob, blob_vector(rng, blob, shift)))
    return out


def warmed_model(seed: int = 1) -> tuple[SegmentModel, list[tuple[int, list[float]]]]:
    model = SegmentModel(CFG, SPEC)
    stream = blob_stream(seed, WARMUP)
    for _, v in stream:
        model.learn(v)
    assert model.snapshot is not None
    return model, stream


def place(snapshot: Snapshot, v: list[float], current: int | None = None,
          hysteresis: float = 0.0) -> Assignment:
    """Where ``assign`` puts a profile of whole feature vector ``v``."""
    return assign(snapshot, snapshot.transform(snapshot.pick(v)), current, hysteresis)


def snapshot_fingerprint(snapshot: Snapshot | None) -> str:
    return repr(snapshot)


# ---- warm-up and determinism --------------------------------------------------------


def test_first_snapshot_is_published_exactly_at_warmup() -> None:
    model = SegmentModel(CFG, SPEC)
    stream = blob_stream(3, WARMUP)
    for _, v in stream[:-1]:
        assert model.learn(v) is None
        assert model.snapshot is None
        assert model.warming_up
    snapshot = model.learn(stream[-1][1])
    assert snapshot is not None
    assert model.snapshot is snapshot
    assert not model.warming_up
    assert snapshot.version == 1
    assert len(snapshot.segments) == K
    assert sorted(s.id for s in snapshot.segments) == list(range(K))
    # only the features that vary are clustered: every other one is the same for everyone
    assert {SPEC.names[c] for c in snapshot.columns} == {f for blob in BLOBS for f in blob}
    assert set(snapshot.columns) < set(model.columns)


def test_warmup_finds_the_blobs() -> None:
    model, stream = warmed_model()
    snapshot = model.snapshot
    assert snapshot is not None
    by_blob: dict[int, set[int]] = {}
    for blob, v in stream:
        result = place(snapshot, v, None, CFG.hysteresis)
        by_blob.setdefault(blob, set()).add(result.segment_id)
    # every blob lands in exactly one segment, a different one per blob
    assert all(len(s) == 1 for s in by_blob.values())
    assert len(set.union(*by_blob.values())) == K


def _run_model(seed: int) -> list[str]:
    model = SegmentModel(CFG, SPEC)
    out = []
    for _, v in blob_stream(seed, WARMUP) + blob_stream(seed + 1, 200, shift=0.15):
        snapshot = model.learn(v)
        if snapshot is not None:
            out.append(snapshot_fingerprint(snapshot))
    out.append(snapshot_fingerprint(model.snapshot))
    out.append(repr(sorted((k, sorted(c.items())) for k, c in model.clusterer.centers.items())))
    return out


def test_two_models_fed_the_same_vectors_give_identical_snapshots() -> None:
    first, second = _run_model(7), _run_model(7)
    assert first == second
    assert len(first) >= 3  # at least the warm-up snapshot and the final state


_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import test_segments
print(hashlib.sha256(repr(test_segments._run_model(7)).encode()).hexdigest())
"""


def test_snapshots_do_not_depend_on_pythonhashseed() -> None:
    import hashlib

    expected = hashlib.sha256(repr(_run_model(7)).encode()).hexdigest()
    script = _SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests" / "core"))
    assert output_under_other_hashseed(script, timeout=60) == expected


# ---- assign, score ------------------------------------------------------------------


def two_segment_snapshot() -> Snapshot:
    columns = (SPEC.index["channel.email"], SPEC.index["channel.web"])
    return Snapshot(version=1, columns=columns, weights=(1.0, 1.0), mean=(0.0, 0.0),
                    std=(1.0, 1.0), segments=(Segment(0, (0.0, 0.0)), Segment(1, (10.0, 0.0))),
                    lo=(-100.0, -100.0), hi=(100.0, 100.0))


def test_assign_picks_the_nearest_segment() -> None:
    snap = two_segment_snapshot()
    assert assign(snap, [1.0, 3.0], None, 0.15).segment_id == 0
    assert assign(snap, [9.0, -3.0], None, 0.15).segment_id == 1
    result = assign(snap, [4.9, 0.0], None, 0.15)
    assert result.segment_id == 0
    assert result.changed


def test_assign_nearest_among_many_random_segments() -> None:
    rng = random.Random(5)
    segments = tuple(Segment(i * 3 + 1, tuple(rng.uniform(-5, 5) for _ in range(3)))
                     for i in range(6))
    snap = Snapshot(1, (0, 1, 2), (1.0,) * 3, (0.0,) * 3, (1.0,) * 3, segments,
                    (-100.0,) * 3, (100.0,) * 3)
    for _ in range(200):
        z = [rng.uniform(-6, 6) for _ in range(3)]
        nearest = min(segments, key=lambda s: math.dist(z, s.centroid))
        assert assign(snap, z, None, 0.15).segment_id == nearest.id
        # hysteresis 0: always the nearest, whatever the current segment
        assert assign(snap, z, segments[0].id, 0.0).segment_id == nearest.id


def assign_over_every_segment(snapshot: Snapshot, z: list[float], current: int | None,
                              hysteresis: float) -> Assignment:
    """assign() as first written: math.dist to every segment."""
    return choose(snapshot.distances(z), current, hysteresis)


_coordinate = st.one_of(st.floats(-10, 10), st.sampled_from([0.0, -0.0, 1e-160, 5e-324, 1e155,
                                                             -1e200, math.nan, math.inf]))


@given(st.data(), st.integers(1, 9), st.integers(1, 4), st.sampled_from([0.0, 0.15, 1.0]))
def test_assign_measures_only_the_segments_that_can_decide(
        data: st.DataObject, k: int, n: int, hysteresis: float) -> None:
    """assign() measures exactly (math.dist) only the segments Placement.deciding names:
    the same segment, change and score, to the bit, as measuring every one, on points
    at the same distance from two centroids, on a centroid, and with values whose
    squares are no normal doubles."""
    centroids = data.draw(st.lists(st.tuples(*[_coordinate] * n), min_size=k, max_size=k))
    segments = tuple(Segment(3 * j + 1, c) for j, c in enumerate(centroids))
    snap = Snapshot(1, tuple(range(n)), (1.0,) * n, (0.0,) * n, (1.0,) * n, segments,
                    (-1e308,) * n, (1e308,) * n)
    a, b = data.draw(st.integers(0, k - 1)), data.draw(st.integers(0, k - 1))
    mix = data.draw(st.sampled_from([0.5, 0.0, 1.0, 0.25]) | st.floats(0, 1))
    z = data.draw(st.sampled_from([
        [x * mix + y * (1 - mix) for x, y in zip(centroids[a], centroids[b], strict=True)],
        [data.draw(_coordinate) for _ in range(n)]]))
    current = data.draw(st.sampled_from([None, 99, *[s.id for s in segments]]))
    got = assign(snap, z, current, hysteresis)
    expected = assign_over_every_segment(snap, z, current, hysteresis)
    assert (got.segment_id, got.changed) == (expected.segment_id, expected.changed)
    assert same_double(got.score, expected.score)


def test_assign_measures_few_segments_of_many() -> None:
    """The point of deciding(): of 8 segments, a profile near one is measured against it,
    its runner-up, and its current segment."""
    rng = random.Random(3)
    segments = tuple(Segment(j, tuple(rng.uniform(-5, 5) for _ in range(6))) for j in range(8))
    snap = Snapshot(1, tuple(range(6)), (1.0,) * 6, (0.0,) * 6, (1.0,) * 6, segments,
                    (-100.0,) * 6, (100.0,) * 6)
    z = [v + 0.01 for v in segments[2].centroid]
    assert len(snap.placement.deciding(z, None)) == 2
    assert len(snap.placement.deciding(z, 7)) == 3
    assert snap.placement.deciding([math.nan] * 6, None) == list(range(8))


@pytest.mark.parametrize(("x", "moves"), [
    (4.0, True),    # d0=4.0, d1=6.0: 33% closer -> moves
    (4.5, True),    # d0=4.5, d1=5.5: 18% closer -> moves
    (4.7, False),   # d0=4.7, d1=5.3: 11% closer -> stays
    (4.95, False),  # barely closer -> stays
])
def test_hysteresis_keeps_the_current_segment_unless_clearly_closer(x: float,
                                                                     moves: bool) -> None:
    snap = two_segment_snapshot()
    result = assign(snap, [x, 0.0], 1, 0.15)
    assert result.segment_id == (0 if moves else 1)
    assert result.changed is moves
    # without a current segment the nearest is always taken
    assert assign(snap, [x, 0.0], None, 0.15).segment_id == 0
    # staying where one already is nearest is not a change
    same = assign(snap, [x, 0.0], 0, 0.15)
    assert same.segment_id == 0
    assert not same.changed


@pytest.mark.parametrize("hysteresis", [0.0, CFG.hysteresis, 1.0])
def test_stays_only_for_profiles_assign_would_not_move(hysteresis: float) -> None:
    """The per-profile check a tick uses to skip an assessment (and its outputs): never
    a profile assign() would move, on a boundary or with an unknown segment, and it does
    skip nearly all the others."""
    model, _ = warmed_model()
    snapshot = model.snapshot
    assert snapshot is not None
    rng = random.Random(11)
    ids = [s.id for s in snapshot.segments]
    skipped = unmoved = 0
    for i in range(3000):
        a, b = rng.sample(range(K), 2)
        mix = rng.random() if i % 3 else 0.5 + rng.uniform(-1e-3, 1e-3)
        v = [x * mix + y * (1 - mix) for x, y in zip(blob_vector(rng, a), blob_vector(rng, b),
                                                      strict=True)]
        current = None if i % 7 == 0 else (99 if i % 11 == 0 else rng.choice(ids))
        moved = place(snapshot, v, current, hysteresis).changed
        kept = snapshot.placement.stays(array("d", snapshot.pick(v)), current, hysteresis)
        assert not (kept and moved), (v, current)
        skipped += kept
        unmoved += not moved
    assert skipped > 0.95 * unmoved
    with pytest.raises(ValueError, match="columns"):
        snapshot.placement.stays(array("d", [0.0]), ids[0], hysteresis)


@pytest.mark.parametrize("hysteresis", [0.0, 0.15, 1.0])
def test_stays_on_and_near_the_border_and_at_a_centroid(hysteresis: float) -> None:
    """Where stays() can stop summing a segment early, its answer is still assign()'s:
    points swept across the border (and one ulp either side), points on a centroid
    (own distance 0, where every other segment is far at once), a tiny own distance
    (whose square is not a normal double) and huge ones."""
    snap = two_segment_snapshot()
    xs = [x for k in range(-40, 441) for x in (k / 40, math.nextafter(k / 40, math.inf),
                                                math.nextafter(k / 40, -math.inf))]
    xs += [0.0, 10.0, 1e-160, 10.0 - 1e-14, 1e150, -1e150, 5.0]
    for x in xs:
        for y in (0.0, 1e-160, 3.0):
            for current in (0, 1):
                moved = assign(snap, [x, y], current, hysteresis).changed
                kept = snap.placement.stays(array("d", [x, y]), current, hysteresis)
                assert not (kept and moved), (x, y, current)
                if not moved and abs(x - 5.0) > 1.0 and hysteresis < 1.0 and abs(x) < 1e100:
                    assert kept, (x, y, current)  # clearly inside: skipped


def same_double(a: float, b: float) -> bool:
    """The same double: NaN is NaN, and 0.0 is not -0.0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_quote_is_round_to_six_digits_for_any_double(value: float) -> None:
    assert same_double(_quote(value), round(value, 6) + 0.0)


def test_quote_is_round_to_six_digits_at_ties_and_over_magnitudes() -> None:
    """Values next to a 6-digit tie (x.xxxxxx5, as written and one ulp either side) and
    random values of every magnitude: the fast path gives round()'s double, bit for bit
    (ties go to round(): rounding them up fails here, compiled and pure)."""
    rng = random.Random(11)
    values = []
    for _ in range(20_000):
        tie = (rng.randrange(-10**9, 10**9) + 0.5) / 1e6
        values += [tie, math.nextafter(tie, math.inf), math.nextafter(tie, -math.inf)]
        values.append(rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 16))
        values.append(rng.choice((1, -1)) * rng.randrange(10**12) / 10**rng.randrange(13))
    values += [0.0, -0.0, 5e-7, -5e-7, 2.5e-6, 1.0000005, 5e-324]
    values += [s * (2.0 ** 52 - k) / 1e6 for k in (0, 0.5, 1, 1.5) for s in (1, -1)]
    assert [v for v in values if not same_double(_quote(v), round(v, 6) + 0.0)] == []


def test_score_is_one_at_a_centroid_zero_on_the_border_and_in_range() -> None:
    snap = two_segment_snapshot()
    assert assign(snap, [0.0, 0.0], None, 0.15).score == 1.0
    assert assign(snap, [10.0, 0.0], None, 0.15).score == 1.0
    assert assign(snap, [5.0, 0.0], None, 0.15).score == pytest.approx(0.0, abs=1e-9)
    assert assign(snap, [5.0, 7.0], None, 0.15).score == pytest.approx(0.0, abs=1e-9)
    near = assign(snap, [1.0, 0.0], None, 0.15).score
    far = assign(snap, [4.0, 0.0], None, 0.15).score
    assert 1.0 > near > far > 0.0
    rng = random.Random(2)
    for _ in range(300):
        z = [rng.uniform(-20, 30), rng.uniform(-20, 20)]
        for current in (None, 0, 1):
            assert 0.0 <= assign(snap, z, current, 0.15).score <= 1.0


# ---- explain -----------------------------------------------------------------------


def test_explain_names_features_that_deviate_with_the_segment() -> None:
    model, stream = warmed_model()
    snapshot = model.snapshot
    assert snapshot is not None
    size = CONFIG.output.explanation_size
    checked = 0
    for _, v in stream:
        z = snapshot.transform(snapshot.pick(v))
        sid = assign(snapshot, z, None, CFG.hysteresis).segment_id
        seg = snapshot.segment(sid)
        assert seg is not None
        items = explain(snapshot, z, sid, snapshot.pick(v), SPEC.names, size)
        assert 0 < len(items) <= size
        raw_centroid = snapshot.raw(seg.centroid)
        contributions = []
        for item in items:
            i = snapshot.columns.index(SPEC.index[item["feature"]])
            zi, ci = z[i], seg.centroid[i]
            # profile and segment on the same side of the population mean
            assert zi * ci > 0, item
            assert (item["value"] - item["population_value"]) * (
                item["segment_value"] - item["population_value"]) > 0, item
            assert item["value"] == pytest.approx(v[SPEC.index[item["feature"]]], abs=1e-6)
            assert item["segment_value"] == pytest.approx(raw_centroid[i], abs=1e-6)
            assert item["population_value"] == pytest.approx(snapshot.mean[i], abs=1e-6)
            contributions.append(2 * zi * ci - ci * ci)
        assert all(c > 0 for c in contributions)
        assert contributions == sorted(contributions, reverse=True)
        # nothing left out is more telling than what is listed
        rest = [2 * a * b - b * b for j, (a, b) in enumerate(zip(z, seg.centroid, strict=True))
                if snapshot.columns[j] not in {SPEC.index[it["feature"]] for it in items}]
        if len(items) == size:
            assert max(rest) <= min(contributions) + 1e-12
        else:
            assert all(r <= 0 for r in rest)
        checked += 1
    assert checked == WARMUP


def test_explain_of_an_email_profile_names_email() -> None:
    model, _ = warmed_model()
    snapshot = model.snapshot
    assert snapshot is not None
    v = blob_vector(random.Random(99), 0)
    z = snapshot.transform(snapshot.pick(v))
    sid = assign(snapshot, z, None, CFG.hysteresis).segment_id
    values = snapshot.pick(v)
    features = [it["feature"] for it in explain(snapshot, z, sid, values, SPEC.names, 5)]
    assert {"recent.channel.email", "recent.type.email_open"} <= set(features[:3])
    assert explain(snapshot, z, sid, values, SPEC.names, 1) == explain(
        snapshot, z, sid, values, SPEC.names, 5)[:1]


def test_explain_breaks_ties_by_column_and_leaves_out_what_does_not_count() -> None:
    """Equal shares come in column order, the largest first; a share of 0 or less, or NaN,
    is never listed."""
    names = ["channel.email", "channel.web", "channel.mobile_app", "device.mobile",
             "device.desktop"]
    columns = tuple(SPEC.index[n] for n in names)
    snap = Snapshot(version=1, columns=columns, weights=(1.0,) * 5, mean=(0.0,) * 5,
                    std=(1.0,) * 5, segments=(Segment(3, (1.0, 2.0, 1.0, 1.0, -1.0)),),
                    lo=(-100.0,) * 5, hi=(100.0,) * 5)
    # shares 2*z*c - c*c: 1, 0, 1, 3, NaN (z = 1, 1, 1, 2, NaN)
    z = [1.0, 1.0, 1.0, 2.0, math.nan]
    listed = [it["feature"] for it in explain(snap, z, 3, [0.0] * 5, SPEC.names, 5)]
    assert listed == ["device.mobile", "channel.email", "channel.mobile_app"]
    assert [it["feature"] for it in explain(snap, z, 3, [0.0] * 5, SPEC.names, 2)] == [
        "device.mobile", "channel.email"]


def test_explain_unknown_segment_is_empty() -> None:
    snap = two_segment_snapshot()
    assert explain(snap, [1.0, 1.0], 99, [0.0, 0.0], SPEC.names, 5) == []


# ---- versions and stable ids -------------------------------------------------------


def test_drift_publishes_new_versions_with_stable_ids() -> None:
    model, _ = warmed_model(seed=2)
    first = model.snapshot
    assert first is not None
    published = [first]
    # the blobs move a little: centroids drift, a new model is published
    for i, (_, v) in enumerate(blob_stream(5, 600, shift=0.15)):
        snapshot = model.learn(v, ts=i * 3600.0)  # one learn an hour of event time
        if snapshot is not None:
            published.append(snapshot)
    assert len(published) >= 2, "a drift of the blobs must publish a new snapshot"
    assert [s.version for s in published] == list(range(1, len(published) + 1))
    for old, new in itertools.pairwise(published):
        assert {s.id for s in new.segments} == {s.id for s in old.segments}
    # the same blob keeps its segment id across versions
    rng = random.Random(8)
    for blob in range(K):
        v = blob_vector(rng, blob, shift=0.15)
        ids = {place(s, v).segment_id for s in published}
        assert len(ids) == 1, (blob, ids)


def test_versions_are_at_most_one_per_min_publish_interval() -> None:
    model, _ = warmed_model(seed=2)
    published = 0
    for _, v in blob_stream(5, 600, shift=0.15):
        published += model.learn(v, ts=100.0) is not None  # all within one interval
    assert published == 0
    assert model.snapshot is not None and model.snapshot.version == 1


def test_no_publish_without_drift() -> None:
    model = SegmentModel(CFG, SPEC)
    for _, v in blob_stream(2, WARMUP, balanced=True):
        model.learn(v)
    # the same blobs in the same proportions: centroids barely move
    for _, v in blob_stream(3, 400, balanced=True):
        assert model.learn(v) is None
    assert model.snapshot is not None
    assert model.snapshot.version == 1


def test_model_version_increases_by_one_per_publish() -> None:
    model = SegmentModel(dataclasses.replace(CFG, publish_shift=0.0,
                                             min_publish_interval_seconds=0.0), SPEC)
    versions = []
    for _, v in blob_stream(6, WARMUP) + blob_stream(7, 300, shift=0.2):
        snapshot = model.learn(v)
        if snapshot is not None:
            versions.append(snapshot.version)
    # publish_shift 0: every check (each snapshot_every_learns) publishes
    checks = [n for n in range(WARMUP + 1, WARMUP + 301) if n % CFG.snapshot_every_learns == 0]
    assert len(checks) >= 3
    assert versions == list(range(1, 2 + len(checks)))


@pytest.mark.parametrize("model", ["kmeans", "streamkmeans", "dbstream", "clustream"])
def test_every_selectable_river_model_segments_a_stream(model: str) -> None:
    """Each model named in the configuration runs the whole pipeline and publishes."""
    from workers.simulation.generator import simulate
    from workers.testing import pipeline_over

    lines, _, _ = simulate(400, seed=4, days=3)
    base = load()
    config = dataclasses.replace(base, segmentation=dataclasses.replace(
        base.segmentation, model=model, warmup_profiles=60))
    pipeline = pipeline_over(lines, config)
    snapshot = pipeline.model.snapshot
    assert snapshot is not None and len(snapshot.segments) >= 2
    assigned = [s.segment for s in pipeline.profiles.values() if s.segment is not None]
    assert len(set(assigned)) >= 2
    assert set(assigned) <= {seg.id for seg in snapshot.segments}


# ---- what real data cannot break ----------------------------------------------------


def _learn_all(model: SegmentModel, vectors: list[list[float]]) -> list[Snapshot]:
    published = []
    for i, v in enumerate(vectors):
        snapshot = model.learn(v, ts=i * 3600.0)
        if snapshot is not None:
            published.append(snapshot)
    return published


def test_a_feature_everyone_shares_is_left_out_and_makes_no_phantom_segment() -> None:
    """A web-only shop: channel.web is 1 for everyone."""
    vectors = []
    for _, v in blob_stream(4, 600):
        v[SPEC.index["recent.channel.web"]] = 1.0
        vectors.append(v)
    model = SegmentModel(CFG, SPEC)
    published = _learn_all(model, vectors)
    assert published
    for snapshot in published:
        assert SPEC.index["recent.channel.web"] not in snapshot.columns
        counts = {seg.id: 0 for seg in snapshot.segments}
        for v in vectors:
            counts[place(snapshot, v).segment_id] += 1
        assert all(counts.values()), counts  # no empty segment


def test_outliers_cannot_take_a_centroid_and_every_value_stays_in_its_domain() -> None:
    """A few profiles with absurd basket sizes and volumes: clipped, not a segment."""
    rng = random.Random(9)
    vectors = [v for _, v in blob_stream(5, 800)]
    for i in range(0, 800, 100):  # 1% outliers
        vectors[i][SPEC.index["recent.aov_log"]] = 16.7
        vectors[i][SPEC.index["recent.type.page_view"]] = 1.0
    model = SegmentModel(CFG, SPEC)
    published = _learn_all(model, vectors)
    low = [min(v[c] for v in vectors) for c in range(len(SPEC.names))]
    high = sorted(v[SPEC.index["recent.aov_log"]] for v in vectors)[-10]  # below the outliers
    for snapshot in published:
        for seg in snapshot.segments:
            raw = snapshot.raw(seg.centroid)
            for i, c in enumerate(snapshot.columns):
                assert low[c] - 1e-9 <= raw[i] <= max(v[c] for v in vectors) + 1e-9
            aov = dict(zip(snapshot.columns, raw, strict=True)).get(
                SPEC.index["recent.aov_log"], 0.0)
            assert aov <= high + 1e-9
    # each blob still has a segment of its own
    snapshot = published[-1]
    by_blob: dict[int, set[int]] = {}
    for blob in range(K):
        for _ in range(20):
            v = blob_vector(rng, blob)
            by_blob.setdefault(blob, set()).add(
                place(snapshot, v).segment_id)
    assert all(len(s) == 1 for s in by_blob.values()), by_blob
    assert len(set.union(*by_blob.values())) == K


def test_more_centres_than_behaviours_leave_no_empty_segment() -> None:
    cfg = dataclasses.replace(CFG, n_clusters=K + 2)
    vectors = [v for _, v in blob_stream(6, 900)]
    published = _learn_all(SegmentModel(cfg, SPEC), vectors)
    assert published
    for snapshot in published:
        counts = {seg.id: 0 for seg in snapshot.segments}
        for v in vectors[-cfg.window_profiles:]:
            counts[place(snapshot, v).segment_id] += 1
        assert min(counts.values()) >= cfg.min_segment_share / 2 * min(
            len(vectors), cfg.window_profiles) * 0.5, counts


def test_every_publish_after_the_first_has_its_lineage_and_ids_only_change_through_it() -> None:
    model = SegmentModel(CFG, SPEC)
    vectors = [v for _, v in blob_stream(4, 300)] + [v for _, v in blob_stream(5, 600,
                                                                                 shift=0.3)]
    published = _learn_all(model, vectors)
    assert [e.kind for e in published[0].lineage] == ["birth"] * K
    for old, new in itertools.pairwise(published):
        born = {e.segment_id for e in new.lineage if e.kind in ("birth", "split")}
        ended = {e.segment_id for e in new.lineage if e.kind in ("merge", "retirement")}
        assert {s.id for s in new.segments} == ({s.id for s in old.segments} - ended) | born


# ---- how many segments: n_clusters auto ---------------------------------------------------


def test_auto_finds_how_many_behaviours_there_are_and_a_new_one_through_lineage() -> None:
    """Three blobs at warm-up: three segments; a fourth behaviour appears: a fourth id,
    born through a lineage event."""
    cfg = dataclasses.replace(CFG, n_clusters="auto", max_clusters=8)
    model = SegmentModel(cfg, SPEC)
    rng = random.Random(12)
    first = [blob_vector(rng, i % 3) for i in range(WARMUP)]
    published = _learn_all(model, first)
    assert len(published[0].segments) == 3
    later = [blob_vector(rng, i % 4) for i in range(1200)]
    for i, v in enumerate(later):
        snapshot = model.learn(v, ts=(WARMUP + i) * 3600.0)
        if snapshot is not None:
            published.append(snapshot)
    assert len(published[-1].segments) == 4
    born = [e for s in published[1:] for e in s.lineage if e.kind in ("birth", "split")]
    assert len(born) == 1
    assert {s.id for s in published[-1].segments} == {0, 1, 2, born[0].segment_id}


def test_silhouette_prefers_the_true_number_of_groups() -> None:
    import numpy as np

    from workers.core.cluster_count import best_count, silhouette
    from workers.core.segments import _fit

    gen = np.random.default_rng(0)
    points = np.concatenate([gen.normal(c, 0.3, size=(100, 2)) for c in ((0, 0), (5, 0), (0, 5),
                                                                         (5, 5))])
    rng = random.Random(1)
    assert best_count(points, range(2, 9), lambda p, k: _fit(p, k, rng, 3)) == 4
    labels = np.repeat(np.arange(4), 100)
    assert silhouette(points, labels, 4) > 0.8
    # a current count is kept unless another is clearly better
    assert best_count(points, (3, 4, 5), lambda p, k: _fit(p, k, rng, 3), current=4,
                      margin=0.02) == 4


def test_a_feature_that_starts_to_vary_later_joins_the_model() -> None:
    """Web-only at first; then half the people arrive by another channel."""
    web = SPEC.index["recent.channel.web"]
    model = SegmentModel(CFG, SPEC)
    first = []
    for _, v in blob_stream(4, WARMUP):
        v[web] = 1.0
        first.append(v)
    later = []
    for i, (_, v) in enumerate(blob_stream(5, 1200)):
        v[web] = 1.0 if i % 2 else 0.0
        later.append(v)
    published = _learn_all(model, first + later)
    assert web not in published[0].columns
    assert web in published[-1].columns




def test_the_learned_window_keeps_the_newest_profiles_oldest_first() -> None:
    """What a check fits on and a changelog saves: the newest ``maxlen`` learned, in
    learn order, the same doubles each way they are read."""
    window = LearnedWindow(3, 2)
    learned = [(float(i), -i / 3) for i in range(5)]
    window.extend(learned[:2])
    assert len(window) == 2 and window.array().tolist() == [list(x) for x in learned[:2]]
    window.extend(learned[2:])
    kept = learned[2:]
    assert len(window) == 3 and list(window) == kept
    assert [window[n] for n in range(3)] == kept
    assert window.array().tolist() == [list(x) for x in kept]
    with pytest.raises(IndexError):
        window[3]
    with pytest.raises(ValueError, match="3 values for a window of 2 columns"):
        window.append((1.0, 2.0, 3.0))
