"""Online segmentation: a river clusterer learning from people in a robust reference
space, published as immutable, versioned :class:`Snapshot` s that every assignment uses.

Assigning with a frozen snapshot rather than the live river model is what lets
several workers (and a replay) agree: the same snapshot version gives the same
segment for the same features. Segment ids come from the :class:`Registry`, which
keeps an id with its behaviour across versions.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import math
import random
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import inf
from typing import Any, NamedTuple

import numpy as np
from river import cluster

from workers.config import SegmentationConfig
from workers.core.cluster_count import best_count
from workers.core.features import FeatureSpec
from workers.core.kmeans_step import MARGIN, KMeansStep
from workers.core.nearest import nearest, nearest_labels
from workers.core.records import Explanation
from workers.core.reference import Reference, fit_reference
from workers.core.registry import Lineage, Registry
from workers.errors import ConfigError

# Lloyd iterations over the window; k-means converges on a few thousand points long
# before this
_LLOYD_ITERATIONS = 25
_STARTS = 10
# each check also tries a few fresh k-means++ starts on the window, and takes one only
# when clearly tighter: online centres can sit in a local optimum (two behaviours
# sharing a centre while another behaviour is split) that Lloyd steps never leave
_RESTARTS = 3
_CLEARLY_TIGHTER = 0.97
# n_clusters auto: another k is taken only for a silhouette this much better (no flapping)
_K_MARGIN = 0.02
# a bound's square times this is at least the exact square: the product's two roundings
# take off at most 2 ** -52 of it (for bounds above _TINY, whose squares are normal)
_UP = 1.0 + 2.0 ** -50
_TINY = 1e-150
_HUGE = 1e300  # a sum of squares below it, of normal doubles, is not an overflow's inf


@dataclass(frozen=True)
class Segment:
    id: int
    centroid: tuple[float, ...]  # in the snapshot's scaled, weighted space


@dataclass(frozen=True)
class Snapshot:
    """A published model: its reference space (clip bounds, centre, scale of the features
    it uses) and centroids, frozen; ``lineage`` says which ids this version made or ended."""

    version: int
    columns: tuple[int, ...]  # indices into FeatureSpec.names
    weights: tuple[float, ...]
    mean: tuple[float, ...]  # of the clipped values: the population's centre
    std: tuple[float, ...]
    segments: tuple[Segment, ...]
    lo: tuple[float, ...]  # clip bounds
    hi: tuple[float, ...]
    lineage: tuple[Lineage, ...] = ()

    def __post_init__(self) -> None:
        # z = (x - mean) / std * weight, folded into z = x * gain - offset once per snapshot
        gain = tuple(w / s for w, s in zip(self.weights, self.std, strict=True))
        object.__setattr__(self, "_gain", gain)
        object.__setattr__(self, "_offset", tuple(m * g for m, g in zip(self.mean, gain,
                                                                        strict=True)))
        object.__setattr__(self, "_placement", Placement(self))
        # every explanation of a change quotes its segment's centroid and the population's
        # centre in feature units, as the output rounds them: rounded once per snapshot
        # (round() to 6 digits is most of an explanation's cost)
        object.__setattr__(self, "_quoted", {seg.id: [_quote(v) for v in self.raw(seg.centroid)]
                                             for seg in self.segments})
        object.__setattr__(self, "_population", [_quote(v) for v in self.mean])

    @property
    def placement(self) -> Placement:
        """Its scaling and centroids as arrays of doubles, for :meth:`Placement.stays`."""
        return self._placement  # type: ignore[attr-defined]

    def fields(self) -> tuple[Any, ...]:
        """What it is made of, for saved state: ``Snapshot(*snapshot.fields())`` is it
        again (the values worked out from them are not saved)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(Snapshot))

    def pick(self, vector: Sequence[float]) -> list[float]:
        """This snapshot's columns of a whole feature vector: the values the methods below
        take (a profile's are read without the whole vector:
        :class:`~workers.core.features.ColumnReader`)."""
        return [vector[c] for c in self.columns]

    def transform(self, values: Sequence[float]) -> list[float]:
        """Clip, then scale: ``min(hi, max(lo, x)) * gain - offset`` per column."""
        return _transform(values, self.lo, self.hi, self._gain,  # type: ignore[attr-defined]
                          self._offset)  # type: ignore[attr-defined]

    def raw(self, z: tuple[float, ...] | list[float]) -> list[float]:
        """Back from scaled space to feature units (a centroid, a mean of clipped values,
        is inside the clip bounds: clamped so rounding cannot put it a hair outside)."""
        return [min(self.hi[i], max(self.lo[i], self.mean[i] + (
            v / self.weights[i] if self.weights[i] else 0.0) * self.std[i]))
            for i, v in enumerate(z)]

    def distances(self, z: list[float],
                  rows: Sequence[int] | None = None) -> list[tuple[float, int]]:
        """(distance, segment id) of every segment, or of the segments at ``rows``."""
        dist = math.dist
        if rows is None:
            return [(dist(z, seg.centroid), seg.id) for seg in self.segments]
        segments = self.segments
        return [(dist(z, segments[j].centroid), segments[j].id) for j in rows]

    def segment(self, segment_id: int) -> Segment | None:
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        return None


