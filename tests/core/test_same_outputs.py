"""The per-event path's speed work must not change a single output byte.

``GOLDEN`` holds, for each river model, the SHA-256 of everything a run writes for a
simulated stream: every output record as the sinks serialise it (``emitted_at`` is
stamped later, by the sink), the summary, the persona cards and every profile
snapshot. The speed work (issue 19) was held to digests made from e51dea3, the tree
before it; once merged after issue 17's forget list (whose new summary fields change
the summary's bytes), the digests were made again from 5dff710, main just before the
speed work was merged, and the merged tree gives the same ones::

    git worktree add --detach /tmp/speed-base 5dff710
    PYTHONHASHSEED=0 python tests/core/test_same_outputs.py /tmp/speed-base

Issue 15's recent feature set changes outputs on purpose (profiles carry ``recent.*``
features, the model segments on them, hysteresis 0.2): the digests were made again from
that tree (branch q15), ``PYTHONHASHSEED=0 python tests/core/test_same_outputs.py .``
The recent order value weighing 0.3 instead of 1.0 (as the payment shares: both are 0 for
whoever did not buy lately) changes them on purpose again: made from that tree (q15b).
So does ``segmentation.min_events`` 8 instead of 5 (a profile is segmented from its 8th
event): made from that tree.

Under a fixed ``PYTHONHASHSEED``: at e51dea3 the streamkmeans and clustream runs
already differ from one hash seed to another (river iterates sets of feature names),
so the test runs the digests in a child process with the seed the goldens were made
with.

A change that alters them changes results, not only speed: regenerate them only
from a tree whose outputs are known right, and say so in the commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import orjson
import pytest

from workers.compiled import MODULES as MODULES_COMPILED
from workers.compiled import PURE_ENV

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("kmeans", "streamkmeans", "dbstream", "clustream")

GOLDEN = {
    'kmeans': 'ef6d4c4ff5cf8218293c2d1bf5f47c9972ed5af31dbf1e0c8e6d498745726026',
    'streamkmeans': '3d176172375a9e34bb9da70e12832a22013b6430d4e86f0ce14ff3acde1d0c2f',
    'dbstream': '9bf2c8c2795265b4a194a1e3938ec3f9e0b1fafb94059aeef57f61d0ce0c104f',
    'clustream': '99595463d85319e8ca9b2ef1c114f5dca761268164e188fad745dab30ae860d6',
}


@cache
def _stream() -> list[bytes]:
    from workers.simulation.generator import simulate

    return simulate(700, seed=11, days=10)[0]


def outputs_digest(model: str) -> str:
    """What a run over the stream writes, hashed: records, summary, cards, profiles."""
    from workers.core.pipeline import Pipeline
    from workers.testing import small_stream_config

    config = small_stream_config()
    config = dataclasses.replace(config, segmentation=dataclasses.replace(
        config.segmentation, model=model))
    pipeline = Pipeline(config)
    sha = hashlib.sha256()
    for line in _stream():
        for out in pipeline.feed(line):
            sha.update(orjson.dumps([out.kind, out.key, out.record]) + b"\n")
    for out in pipeline.flush():
        sha.update(orjson.dumps([out.kind, out.key, out.record]) + b"\n")
    sha.update(orjson.dumps(pipeline.summary()) + b"\n")
    sha.update(orjson.dumps(pipeline.personas()) + b"\n")
    for snapshot in pipeline.profile_snapshots():
        sha.update(orjson.dumps(snapshot) + b"\n")
    return sha.hexdigest()


@cache
def _digests(build: str) -> dict[str, str]:
    """The digests from a child process; ``build`` "pure" imports the Python source even
    where the compiled modules are built (``workers/compiled.py``)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", PURE_ENV: "1" if build == "pure" else ""}
    done = subprocess.run([sys.executable, __file__, str(ROOT)], cwd=ROOT, text=True,
                          env=env, capture_output=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return dict(line.split() for line in done.stdout.splitlines())


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("model", MODELS)
def test_outputs_are_byte_identical_to_the_tree_before(model: str, build: str) -> None:
    """Compiled or not, the same bytes: the compiled modules are the Python source built
    with Cython, and ``pip install`` without a C compiler gives the pure-Python one."""
    digests = _digests(build)
    if build == "pure":
        assert digests["compiled"] == "0"
    elif digests["compiled"] == "0":
        if os.environ.get("CI"):
            pytest.fail("no compiled module: Cython or the C compiler failed at install")
        pytest.skip("the compiled modules are not built here (`make build`)")
    else:
        assert digests["compiled"] == str(len(MODULES_COMPILED)), "only some modules compiled"
    assert digests[model] == GOLDEN[model]


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")
    from workers.compiled import compiled

    for name in MODELS:
        print(name, outputs_digest(name))
    print("compiled", len(compiled()))
