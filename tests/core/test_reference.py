"""The reference space's fit (workers/core/reference.py): the same bounds, centres and
scales, bit for bit, as the plain formula (a stable sort of each column, the clipped
values' exactly rounded mean and spread), whatever the ties and the signs of zeros.

Fast: small samples, no model, no broker.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.reference import Reference, fit_reference

FLAT = 1e-9


def plain(sample: list[tuple[float, ...]], clip: float) -> Reference:
    """The formula as written first: Python's sorted() and fsum over each column."""
    n = len(sample)
    cut = min((n - 1) // 2, math.ceil(clip * n))
    lo, hi, center, scale, active = [], [], [], [], []
    for column in zip(*sample, strict=True):
        ordered = sorted(column)
        low, high = ordered[cut], ordered[n - 1 - cut]
        clipped = [(v if v > low else low) for v in column]
        clipped = [(v if v < high else high) for v in clipped]
        mean = math.fsum(clipped) / n
        spread = math.sqrt(math.fsum((v - mean) ** 2 for v in clipped) / n)
        varies = high - low > FLAT * max(1.0, abs(high), abs(low)) and spread > 0
        lo.append(low)
        hi.append(high)
        center.append(mean)
        scale.append(spread if varies else 1.0)
        active.append(varies)
    return Reference(tuple(lo), tuple(hi), tuple(center), tuple(scale), tuple(active))


def bits(ref: Reference) -> tuple[object, ...]:
    """Every double as its bytes: -0.0 is not 0.0 here."""
    doubles = (tuple(struct.pack("<d", v) for v in getattr(ref, f))
               for f in ("lo", "hi", "center", "scale"))
    return (*doubles, ref.active)


# values a feature column holds: many zeros of both signs, repeats, fractions, big counts
VALUES = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 3.0]),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4).flatmap(lambda width: st.lists(
    st.tuples(*[VALUES] * width), min_size=1, max_size=300)),
    st.sampled_from([0.0, 0.01, 0.1, 0.3]))
def test_the_fit_is_the_plain_formulas_bit_for_bit(sample: list[tuple[float, ...]],
                                                   clip: float) -> None:
    assert bits(fit_reference(np.array(sample), clip)) == bits(plain(sample, clip))


def test_a_zero_bound_takes_the_sign_a_stable_sort_puts_there() -> None:
    """A clip bound that falls among zeros is the zero a stable sort puts at its rank
    (the zeros in the column's order), not whichever an unstable sort moved there."""
    column = [5.0] * 50 + [0.0] * 25 + [-0.0] * 25  # numpy's sort mixes these zeros
    ref = fit_reference(np.array([(v,) for v in column]), 0.01)
    assert struct.pack("<d", ref.lo[0]) == struct.pack("<d", 0.0)  # the first zero
    assert bits(ref) == bits(plain([(v,) for v in column], 0.01))