def _transform(values: Sequence[float], lo: tuple[float, ...], hi: tuple[float, ...],
               gain: tuple[float, ...], offset: tuple[float, ...]) -> list[float]:
    """:meth:`Snapshot.transform`, a loop over C doubles when compiled (segments.pxd)."""
    n = len(values)
    if not len(lo) == len(hi) == len(gain) == len(offset) == n:
        raise ValueError(f"{n} values for a snapshot of {len(lo)} columns")
    out = []
    for i in range(n):
        g = gain[i]
        o = offset[i]
        out.append(_clip(values[i], lo[i], hi[i]) * g - o)
    return out


def _clip(x: float, low: float, high: float) -> float:
    """``min(high, max(low, x))`` spelled out: the same value, NaN and -0.0 alike, at a
    third of the cost of calling the builtins (inlined where compiled)."""
    y = x if x > low else low
    return y if y < high else high


class Placement:
    """A snapshot's scaling (:meth:`Snapshot.transform`) and centroids as flat arrays of
    doubles (C fields where compiled), made once per snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.lo = array("d", snapshot.lo)
        self.hi = array("d", snapshot.hi)
        self.gain = array("d", snapshot._gain)  # type: ignore[attr-defined]
        self.offset = array("d", snapshot._offset)  # type: ignore[attr-defined]
        self.centroids = array("d", [v for seg in snapshot.segments for v in seg.centroid])
        self.rows = {seg.id: j for j, seg in enumerate(snapshot.segments)}
        self.columns = len(snapshot.lo)
        self.z = array("d", snapshot.lo)  # where stays() scales a profile's values
        self.sums = array("d", [0.0] * len(snapshot.segments))  # where deciding() sums

    def deciding(self, z: list[float], current: int | None) -> list[int]:
        """The rows (segments, in order) whose exact distance can change what :func:`assign`
        decides or scores: the nearest two by plainly summed squares, any other within
        ``MARGIN`` of the second, and the current segment. Any other is further than both
        of the nearest two however the sums round, so its ``math.dist`` (most of an
        assessment's cost) is not needed. Every row where the sums are not to be trusted:
        a NaN, or a second distance whose square is not a normal double."""
        n = self.columns
        k = len(self.rows)
        if len(z) != n:
            raise ValueError(f"{len(z)} values for a snapshot of {n} columns")
        centroids, sums, scaled = self.centroids, self.sums, self.z
        for i in range(n):  # as doubles once, not at every segment
            scaled[i] = z[i]
        first = second = inf
        for j in range(k):
            total = 0.0
            at = j * n
            for i in range(n):
                diff = scaled[i] - centroids[at + i]
                total += diff * diff
            if total != total:  # NaN
                return list(range(k))
            sums[j] = total
            if total < first:
                second = first
                first = total
            elif total < second:
                second = total
        if not _TINY * _TINY < second < _HUGE:
            return list(range(k))
        # a square (1 + MARGIN) ** 2 times the second's, rounded generously up
        limit = second * (1.0 + 3.0 * MARGIN)
        own = -1 if current is None else self.rows.get(current, -1)
        return [j for j in range(k) if sums[j] <= limit or j == own]

    def stays(self, values: array[float], current: int | None, hysteresis: float) -> bool:
        """Whether :func:`assign` provably keeps a profile with these column ``values`` in
        its ``current`` segment, worked out without allocating (it runs for every profile
        a tick touches and every profile a new version may move; a profile that stays
        needs no output).

        The distances are summed plainly, not as ``math.dist`` does: a profile counts as
        staying only when every other segment is further than ``(1 - hysteresis)`` of its
        own distance by a margin a million times wider than that rounding; a profile near
        the boundary is left to :func:`assign`.
        """
        if current is None:
            return False
        own = self.rows.get(current, -1)
        if own < 0:
            return False
        n = self.columns
        if len(values) != n:
            raise ValueError(f"{len(values)} values for a snapshot of {n} columns")
        lo, hi, gain, offset, z = self.lo, self.hi, self.gain, self.offset, self.z
        for i in range(n):  # scaled once, as Snapshot.transform does
            z[i] = _clip(values[i], lo[i], hi[i]) * gain[i] - offset[i]
        centroids = self.centroids
        total = 0.0
        at = own * n
        for i in range(n):
            diff = z[i] - centroids[at + i]
            total += diff * diff
        bound = (1.0 - hysteresis) * math.sqrt(total) * (1.0 + MARGIN)
        # every other segment must be at least ``bound`` away; a segment's sum of squares
        # only grows as it is summed, so once it reaches the bound squared (rounded up:
        # ``_UP``) that segment is far enough and the rest of its sum is not needed
        enough = bound * bound * _UP if bound > _TINY else inf
        for j in range(len(self.rows)):
            if j == own:
                continue
            total = 0.0
            at = j * n
            for i in range(n):
                diff = z[i] - centroids[at + i]
                total += diff * diff
                if total >= enough:
                    break
            else:
                if math.sqrt(total) < bound:  # (a NaN distance is nobody's, as before)
                    return False
        return bound <= inf  # False for a NaN bound


class Assignment(NamedTuple):
    """One profile's assessment (a tuple: made for every assessed profile, and a frozen
    dataclass costs three times as much to build)."""

    segment_id: int
    changed: bool
    distances: list[tuple[float, int]]  # (distance, segment id) for every segment

    @property
    def score(self) -> float:
        """1 at the centroid, 0 on the border with the next segment (or beyond it)."""
        own = inf
        other = inf
        for d, sid in self.distances:
            if sid == self.segment_id:
                own = d
            elif d < other:
                other = d
        if other == inf or other <= 0:
            return 1.0
        return _quote(max(0.0, 1.0 - own / other))


def assign(snapshot: Snapshot, z: list[float], current: int | None,
           hysteresis: float) -> Assignment:
    """Nearest segment, but leave the current one only for a clearly closer one; measured
    to the segments that can decide (:meth:`Placement.deciding`)."""
    return choose(snapshot.distances(z, snapshot.placement.deciding(z, current)), current,
                  hysteresis)


def choose(dists: list[tuple[float, int]], current: int | None,
           hysteresis: float) -> Assignment:
    """The nearest of (distance, segment id) ``dists``, unless the ``current`` one is
    within ``hysteresis`` of it."""
    nearest_d, nearest = min(dists)
    chosen = nearest
    if current is not None and current != nearest:
        for d, sid in dists:
            if sid == current:
                if nearest_d >= (1.0 - hysteresis) * d:
                    chosen = current
                break
    return Assignment(chosen, chosen != current, dists)


# below it, every half-integer is a double (_quote's fast path)
_QUOTE_FAST = 2.0 ** 52


def explain(snapshot: Snapshot, z: list[float], segment_id: int,
            values: Sequence[float], names: list[str], size: int) -> list[Explanation]:
    """The features that most put this profile nearer its segment than the average person.

    Each feature's share of ``d(z, population)^2 - d(z, segment)^2``, which is
    ``2*z*c - c^2`` per feature: it adds up to how much closer the profile is to
    its segment than to the population, so the list is an exact decomposition.
    """
    seg = snapshot.segment(segment_id)
    if seg is None:
        return []
    quoted = snapshot._quoted[segment_id]  # type: ignore[attr-defined]
    population = snapshot._population  # type: ignore[attr-defined]
    centroid = seg.centroid
    if len(z) != len(centroid):
        raise ValueError(f"{len(z)} values for a centroid of {len(centroid)}")
    # the features that count, in column order, and their shares; the greatest taken
    # ``size`` times over (compiled, comparisons of C doubles), the first on a tie: what a
    # sort by (-share, column) would list, without sorting the few dozen columns
    counted = []
    shares = []
    for i in range(len(z)):
        zi = z[i]
        ci = centroid[i]
        contribution = 2.0 * zi * ci - ci * ci
        if contribution > 0:
            counted.append(i)
            shares.append(contribution)
    out: list[Explanation] = []
    for _ in range(min(size, len(shares))):
        best = 0
        greatest = shares[0]
        for j in range(1, len(shares)):
            value = shares[j]
            if value > greatest:
                greatest = value
                best = j
        shares[best] = -inf  # taken: never the greatest again
        i = counted[best]
        out.append({"feature": names[snapshot.columns[i]], "value": _quote(values[i]),
                    "segment_value": quoted[i], "population_value": population[i]})
    return out


def _quote(value: float) -> float:
    """A value as outputs show it: ``round(value, 6) + 0.0`` ("+ 0.0" turns a rounded -0.0
    into 0.0 in the JSON), the same double, mostly without round()'s decimal conversion.

    ``value * 1e6`` rounds to the nearest double, which never crosses a half-integer (below
    2 ** 52 each is a double): off a tie, its nearest integer ``n`` is the exact product's,
    and ``n / 1e6`` (one correctly rounded division of exact numbers) is the double
    nearest the 6-digit decimal, which is what round() returns. A tie (exact or made by
    the product's rounding), NaN, the infinities and larger values go to round().
    """
    scaled = value * 1e6
    if -_QUOTE_FAST < scaled < _QUOTE_FAST:
        low = math.floor(scaled)
        fraction = scaled - low  # exact below 2 ** 52
        if fraction != 0.5:
            return (low + (1.0 if fraction > 0.5 else 0.0)) / 1e6 + 0.0
    return round(value, 6) + 0.0


class LearnedWindow:
    """The newest ``maxlen`` profiles learned (their model columns), oldest first, as rows
    of one array of doubles: a learn writes a row, a check reads them all at once (from a
    deque of tuples, that took ~2 ms at every check)."""

    def __init__(self, maxlen: int, columns: int) -> None:
        self.maxlen = maxlen
        self.rows = np.zeros((maxlen, columns))
        self._view = self.rows  # a typed view where compiled: a learn writes C doubles
        self._next = 0  # the row the next learn writes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, x: tuple[float, ...]) -> None:
        view = self._view
        at = self._next
        if len(x) != view.shape[1]:
            raise ValueError(f"{len(x)} values for a window of {view.shape[1]} columns")
        for j in range(len(x)):
            view[at, j] = x[j]
        self._next = at + 1 if at + 1 < self.maxlen else 0
        if self._count < self.maxlen:
            self._count += 1

    def extend(self, xs: Iterable[tuple[float, ...]]) -> None:
        for x in xs:
            self.append(x)

    def __getitem__(self, n: int) -> tuple[float, ...]:
        """The ``n``-th oldest profile, as the changelog packs it."""
        if not 0 <= n < self._count:
            raise IndexError(n)
        return tuple(self.rows[(self._next - self._count + n) % self.maxlen].tolist())

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        return (tuple(row) for row in self.array().tolist())

    def array(self) -> np.ndarray:
        """Every profile held, a row each, oldest first (a copy)."""
        if self._count < self.maxlen:
            return self.rows[:self._count].copy()
        return np.concatenate((self.rows[self._next:], self.rows[:self._next]))


class SegmentModel:
    """Learns from profile feature vectors; decides when to publish a snapshot.

    The most recent ``window_profiles`` learned vectors are kept: the warm-up is the
    first of them. Every check refits the reference space on the window, carries river's
    centres into it, polishes them with Lloyd steps over the window (a starved centre is
    moved to the worst-served profile first), and hands them to the registry; a version
    is published when ids or features change or a centroid moved ``publish_shift``.
    """

    def __init__(self, cfg: SegmentationConfig, spec: FeatureSpec) -> None:
        self.cfg = cfg
        self.spec = spec
        columns, weights = feature_columns(spec, cfg)
        self.columns = tuple(columns)
        self.weights = tuple(weights)
        self.keys = [spec.names[c] for c in columns]
        self.window = LearnedWindow(cfg.window_profiles, len(self.columns))
        self.reference: Reference | None = None
        self.clusterer: Any = None  # made when the warm-up ends
        self.registry = Registry.from_config(self.weights, cfg)
        self.learned = 0
        self.snapshot: Snapshot | None = None
        self._published_at = -inf
        self._step: KMeansStep | None = None  # river's centres as flat doubles (KMeans)

    # what the model has learned, as data: river's objects and plain values (no config)
    # (the window of learned profiles is saved apart, one entry per learn: see
    # workers.state.changelog)
    _LEARNED = ("reference", "clusterer", "registry", "learned", "_published_at")

    def state(self) -> dict[str, Any]:
        """What the model learned, for saved state (workers.state.codec packs it)."""
        learned = {name: getattr(self, name) for name in self._LEARNED}
        snap = self.snapshot
        learned["snapshot"] = None if snap is None else snap.fields()
        return learned

    def load(self, learned: dict[str, Any]) -> None:
        """Continue from :meth:`state` (made under the same configuration)."""
        for name in self._LEARNED:
            setattr(self, name, learned[name])
        snap = learned["snapshot"]
        self.snapshot = None if snap is None else Snapshot(*snap)

    @property
    def warming_up(self) -> bool:
        return self.reference is None

    def learn(self, vector: list[float], ts: float = 0.0) -> Snapshot | None:
        """Learn one profile at event time ``ts``; returns a snapshot when one is published."""
        x = tuple([vector[c] for c in self.columns])  # a loop where compiled
        self.learned += 1
        self.window.append(x)
        if self.reference is None:
            if len(self.window) < self.cfg.warmup_profiles:
                return None
            self._initialise()
            return self._check(ts) if self._ready() else None
        ref = self.reference
        scaled = _scaled(self.weights, x, ref)
        if isinstance(self.clusterer, cluster.KMeans):
            self._kmeans_step(ref).learn(scaled)
        else:
            self.clusterer.learn_one(dict(zip(self._active_keys(ref), scaled, strict=True)))
        if self.snapshot is None:
            return self._check(ts) if self._ready() else None
        if (self.learned % self.cfg.snapshot_every_learns == 0
                and ts - self._published_at >= self.cfg.min_publish_interval_seconds):
            return self._check(ts)
        return None

    def _ready(self) -> bool:
        """Some river clusterers (CluStream, DBSTREAM) have no centres for a while."""
        return len(self.clusterer.centers) >= 2

    def _kmeans_step(self, ref: Reference) -> KMeansStep:
        """The k-means step over the centres in force, set in ``ref``'s space (taken
        afresh once they are replaced: a check, a restore)."""
        step = self._step
        if step is None or step.centers is not self.clusterer.centers:
            step = self._step = KMeansStep(self.clusterer, self._active_keys(ref))
        return step

    def _active_keys(self, ref: Reference) -> list[str]:
        """The features clustered in ``ref``'s space, as river names them."""
        return [k for k, on in zip(self.keys, ref.active, strict=True) if on]

    def _rows(self) -> np.ndarray:
        """The window, a profile a row."""
        return self.window.array()

    def _initialise(self) -> None:
        """Fit the reference on the warm-up sample and seed the clusterer from it.

        river's KMeans draws its initial centres lazily from a Gaussian in the
        order features are first met (a set iteration, so it varies with
        PYTHONHASHSEED); seeding with k-means++ on real profiles is both
        reproducible and far better than random centres.
        """
        rows = self._rows()
        ref = self.reference = fit_reference(rows, self.cfg.clip_quantile)
        points = _space(rows, ref, self.weights)
        rng = random.Random(self.cfg.seed)
        k = self.cfg.n_clusters
        if k == "auto":
            k = best_count(points, range(2, self.cfg.max_clusters + 1),
                           lambda pts, n: _fit(pts, n, rng, _RESTARTS))
        self.clusterer = make_clusterer(self.cfg, k)
        if isinstance(self.clusterer, cluster.KMeans):
            # several k-means++ starts, keep the tightest: one start often lands two
            # centres in one group and leaves two groups sharing one (as sklearn's n_init)
            self._set_centres(_fit(points, k, rng, _STARTS), ref)
        else:
            keys = self._active_keys(ref)
            for point in points.tolist():
                self.clusterer.learn_one(dict(zip(keys, point, strict=True)))

    def _set_centres(self, centres: np.ndarray, ref: Reference) -> None:
        keys = self._active_keys(ref)
        self.clusterer.centers = {i: collections.defaultdict(float, zip(keys, c, strict=True))
                                  for i, c in enumerate(centres.tolist())}

    def _raw_centres(self, ref: Reference) -> list[list[float]]:
        """river's centres in feature units (an inactive feature at the population's value)."""
        out = []
        for c in sorted(self.clusterer.centers):
            centre = self.clusterer.centers[c]
            out.append([m + float(centre.get(k, 0.0)) / w * s if on else m
                        for k, m, s, w, on in zip(self.keys, ref.center, ref.scale,
                                                  self.weights, ref.active, strict=True)])
        return out

    def _check(self, ts: float) -> Snapshot | None:
        old = self.reference
        assert old is not None
        kmeans = isinstance(self.clusterer, cluster.KMeans)
        # river's other models keep their own summaries: their space stays the warm-up's
        rows = self._rows()
        ref = fit_reference(rows, self.cfg.clip_quantile) if kmeans else old
        raw = self._raw_centres(old)
        points = _space(rows, ref, self.weights)
        start = self._points_of(raw, ref)
        centres = _polish(points, start, self.cfg.min_segment_share / 2)
        rng = random.Random(self.cfg.seed * 1_000_003 + self.learned)
        k = len(centres)
        if kmeans and self.cfg.n_clusters == "auto":  # one more or one less segment?
            k = best_count(points, (k - 1, k, k + 1), lambda pts, n: _fit(pts, n, rng, _RESTARTS),
                           current=k, margin=_K_MARGIN)
            k = min(k, self.cfg.max_clusters)
        fresh = _fit(points, k, rng, _RESTARTS)
        if k != len(centres) or _inertia(points, fresh) < _CLEARLY_TIGHTER * _inertia(
                points, centres):
            centres = fresh
        if kmeans:
            self.reference = ref
            if len(centres) != len(self.clusterer.centers):
                self.clusterer = make_clusterer(self.cfg, len(centres))
            self._set_centres(centres, ref)
        shares = _shares(points, centres)
        candidates = [self._raw(c, ref) for c in centres.tolist()]
        ids, events = self.registry.update(ref, candidates, shares)
        active = tuple(c for c, on in zip(self.columns, ref.active, strict=True) if on)
        weights = tuple(w for w, on in zip(self.weights, ref.active, strict=True) if on)
        published = [(sid, z) for sid, z in zip(ids, centres.tolist(), strict=True)
                     if sid is not None]
        if not self._changed(events, active, published, candidates, ids):
            return None
        pick = [j for j, on in enumerate(ref.active) if on]
        segments = tuple(sorted((Segment(sid, tuple(round(v, 9) for v in z))
                                 for sid, z in published), key=lambda s: s.id))
        self._published_at = ts
        version = 1 if self.snapshot is None else self.snapshot.version + 1
        self.snapshot = Snapshot(version, active, weights,
                                 tuple(ref.center[j] for j in pick),
                                 tuple(ref.scale[j] for j in pick), segments,
                                 tuple(ref.lo[j] for j in pick), tuple(ref.hi[j] for j in pick),
                                 tuple(events))
        return self.snapshot

    def _changed(self, events: list[Lineage], active: tuple[int, ...],
                 published: list[tuple[int, list[float]]],
                 candidates: list[tuple[float, ...]], ids: list[int | None]) -> bool:
        """Publish on a lineage event, a change of features, or a centroid that moved."""
        old = self.snapshot
        if old is None or events or active != old.columns:
            return bool(published)
        # unclipped: a behaviour that moved past the old clip bounds moved all the same
        where = [self.columns.index(c) for c in old.columns]
        moved = 0.0
        for sid, raw in zip(ids, candidates, strict=True):
            seg = old.segment(sid) if sid is not None else None
            if seg is not None:
                z = [(raw[p] - m) / s * w for p, m, s, w in zip(where, old.mean, old.std,
                                                               old.weights, strict=True)]
                moved = max(moved, _dist(z, seg.centroid))
        return moved > self.cfg.publish_shift

    def _points_of(self, raw: list[list[float]], ref: Reference) -> np.ndarray:
        return _space(np.array(raw, dtype=float), ref, self.weights)

    def _raw(self, z: list[float], ref: Reference) -> tuple[float, ...]:
        """A centre of the active space back in feature units, every selected column."""
        it = iter(z)
        return tuple(m + next(it) / w * s if on else m
                     for m, s, w, on in zip(ref.center, ref.scale, self.weights, ref.active,
                                            strict=True))


