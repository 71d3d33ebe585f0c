"""The nearest centre of every point, as the plain formula picks it, at a fraction of its cost.

The plain formula sums the squared differences of every point to every centre: an
(points x centres x columns) block, the bulk of a model check (each Lloyd step takes
one). Expanded, ``|p|^2 - 2 p.c + |c|^2`` is one matrix product, but rounds otherwise,
so it could pick another centre where two are nearly as near, and change what a check
publishes. So the expanded form only decides the rows where the runner-up is further by
far more than either form's rounding; the others (near ties, non-finite values) are
decided by the plain formula, and the distance to the centre picked is summed plainly.
The results are those of the plain formula, bit for bit (``tests/core/test_nearest.py``).
"""

from __future__ import annotations

import numpy as np

# A row is decided by the expanded form when its runner-up is further by more than this
# share of |p|^2 + max |c|^2. Both forms round by at most about (columns + 2) * 2.2e-16
# of that (a dot product's error bound), so a gap this wide has the same sign in the
# plain formula up to ~10^5 columns.
_SURE = 1e-9


def nearest_labels(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for every point (the first of equals)."""
    if len(centres) < 2 or len(points) == 0:
        return np.zeros(len(points), dtype=np.intp)
    norms = np.einsum("ij,ij->i", centres, centres)
    # a centre a row, a point a column (reduced across rows: a vector operation);
    # |p|^2 is the same for every centre of a point: left out of the comparison
    shifted = norms[:, None] - 2.0 * (centres @ points.T)
    picked = shifted.argmin(axis=0)
    every = np.arange(len(points))
    best = shifted[picked, every]
    shifted[picked, every] = np.inf
    gap = shifted.min(axis=0) - best
    bound = _SURE * (np.einsum("ij,ij->i", points, points) + norms.max())
    unsure = np.flatnonzero(~(gap > bound))  # NaN gaps are unsure too
    if len(unsure):
        rows = points[unsure]
        picked[unsure] = ((rows[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(
            axis=1)
    return picked


def nearest(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest centre, squared distance to it) for every point."""
    picked = nearest_labels(points, centres)
    return picked, ((points - centres[picked]) ** 2).sum(axis=1)
