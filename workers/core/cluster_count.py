"""How many segments (``segmentation.n_clusters: auto``): the k with the best silhouette.

Why the silhouette: it needs no model of how a behaviour's profiles spread (BIC assumes
spherical Gaussians, which shares clipped to [0, 1] are not, and it keeps rewarding
more centres on thousands of points); it is deterministic, where the gap statistic
draws reference data sets at random; and it costs one distance matrix per check,
shared by every k tried. It prefers well separated behaviours: two behaviours that
differ only a little may share a segment. Prediction strength, the gap statistic's elbow
and a split test per segment were measured against it on seven simulated behaviours
(BENCHMARKS.md, issue 15): none of them separates what it leaves together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from workers.core.nearest import nearest_labels

# the silhouette's distance matrix is taken on at most this many points (evenly spaced)
_SAMPLE = 1000


def silhouette(points: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean silhouette of a labelling (0 for a point alone in its cluster)."""
    n = len(points)
    sq = (points * points).sum(axis=1)
    distances = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * points @ points.T, 0.0))
    onehot = np.eye(k)[labels]
    sums = distances @ onehot
    counts = onehot.sum(axis=0)
    own = counts[labels]
    rows = np.arange(n)
    a = sums[rows, labels] / np.maximum(own - 1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        other = np.where(counts > 0, sums / counts, np.inf)
    other[rows, labels] = np.inf
    b = other.min(axis=1)
    score = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(score.mean())


def best_count(points: np.ndarray, candidates: Iterable[int],
               fit: Callable[[np.ndarray, int], np.ndarray], current: int | None = None,
               margin: float = 0.0) -> int:
    """The candidate k whose clustering (``fit(points, k)`` -> centres) has the best
    silhouette; ``current`` is kept unless another beats it by more than ``margin``."""
    step = max(1, len(points) // _SAMPLE)
    sample = points[::step]
    scores = {}
    for k in sorted(set(candidates)):
        if 2 <= k < len(sample):
            centres = fit(points, k)
            scores[k] = silhouette(sample, nearest_labels(sample, centres), k)
    if not scores:
        return current or 2
    best = max(scores, key=lambda k: (scores[k], -k))
    if current in scores and scores[best] <= scores[current] + margin:
        return current
    return best
