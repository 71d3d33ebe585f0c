"""River's k-means step on a flat copy of the centres (workers/core/kmeans_step.py): the
same centre moves to the same place as with river's ``KMeans.learn_one``, and the
centres river holds (what the state saves) stay the ones the step reads."""

from __future__ import annotations

import collections
import random

import pytest
from river import cluster

from workers.core.kmeans_step import KMeansStep


def pair(p: float, centres: dict[int, dict[str, float]],
         halflife: float = 0.3) -> tuple[cluster.KMeans, cluster.KMeans]:
    ours, theirs = (cluster.KMeans(n_clusters=len(centres), halflife=halflife, p=p, seed=1)
                    for _ in range(2))
    for model in (ours, theirs):
        model.centers = {j: collections.defaultdict(float, c) for j, c in centres.items()}
    return ours, theirs


def held(model: cluster.KMeans) -> dict[int, dict[str, float]]:
    return {j: dict(c) for j, c in model.centers.items()}


@pytest.mark.parametrize("p", [1, 2, 3])
def test_the_kmeans_step_is_rivers(p: int) -> None:
    """Whatever the Minkowski power ``p`` (compiled, a power of C doubles must not round
    otherwise), over hundreds of steps."""
    rng = random.Random(p)
    keys = [f"f{i}" for i in range(9)]
    ours, theirs = pair(p, {j: {k: rng.uniform(-3, 3) for k in keys} for j in range(4)})
    step = KMeansStep(ours, keys)
    for _ in range(500):
        x = [rng.gauss(0, 2) / 3 for _ in keys]
        step.learn(x)
        theirs.learn_one(dict(zip(keys, x, strict=True)))
    assert held(ours) == held(theirs)
    assert list(step.values) == [v for c in held(ours).values() for v in c.values()]


@pytest.mark.parametrize("p", [1, 2])
def test_a_profile_as_near_two_centres_moves_the_first_as_rivers_does(p: int) -> None:
    """Ties (and near ties, which p = 2 settles with pow() as river does) go to the
    first nearest centre."""
    ours, theirs = pair(p, {0: {"a": 5.0, "b": 5.0}, 1: {"a": 1.0, "b": 0.0},
                            2: {"a": -1.0, "b": 0.0}}, halflife=0.5)
    step = KMeansStep(ours, ["a", "b"])
    for x in ([0.0, 0.0], [0.0, 1e-9], [1e-300, 0.0]):
        step.learn(x)
        theirs.learn_one({"a": x[0], "b": x[1]})
        assert held(ours) == held(theirs)
    assert ours.centers[2]["a"] == -1.0  # the second of two equals never moved


def test_a_sample_of_other_features_is_refused() -> None:
    ours, _ = pair(2, {0: {"a": 0.0}, 1: {"a": 1.0}})
    with pytest.raises(ValueError, match="2 values for centres of 1 features"):
        KMeansStep(ours, ["a"]).learn([0.0, 1.0])