_dist = math.dist


def _scaled(weights: tuple[float, ...], x: Sequence[float], ref: Reference) -> list[float]:
    """A learned profile's active columns in the reference space (in column order, as
    :meth:`SegmentModel._active_keys` names them): clipped (as in :func:`_transform`),
    centred, scaled, weighted."""
    lo, hi, center, scale, active = ref.lo, ref.hi, ref.center, ref.scale, ref.active
    n = len(weights)
    if not len(x) == len(lo) == n:
        raise ValueError(f"{len(x)} values for {n} columns")
    out = []
    for i in range(n):
        if active[i]:
            c = center[i]
            s = scale[i]
            w = weights[i]
            out.append((_clip(x[i], lo[i], hi[i]) - c) / s * w)
    return out


def _space(rows: np.ndarray, ref: Reference, weights: tuple[float, ...]) -> np.ndarray:
    """:func:`_scaled` of many rows at once, as an array of their active columns: the
    same operations in the same order, so the same doubles (a check scales its window)."""
    on = np.array(ref.active, dtype=bool)
    if rows.shape[1:] != on.shape:
        raise ValueError(f"rows of {rows.shape[1:]} values for {len(on)} columns")
    x = rows[:, on]
    lo, hi = np.array(ref.lo)[on], np.array(ref.hi)[on]
    clipped = np.where(x > lo, x, lo)  # _clip's comparisons: NaN and -0.0 alike
    clipped = np.where(clipped < hi, clipped, hi)
    return (clipped - np.array(ref.center)[on]) / np.array(ref.scale)[on] * np.array(
        weights)[on]


