"""Online segmentation: a river scaler + clusterer learning from people, published
as immutable, versioned :class:`Snapshot` s that every assignment uses.

Assigning with a frozen snapshot rather than the live river model is what lets
several workers (and a replay) agree: the same snapshot version gives the same
segment for the same features. Segment ids stay stable across versions because
each new set of centroids is matched to the previous one.
"""

from __future__ import annotations

import collections
import fnmatch
import math
import operator
import random
from dataclasses import dataclass
from typing import Any

from river import cluster, preprocessing

from workers.config import SegmentationConfig
from workers.core.features import FeatureSpec
from workers.core.records import Explanation
from workers.errors import ConfigError

# Lloyd iterations over the warm-up sample; k-means converges on a few hundred
# points long before this
_LLOYD_ITERATIONS = 25
_STARTS = 10
# a new centroid further than this (in std units) from every old one is a new segment
_MATCH_DISTANCE = 3.0


@dataclass(frozen=True)
class Segment:
    id: int
    centroid: tuple[float, ...]  # in the snapshot's scaled, weighted space


@dataclass(frozen=True)
class Snapshot:
    """A published model: scaler statistics and centroids, frozen."""

    version: int
    columns: tuple[int, ...]  # indices into FeatureSpec.names
    weights: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        # z = (x - mean) / std * weight, folded into z = x * gain - offset once per snapshot
        gain = tuple(w / s for w, s in zip(self.weights, self.std, strict=True))
        object.__setattr__(self, "_gain", gain)
        object.__setattr__(self, "_offset", tuple(m * g for m, g in zip(self.mean, gain,
                                                                        strict=True)))
        object.__setattr__(self, "_pick", operator.itemgetter(*self.columns))

    def transform(self, vector: list[float]) -> list[float]:
        picked = self._pick(vector)  # type: ignore[attr-defined]
        if len(self.columns) == 1:
            picked = (picked,)
        return [x * g - o for x, g, o in zip(picked, self._gain,  # type: ignore[attr-defined]
                                             self._offset, strict=True)]  # type: ignore[attr-defined]

    def raw(self, z: tuple[float, ...] | list[float]) -> list[float]:
        """Back from scaled space to feature units."""
        return [self.mean[i] + (v / self.weights[i] if self.weights[i] else 0.0) * self.std[i]
                for i, v in enumerate(z)]

    def distances(self, z: list[float]) -> list[tuple[float, int]]:
        dist = math.dist
        return [(dist(z, seg.centroid), seg.id) for seg in self.segments]

    def segment(self, segment_id: int) -> Segment | None:
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        return None


@dataclass(frozen=True)
class Assignment:
    segment_id: int
    changed: bool
    distances: list[tuple[float, int]]  # (distance, segment id) for every segment

    @property
    def score(self) -> float:
        """1 at the centroid, 0 on the border with the next segment (or beyond it)."""
        own = math.inf
        other = math.inf
        for d, sid in self.distances:
            if sid == self.segment_id:
                own = d
            elif d < other:
                other = d
        if other == math.inf or other <= 0:
            return 1.0
        return round(max(0.0, 1.0 - own / other), 6)


def assign(snapshot: Snapshot, z: list[float], current: int | None,
           hysteresis: float) -> Assignment:
    """Nearest segment, but leave the current one only for a clearly closer one."""
    dists = snapshot.distances(z)
    nearest_d, nearest = min(dists)
    chosen = nearest
    if current is not None and current != nearest:
        for d, sid in dists:
            if sid == current:
                if nearest_d >= (1.0 - hysteresis) * d:
                    chosen = current
                break
    return Assignment(chosen, chosen != current, dists)


def explain(snapshot: Snapshot, z: list[float], segment_id: int,
            vector: list[float], names: list[str], size: int) -> list[Explanation]:
    """The features that most put this profile nearer its segment than the average person.

    Each feature's share of ``d(z, population)^2 - d(z, segment)^2``, which is
    ``2*z*c - c^2`` per feature: it adds up to how much closer the profile is to
    its segment than to the population, so the list is an exact decomposition.
    """
    seg = snapshot.segment(segment_id)
    if seg is None:
        return []
    raw_centroid = snapshot.raw(seg.centroid)
    parts = []
    for i, (zi, ci) in enumerate(zip(z, seg.centroid, strict=True)):
        contribution = 2.0 * zi * ci - ci * ci
        if contribution > 0:
            parts.append((-contribution, i))
    parts.sort()
    out: list[Explanation] = []
    for _, i in parts[:size]:
        column = snapshot.columns[i]
        # "+ 0.0" turns a rounded -0.0 into 0.0 in the JSON
        out.append({"feature": names[column], "value": round(vector[column], 6) + 0.0,
                    "segment_value": round(raw_centroid[i], 6) + 0.0,
                    "population_value": round(snapshot.mean[i], 6) + 0.0})
    return out


