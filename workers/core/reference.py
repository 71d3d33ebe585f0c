"""The space segments are learned in: each feature clipped, centred and scaled robustly.

Fitted on a sample of learned profiles (the warm-up, later the recent window). A plain
z-score lets a handful of extreme profiles (a bot's volume, one huge order) stretch a
feature's scale and pull a centroid out of the data; a feature everyone shares (the only
channel of a web-only shop) has no scale at all and turns noise into a phantom segment.
So each feature is clipped to its ``[q, 1 - q]`` quantiles before its mean and spread are
taken, and a feature whose clipped range is empty is left out. Every centroid is then a
mean of clipped values: inside the range real profiles have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# a clipped range narrower than this (relative to the values) is "one value"
_FLAT = 1e-9


@dataclass(frozen=True)
class Reference:
    """Per selected column: clip bounds, centre and scale; ``active`` ones are clustered."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    active: tuple[bool, ...]


def fit_reference(rows: np.ndarray, clip: float) -> Reference:
    """Clip bounds at the ``clip`` and ``1 - clip`` quantiles of each column of ``rows``
    (profiles x columns, finite: features are), then mean and std of the clipped values;
    a column whose bounds meet is inactive (scale 1, never used).

    The bounds are the values a stable sort of each column puts at those ranks, the mean
    and spread exactly rounded sums (``math.fsum``): each check refits the reference, so
    the sorting runs in numpy, and only the sums read Python floats."""
    n = len(rows)
    # a small sample still loses its extremes (int(): compiled, math.ceil is C's, a double)
    cut = min((n - 1) // 2, int(math.ceil(clip * n)))  # noqa: RUF046
    ordered = np.sort(rows, axis=0)
    low = _stable_row(rows, ordered, cut)
    high = _stable_row(rows, ordered, n - 1 - cut)
    clipped = np.where(rows > low, rows, low)  # min(high, max(low, v)), NaN and -0.0 alike
    clipped = np.where(clipped < high, clipped, high)
    center, scale, active = [], [], []
    for values, lo, hi in zip(clipped.T.tolist(), low.tolist(), high.tolist(), strict=True):
        mean = math.fsum(values) / n
        spread = math.sqrt(math.fsum(_squares(values, mean)) / n)
        varies = hi - lo > _FLAT * max(1.0, abs(hi), abs(lo)) and spread > 0
        center.append(mean)
        scale.append(spread if varies else 1.0)
        active.append(varies)
    return Reference(tuple(low.tolist()), tuple(high.tolist()), tuple(center), tuple(scale),
                     tuple(active))


def _stable_row(rows: np.ndarray, ordered: np.ndarray, rank: int) -> np.ndarray:
    """What a stable sort of each column puts at ``rank``, from ``ordered``, the columns
    sorted by an unstable one: the same numbers, but of the zeros, which compare equal, a
    stable sort keeps the first ones first, whatever their signs."""
    row = ordered[rank].copy()
    for j in np.flatnonzero(row == 0.0).tolist():
        column = rows[:, j]
        row[j] = column[column == 0.0][rank - int(np.count_nonzero(column < 0.0))]
    return row


def _squares(values: list[float], mean: float) -> list[float]:
    """``(v - mean) ** 2`` of each value by ``pow()``, as Python's ``**`` computes it
    (a C square, ``d * d``, rounds otherwise now and then)."""
    return [math.pow(v - mean, 2.0) for v in values]