def _inertia(points: np.ndarray, centres: np.ndarray) -> float:
    return float(nearest(points, centres)[1].sum())


def _shares(points: np.ndarray, centres: np.ndarray) -> list[float]:
    counts = np.bincount(nearest_labels(points, centres), minlength=len(centres))
    return [c / len(points) for c in counts.tolist()]


def _lloyd(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    centres = centres.copy()
    for _ in range(_LLOYD_ITERATIONS):
        picked = nearest_labels(points, centres)
        new = centres.copy()
        for j in range(len(centres)):
            members = points.compress(picked == j, axis=0)
            if len(members):  # mean(axis=0), the same doubles, without its Python layer
                new[j] = members.sum(axis=0) / len(members)
        if np.array_equal(new, centres):
            break
        centres = new
    return centres


def _fit(points: np.ndarray, k: int, rng: random.Random, starts: int) -> np.ndarray:
    """The tightest of ``starts`` k-means++ runs."""
    return min((_lloyd(points, _seed_centres(points, k, rng)) for _ in range(starts)),
               key=lambda cs: _inertia(points, cs))


def _polish(points: np.ndarray, centres: np.ndarray, starved: float) -> np.ndarray:
    """Lloyd steps over the window; a centre holding less than ``starved`` of it is moved
    to the profile served worst (furthest from its centre), one at a time, then again."""
    centres = _lloyd(points, centres)
    for _ in range(len(centres)):
        shares = _shares(points, centres)
        low = min(range(len(centres)), key=lambda j: (shares[j], j))
        if shares[low] >= starved:
            break
        _, far = nearest(points, centres)
        moved = centres.copy()
        moved[low] = points[int(far.argmax())]
        moved = _lloyd(points, moved)
        if _inertia(points, moved) >= _inertia(points, centres):
            break
        centres = moved
    return centres


def _seed_centres(points: np.ndarray, k: int, rng: random.Random) -> np.ndarray:
    """k-means++ seeding: the warm-up's batch start."""
    centres = [points[rng.randrange(len(points))]]
    while len(centres) < k:
        _, weights = nearest(points, np.array(centres))
        total = float(weights.sum())
        if total == 0:
            centres.append(points[rng.randrange(len(points))])
            continue
        pick = rng.random() * total
        index = int(np.searchsorted(np.cumsum(weights), pick))
        centres.append(points[min(index, len(points) - 1)])
    return np.array(centres, dtype=float)


def feature_columns(spec: FeatureSpec,
                    cfg: SegmentationConfig) -> tuple[list[int], list[float]]:
    """The features ``segmentation.features`` selects (first matching pattern), and weights."""
    columns, weights = [], []
    for i, name in enumerate(spec.names):
        weight = next((w for pattern, w in cfg.features.items()
                       if fnmatch.fnmatchcase(name, pattern)), 0.0)
        if weight > 0:
            columns.append(i)
            weights.append(weight)
    if not columns:
        raise ConfigError("'segmentation.features' selects no feature: its patterns match"
                          f" none of {', '.join(spec.names[:4])}, ...")
    return columns, weights


def make_clusterer(cfg: SegmentationConfig, k: int | None = None) -> Any:
    """The configured river clusterer with ``k`` centres (default: the most the
    configuration allows); a parameter river does not take is a ConfigError."""
    try:
        return _clusterer(cfg, cfg.most_clusters if k is None else k)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"'segmentation.model_params' {dict(cfg.model_params)} do not suit"
                          f" {cfg.model}: {exc}") from None


def _clusterer(cfg: SegmentationConfig, k: int) -> Any:
    params: dict[str, Any] = dict(cfg.model_params)
    if cfg.model == "kmeans":
        return cluster.KMeans(n_clusters=k, halflife=cfg.halflife, seed=cfg.seed,
                              **params)
    if cfg.model == "streamkmeans":
        # one chunk = the warm-up sample, so the first centres exist when warm-up ends
        params.setdefault("chunk_size", cfg.warmup_profiles)
        return cluster.STREAMKMeans(n_clusters=k, seed=cfg.seed, **params)
    if cfg.model == "dbstream":
        return cluster.DBSTREAM(**params)
    if cfg.model == "clustream":
        return cluster.CluStream(n_macro_clusters=k, seed=cfg.seed, **params)
    raise ConfigError(f"'segmentation.model' {cfg.model!r} is not a model persona-stream has")