class SegmentModel:
    """Learns from profile feature vectors; decides when to publish a snapshot."""

    def __init__(self, cfg: SegmentationConfig, spec: FeatureSpec) -> None:
        self.cfg = cfg
        self.spec = spec
        columns, weights = feature_columns(spec, cfg)
        self.columns = tuple(columns)
        self.weights = tuple(weights)
        self.keys = [spec.names[c] for c in columns]
        self.scaler = preprocessing.StandardScaler()
        self.clusterer = make_clusterer(cfg)
        self._warmup: list[dict[str, float]] | None = []
        self.learned = 0
        self.snapshot: Snapshot | None = None
        self._published_at = -math.inf
        self._next_id = 0

    # what the model has learned, as data: river's objects and plain values (no config)
    _LEARNED = ("scaler", "clusterer", "_warmup", "learned", "_published_at", "_next_id")

    def state(self) -> dict[str, Any]:
        """What the model learned, for saved state (workers.state.codec packs it)."""
        learned = {name: getattr(self, name) for name in self._LEARNED}
        snap = self.snapshot
        learned["snapshot"] = None if snap is None else (
            snap.version, snap.columns, snap.weights, snap.mean, snap.std,
            tuple((seg.id, seg.centroid) for seg in snap.segments))
        return learned

    def load(self, learned: dict[str, Any]) -> None:
        """Continue from :meth:`state` (made under the same configuration)."""
        for name in self._LEARNED:
            setattr(self, name, learned[name])
        snap = learned["snapshot"]
        self.snapshot = None if snap is None else Snapshot(
            snap[0], snap[1], snap[2], snap[3], snap[4],
            tuple(Segment(sid, centroid) for sid, centroid in snap[5]))

    @property
    def warming_up(self) -> bool:
        return self._warmup is not None

    def learn(self, vector: list[float], ts: float = 0.0) -> Snapshot | None:
        """Learn one profile at event time ``ts``; returns a snapshot when one is published."""
        x = {k: vector[c] for k, c in zip(self.keys, self.columns, strict=True)}
        self.learned += 1
        if self._warmup is not None:
            self._warmup.append(x)
            if len(self._warmup) < self.cfg.warmup_profiles:
                return None
            sample, self._warmup = self._warmup, None
            self._initialise(sample)
            return self._publish(ts) if self._ready() else None
        self.scaler.learn_one(x)
        self.clusterer.learn_one(self._scaled(x))
        if self.snapshot is None:
            return self._publish(ts) if self._ready() else None
        if (self.learned % self.cfg.snapshot_every_learns == 0
                and ts - self._published_at >= self.cfg.min_publish_interval_seconds
                and self._drifted()):
            return self._publish(ts)
        return None

    def _ready(self) -> bool:
        """Some river clusterers (CluStream, DBSTREAM) have no centres for a while."""
        return len(self.clusterer.centers) >= 2

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        z = self.scaler.transform_one(x)
        return {k: z[k] * w for k, w in zip(self.keys, self.weights, strict=True)}

    def _initialise(self, sample: list[dict[str, float]]) -> None:
        """Fit the scaler on the warm-up sample and seed the clusterer from it.

        river's KMeans draws its initial centres lazily from a Gaussian in the
        order features are first met (a set iteration, so it varies with
        PYTHONHASHSEED); seeding with k-means++ on real profiles is both
        reproducible and far better than random centres.
        """
        for x in sample:
            self.scaler.learn_one(x)
        points = [[z[k] for k in self.keys] for z in map(self._scaled, sample)]
        if isinstance(self.clusterer, cluster.KMeans):
            rng = random.Random(self.cfg.seed)
            # several k-means++ starts, keep the tightest: one start often lands two
            # centres in one group and leaves two groups sharing one (as sklearn's n_init)
            centres = min((_kmeans(points, self.cfg.n_clusters, rng) for _ in range(_STARTS)),
                          key=lambda cs: _inertia(points, cs))
            for i, centre in enumerate(centres):
                self.clusterer.centers[i] = collections.defaultdict(
                    float, zip(self.keys, centre, strict=True))
        else:
            for point in points:
                self.clusterer.learn_one(dict(zip(self.keys, point, strict=True)))

    def _centres(self) -> list[list[float]]:
        centres = self.clusterer.centers
        return [[float(centres[c].get(k, 0.0)) for k in self.keys] for c in sorted(centres)]

    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean = tuple(float(self.scaler.means.get(k, 0.0)) for k in self.keys)
        std = tuple(math.sqrt(v) if v > 1e-12 else 1.0
                    for v in (float(self.scaler.vars.get(k, 0.0)) for k in self.keys))
        return mean, std

    def _candidate(self) -> tuple[tuple[float, ...], tuple[float, ...], list[list[float]]]:
        """Current centres in feature units with the current scaler statistics."""
        mean, std = self._stats()
        raw = []
        for centre in self._centres():
            raw.append([mean[i] + (v / w) * std[i]
                        for i, (v, w) in enumerate(zip(centre, self.weights, strict=True))])
        return mean, std, raw

    def _drifted(self) -> bool:
        assert self.snapshot is not None
        _, _, raw = self._candidate()
        old = self.snapshot
        moved = [min(_dist(old.transform(_expand(r, old.columns, len(self.spec.names))),
                           list(seg.centroid)) for seg in old.segments) for r in raw]
        return len(raw) != len(old.segments) or max(moved) > self.cfg.publish_shift

    def _publish(self, ts: float) -> Snapshot:
        self._published_at = ts
        mean, std, raw = self._candidate()
        zs = [[(r[i] - mean[i]) / std[i] * self.weights[i] for i in range(len(r))] for r in raw]
        ids = self._match(zs, mean, std)
        segments = tuple(sorted((Segment(sid, tuple(round(v, 9) for v in z))
                                 for sid, z in zip(ids, zs, strict=True)), key=lambda s: s.id))
        version = 1 if self.snapshot is None else self.snapshot.version + 1
        self.snapshot = Snapshot(version, self.columns, self.weights, mean, std, segments)
        return self.snapshot

    def _match(self, zs: list[list[float]], mean: tuple[float, ...],
               std: tuple[float, ...]) -> list[int]:
        """Stable ids: pair new centroids with the old ones nearest to them."""
        ids: list[int | None] = [None] * len(zs)
        old = self.snapshot
        if old is not None:
            pairs = []
            for seg in old.segments:
                raw_old = old.raw(seg.centroid)
                z_old = [(raw_old[i] - mean[i]) / std[i] * self.weights[i]
                         for i in range(len(raw_old))]
                for j, z in enumerate(zs):
                    pairs.append((_dist(z, z_old), seg.id, j))
            pairs.sort()
            used_old: set[int] = set()
            for d, sid, j in pairs:
                if d <= _MATCH_DISTANCE and ids[j] is None and sid not in used_old:
                    ids[j] = sid
                    used_old.add(sid)
        out = []
        for matched in ids:
            if matched is None:  # a new segment: ids are never reused
                out.append(self._next_id)
                self._next_id += 1
            else:
                self._next_id = max(self._next_id, matched + 1)
                out.append(matched)
        return out


