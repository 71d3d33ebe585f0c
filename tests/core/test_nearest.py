"""The nearest centre: the plain formula's labels and distances, bit for bit, whatever
the points (a model check's results, and so what it publishes, rest on it)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.nearest import nearest, nearest_labels


def _plain(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    picked = d.argmin(axis=1)
    return picked, d[np.arange(len(points)), picked]


def _same(points: np.ndarray, centres: np.ndarray) -> None:
    want_labels, want_d = _plain(points, centres)
    got_labels, got_d = nearest(points, centres)
    assert got_labels.tolist() == want_labels.tolist()
    assert got_d.tobytes() == want_d.tobytes()  # bit for bit: -0.0 and NaN alike
    assert nearest_labels(points, centres).tolist() == want_labels.tolist()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200), st.integers(1, 9), st.integers(1, 60), st.integers(0, 2**32 - 1),
       st.sampled_from([1e-6, 1.0, 1e6]), st.booleans())
def test_random_points_get_the_plain_formulas_labels_and_distances(
        n: int, k: int, d: int, seed: int, scale: float, gridded: bool) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, d)) * scale
    if gridded:  # few distinct values: many exact ties between centres
        points = np.round(points / scale) * scale
    centres = points[rng.integers(0, n, size=k)] if gridded else rng.normal(size=(k, d)) * scale
    _same(points, centres)


def test_a_point_halfway_between_two_centres_goes_to_the_first_as_plainly() -> None:
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1e-12]])
    points = np.array([[1.0, 0.0], [1.0, 5e-13], [1.0, -1e-300], [1.0 + 1e-15, 0.0]])
    _same(points, centres)


def test_duplicate_centres_and_points_on_them() -> None:
    centres = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    points = np.array([[1.0, 2.0], [3.0, 4.0], [2.0, 3.0]])
    _same(points, centres)


def test_huge_and_non_finite_values_fall_back_to_the_plain_formula() -> None:
    centres = np.array([[0.0, 0.0], [1e200, 0.0], [-1e200, 1.0]])
    points = np.array([[np.nan, 0.0], [np.inf, 0.0], [-np.inf, 3.0], [1e199, 1e199],
                       [1e-300, 0.0]])
    with np.errstate(all="ignore"):
        _same(points, centres)


def test_one_centre_and_no_points() -> None:
    _same(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.0, 0.0]]))
    assert nearest(np.zeros((0, 3)), np.zeros((2, 3)))[0].tolist() == []
