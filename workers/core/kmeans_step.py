"""river's ``KMeans.learn_one``, one learned profile at a time, on a flat copy of the centres.

river keeps each centre as a dict of feature name to value, and that dict is what the
saved state holds. Finding the nearest centre reads every value of every centre: from
those dicts, a hash lookup and a Python float each; here, from one array of doubles
kept beside them (C doubles where compiled). The centre that moves is written to both.

The step is river's: the first of the nearest centres by the sum of ``|c - v| ** p``
over the sample's features, in the sample's order, moves ``halflife`` of the way
toward it. river sums in the order of a set of strings, which moves with
PYTHONHASHSEED; every centre here holds exactly the sample's features.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from math import inf
from typing import Any

# relative margin for a decision taken on plainly summed squares: the decision stands
# only when the alternative is further by this much, a million times wider than how far
# another way of summing rounds apart (pow() here, math.dist in segments.Placement)
MARGIN = 1e-6


class KMeansStep:
    """The k-means step over ``model``'s centres as they are now, in ``keys`` order (the
    sample's features). Made afresh whenever the centres are replaced."""

    def __init__(self, model: Any, keys: Sequence[str]) -> None:
        self.model = model
        self.centers = model.centers  # the dict of centres this copy was taken from
        self.keys = list(keys)
        self._dicts = list(model.centers.values())  # river's order: ties go to the first
        self.values = array("d", [centre[k] for centre in self._dicts for k in self.keys])
        self._view = self.values  # the same array, a typed view acquired once where compiled

    def learn(self, x: list[float]) -> None:
        """Move the nearest centre toward ``x`` (its values in ``keys`` order)."""
        n = len(self.keys)
        if len(x) != n:
            raise ValueError(f"{len(x)} values for centres of {n} features")
        model = self.model
        j = self._clearly_nearest(x) if model.p == 2.0 else -1
        if j < 0:
            j = self._nearest(x, model.p)
        step = model.halflife
        values = self._view
        centre = self._dicts[j]
        keys = self.keys
        at = j * n
        for i in range(n):
            c = values[at + i]
            v = x[i]
            moved = c + step * (v - c)
            values[at + i] = moved
            centre[keys[i]] = moved

    def _nearest(self, x: list[float], p: float) -> int:
        """The first of the nearest centres by the sum of ``|c - v| ** p``, by pow() as
        float ** float calls it (compiled, ** on C doubles would multiply out small
        integer powers, rounding otherwise)."""
        values = self._view
        n = len(x)
        closest = -1
        best = inf
        for j in range(len(self._dicts)):
            d = 0.0  # summed left to right, as sum() of floats does
            at = j * n
            for i in range(n):
                v = x[i]
                d += math.pow(abs(values[at + i] - v), p)
            if d < best:
                closest, best = j, d
        if closest < 0:  # every sum NaN: scaled values are clipped, so never
            raise ValueError("no centre is nearest to a sample with no number in it")
        return closest

    def _clearly_nearest(self, x: list[float]) -> int:
        """:meth:`_nearest` for p = 2 with squares multiplied out, which costs far less
        than pow(): the pick stands only when the runner-up is further by a margin far
        wider than their rounding apart; -1 leaves a near tie to :meth:`_nearest`."""
        values = self._view
        n = len(x)
        closest = -1
        best = second = inf
        for j in range(len(self._dicts)):
            d = 0.0
            at = j * n
            for i in range(n):
                v = x[i]
                diff = values[at + i] - v
                d += diff * diff
            if d < best:
                closest, best, second = j, d, best
            elif d < second:
                second = d
        return closest if second - best > MARGIN * second else -1
