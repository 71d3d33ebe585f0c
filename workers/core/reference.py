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
from collections.abc import Sequence
from dataclasses import dataclass

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


def fit_reference(sample: Sequence[Sequence[float]], clip: float) -> Reference:
    """Clip bounds at the ``clip`` and ``1 - clip`` quantiles, then mean and std of the
    clipped values; a column whose bounds meet is inactive (scale 1, never used)."""
    n = len(sample)
    cut = min((n - 1) // 2, math.ceil(clip * n))  # a small sample still loses its extremes
    lo, hi, center, scale, active = [], [], [], [], []
    for column in zip(*sample, strict=True):
        ordered = sorted(column)
        low, high = ordered[cut], ordered[n - 1 - cut]
        # min(high, max(low, v)) spelled out (the same value, at a third of the cost)
        clipped = [y if (y := v if v > low else low) < high else high for v in column]
        mean = math.fsum(clipped) / n
        spread = math.sqrt(math.fsum((v - mean) ** 2 for v in clipped) / n)
        varies = high - low > _FLAT * max(1.0, abs(high), abs(low)) and spread > 0
        lo.append(low)
        hi.append(high)
        center.append(mean)
        scale.append(spread if varies else 1.0)
        active.append(varies)
    return Reference(tuple(lo), tuple(hi), tuple(center), tuple(scale), tuple(active))
