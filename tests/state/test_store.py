"""Profile stores (workers/store.py): the RocksDB store gives exactly the memory
store's results, state round-trips through checkpoints between the two, and a
RocksDB store leaves nothing behind on disk."""

from __future__ import annotations

import dataclasses
import os
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from workers.config import Config, StateConfig, load
from workers.core.features import ProfileState
from workers.core.pipeline import Pipeline
from workers.core.records import Output
from workers.simulation.generator import simulate
from workers.state.codec import pack, unpack
from workers.state.saved import dump_state, restore_state
from workers.state.store import MemoryStore, RocksDBStore, decode, encode, open_store


@cache
def lines() -> list[bytes]:
    return simulate(400, seed=11, days=7)[0]


def config_with(store: str, directory: Path | None = None) -> Config:
    """A model that publishes often, so model updates re-assess stored profiles."""
    base = load(env={})
    busy = dataclasses.replace(base.segmentation, warmup_profiles=50, snapshot_every_learns=20,
                               min_publish_interval_seconds=3600, publish_shift=0.05)
    return dataclasses.replace(base, segmentation=busy, state=StateConfig(
        store=store, directory=None if directory is None else str(directory)))


def run(pipeline: Pipeline, data: list[bytes]) -> list[Output]:
    out: list[Output] = []
    for line in data:
        out.extend(pipeline.feed(line))
    return out


def final(pipeline: Pipeline) -> dict[str, Any]:
    return {pid: pipeline.profile_snapshot(pid) for pid in pipeline.profiles}


def test_profile_state_round_trips_compactly() -> None:
    pipeline = Pipeline(load(env={}))
    run(pipeline, lines()[:3000])
    pipeline.flush()
    state = max(pipeline.profiles.values(), key=lambda s: s.event_count)
    copy = decode(encode(state))
    assert all(getattr(copy, name) == getattr(state, name) for name in ProfileState.__slots__)
    assert copy.vector(pipeline.spec) == state.vector(pipeline.spec)
    # slot names are not repeated per profile, as pickle's default for __slots__ would
    by_name = {name: getattr(state, name) for name in ProfileState.__slots__}
    assert len(encode(state)) < len(pickle.dumps(by_name, protocol=pickle.HIGHEST_PROTOCOL)) - 200


def test_a_saved_state_reads_as_earlier_versions_wrote_it() -> None:
    """Recent products are a tuple in memory but a list in the record, as the version
    before wrote them and appends to them: a worker of it can still take the state over."""
    pipeline = Pipeline(load(env={}))
    run(pipeline, lines()[:3000])
    state = max(pipeline.profiles.values(), key=lambda s: len(s.recent_products))
    assert state.recent_products
    scalars = [s for s in ProfileState.__slots__ if s not in ("counts", "recent_ids")]
    products = unpack(encode(state))[2 + scalars.index("recent_products")]
    assert type(products) is list and products == list(state.recent_products)


def test_a_profile_record_of_earlier_versions_reads_as_the_same_profile() -> None:
    """Versions before wrote the state, and each trait's (time, value), as tuples (msgpack
    extension values); this one writes lists, which pack several times faster. A worker
    of this version takes over a changelog or a state file written by one before."""
    pipeline = Pipeline(load(env={}))
    run(pipeline, lines())
    state = max(pipeline.profiles.values(), key=lambda s: len(s.traits or ()))
    assert state.traits
    earlier = state.__getstate__()
    at = 2 + [s for s in ProfileState.__slots__ if s not in ("counts", "recent_ids")].index(
        "traits")
    earlier[at] = dict(state.traits)  # (time, value) tuples, as they are in memory
    old, new = decode(pack(tuple(earlier))), decode(encode(state))
    for copy in (old, new):
        assert all(getattr(copy, name) == getattr(state, name)
                   for name in ProfileState.__slots__)
        assert all(type(stated) is tuple for stated in (copy.traits or {}).values())
    assert len(encode(state)) < len(pack(tuple(earlier)))