def _expand(values: list[float], columns: tuple[int, ...], size: int) -> list[float]:
    full = [0.0] * size
    for v, c in zip(values, columns, strict=True):
        full[c] = v
    return full


_dist = math.dist


def _inertia(points: list[list[float]], centres: list[list[float]]) -> float:
    return sum(min(_dist(p, c) for c in centres) ** 2 for p in points)


def _kmeans(points: list[list[float]], k: int, rng: random.Random) -> list[list[float]]:
    """k-means++ seeding then Lloyd iterations: the warm-up's batch start."""
    centres = [list(points[rng.randrange(len(points))])]
    while len(centres) < k:
        weights = [min(_dist(p, c) ** 2 for c in centres) for p in points]
        total = sum(weights)
        if total == 0:
            centres.append(list(points[rng.randrange(len(points))]))
            continue
        pick = rng.random() * total
        acc = 0.0
        for p, w in zip(points, weights, strict=True):
            acc += w
            if acc >= pick:
                centres.append(list(p))
                break
    for _ in range(_LLOYD_ITERATIONS):
        groups: list[list[list[float]]] = [[] for _ in centres]
        for p in points:
            groups[min(range(len(centres)), key=lambda i: _dist(p, centres[i]))].append(p)
        moved = False
        for i, members in enumerate(groups):
            if members:
                new = [sum(col) / len(members) for col in zip(*members, strict=True)]
                moved = moved or new != centres[i]
                centres[i] = new
        if not moved:
            break
    return centres


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


def make_clusterer(cfg: SegmentationConfig) -> Any:
    """The configured river clusterer; a parameter river does not take is a ConfigError."""
    try:
        return _clusterer(cfg)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"'segmentation.model_params' {dict(cfg.model_params)} do not suit"
                          f" {cfg.model}: {exc}") from None


def _clusterer(cfg: SegmentationConfig) -> Any:
    params: dict[str, Any] = dict(cfg.model_params)
    if cfg.model == "kmeans":
        return cluster.KMeans(n_clusters=cfg.n_clusters, halflife=cfg.halflife, seed=cfg.seed,
                              **params)
    if cfg.model == "streamkmeans":
        # one chunk = the warm-up sample, so the first centres exist when warm-up ends
        params.setdefault("chunk_size", cfg.warmup_profiles)
        return cluster.STREAMKMeans(n_clusters=cfg.n_clusters, seed=cfg.seed, **params)
    if cfg.model == "dbstream":
        return cluster.DBSTREAM(**params)
    if cfg.model == "clustream":
        return cluster.CluStream(n_macro_clusters=cfg.n_clusters, seed=cfg.seed, **params)
    raise ConfigError(f"'segmentation.model' {cfg.model!r} is not a model persona-stream has")
