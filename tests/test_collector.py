"""The collector settings every command runs with (workers.collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from workers import collector
from workers.config import load
from workers.core.partitioned.local import LocalTopology
from workers.simulation.generator import simulate


@pytest.fixture
def tuned() -> Iterator[None]:
    """The worker's settings for one test, the interpreter's after it."""
    thresholds = gc.get_threshold()
    collector.tune()
    collector.freeze_after_full_collections()
    yield
    gc.callbacks.remove(collector.freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("tuned")
def test_a_full_collection_leaves_what_it_kept_to_the_next_ones() -> None:
    kept = [[index] for index in range(1_000)]  # containers the collector tracks
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)
    assert gc.get_threshold() == collector.THRESHOLDS
    collector.freeze_after_full_collections()  # again: still one callback
    assert gc.callbacks.count(collector.freeze_survivors) == 1
    del kept  # a frozen object is still freed by its reference count
    assert gc.get_freeze_count() <= frozen - 1_000


def test_the_worker_stages_state_holds_no_reference_cycles() -> None:
    """What freezing the survivors relies on: profile partitions, the identity stage and
    the trainer, dropped (a revocation, a shutdown), leave no cyclic garbage behind,
    which a frozen heap would keep for good."""
    lines, _, _ = simulate(300, seed=5, days=2)
    topology = LocalTopology(load(), 3)
    topology.feed_many(lines)
    topology.flush()
    assert any(task.work.profiles for task in topology.tasks)
    gc.collect()  # the garbage of the feeding, not the state's
    gc.freeze()
    try:
        del topology
    finally:
        gc.unfreeze()
    assert gc.collect() == 0