def test_rocksdb_store_gives_the_memory_store_results(tmp_path: Path) -> None:
    memory = Pipeline(config_with("memory"))
    assert memory.summary()["model_version"] == 0
    rocks = Pipeline(config_with("rocksdb", tmp_path))
    assert isinstance(memory.profiles, MemoryStore)
    assert isinstance(rocks.profiles, RocksDBStore)
    want = run(memory, lines()) + memory.flush()
    got = run(rocks, lines()) + rocks.flush()
    assert got == want
    assert len(rocks.profiles) == len(memory.profiles)
    assert list(rocks.profiles) == sorted(memory.profiles)
    assert final(rocks) == final(memory)
    assert rocks.personas() == memory.personas()
    assert memory.summary()["model_version"] > 2
    assert memory.summary()["changes_by_reason"].get("model_update", 0) > 0


def test_state_moves_between_stores_through_a_checkpoint(tmp_path: Path) -> None:
    """A checkpoint is store-independent: memory -> rocksdb -> memory mid-stream."""
    half = len(lines()) // 2
    straight = Pipeline(config_with("memory"))
    want = run(straight, lines()) + straight.flush()

    first = Pipeline(config_with("memory"))
    got = run(first, lines()[:half])
    second = restore_state(dump_state(first), config_with("rocksdb", tmp_path), "test")
    assert isinstance(second.profiles, RocksDBStore)
    got += run(second, lines()[half:half + 2000])
    third = restore_state(dump_state(second), config_with("memory"), "test")
    assert isinstance(third.profiles, MemoryStore)
    got += run(third, lines()[half + 2000:]) + third.flush()
    assert got == want
    assert final(third) == final(straight)


def test_rocksdb_store_mapping_and_cleanup(tmp_path: Path) -> None:
    store = open_store(StateConfig(store="rocksdb", directory=str(tmp_path)))
    assert isinstance(store, RocksDBStore)
    assert os.listdir(tmp_path) == [os.path.basename(store.path)]
    a, b = ProfileState(3, 100.0), ProfileState(3, 200.0)
    store["p_b"] = b
    store["p_a"] = a
    a.event_count = 7  # changed after it was handed over: kept, as a dict would
    store.sync()
    assert len(store) == 2 and "p_a" in store and "p_z" not in store
    assert store["p_a"].event_count == 7 and store.get("p_z") is None
    assert [(pids, [s.base for s in states]) for pids, states in store.sorted_chunks(1)] == [
        (["p_a"], [100.0]), (["p_b"], [200.0])]
    assert store.pop("p_b").base == 200.0
    assert len(store) == 1 and "p_b" not in store
    with pytest.raises(KeyError):
        store["p_b"]
    store.close()
    assert os.listdir(tmp_path) == []


def _in_chunks(store: MemoryStore, size: int) -> list[tuple[str, float]]:
    out = []
    for pids, states in store.sorted_chunks(size):
        assert 0 < len(pids) == len(states) <= size
        out.extend((pid, s.base) for pid, s in zip(pids, states, strict=True))
    return out


def test_memory_store_sorted_chunks_in_id_order_between_changes() -> None:
    """Each call is in id order, whatever was added, replaced or removed since the last
    (the store reorders itself at each call, so the next one merges rather than sorts)."""
    store = MemoryStore()
    states = {pid: ProfileState(3, float(n)) for n, pid in enumerate(["p_m", "p_c", "p_x"])}
    store.update(states)
    assert _in_chunks(store, 2) == [("p_c", 1.0), ("p_m", 0.0), ("p_x", 2.0)]
    store["p_a"] = ProfileState(3, 10.0)
    del store["p_m"]
    store["p_z"] = ProfileState(3, 11.0)
    store["p_c"] = ProfileState(3, 12.0)  # replaced: the new state is the one read
    store["p_b"] = ProfileState(3, 13.0)
    assert _in_chunks(store, 3) == [
        ("p_a", 10.0), ("p_b", 13.0), ("p_c", 12.0), ("p_x", 2.0), ("p_z", 11.0)]
    assert store["p_x"] is not None and len(store) == 5
