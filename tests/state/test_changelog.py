"""The state as keyed records: commits write what changed, and any commit restores exactly."""

from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from workers.config import load
from workers.core.partitioned.local import LocalTopology
from workers.core.partitioned.trainer import Trainer
from workers.core.pipeline import Pipeline
from workers.errors import StateError
from workers.service.batch import FLUSH_KEY, process_batch
from workers.simulation.generator import simulate
from workers.state.changelog import (
    META_KEY,
    StateRecord,
    StateWriter,
    Store,
    everything,
    rebuild,
    restore,
)
from workers.testing import config_from, identity_key, small_stream_config


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    lines, _, _ = simulate(400, seed=11, days=6)
    return lines


def _outputs(pipeline: Pipeline, lines: list[bytes]) -> list[bytes]:
    out = [orjson.dumps(o.record) for line in lines for o in pipeline.feed(line)]
    return out + [orjson.dumps(o.record) for o in pipeline.flush()]


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_any_commit_restores_to_the_same_outputs(stream: list[bytes], store: str,
                                                 tmp_path) -> None:
    """Commit after every chunk; rebuild from the changelog (newest record per key) at
    each commit point and continue: the outputs equal one uninterrupted run's."""
    config = config_from({"state": {"store": store, "directory": str(tmp_path)}})
    expected = _outputs(Pipeline(load()), stream)
    pipeline = Pipeline(config)
    writer = StateWriter(pipeline, saved=False)
    changelog: list[StateRecord] = []
    got: list[bytes] = []
    cut = len(stream) // 5
    for start in range(0, len(stream), cut):
        chunk = stream[start:start + cut]
        got += [orjson.dumps(o.record) for line in chunk for o in pipeline.feed(line)]
        changelog += writer.changes()
        restored = rebuild(config, changelog, "test")
        rest = _outputs(restored, stream[start + cut:])
        assert got + rest == expected, f"restored at record {start + cut}"


def test_a_changelog_attached_mid_stream_misses_nothing(stream: list[bytes]) -> None:
    """Without a changelog (``run``, ``replay``) no change is remembered, so nothing grows
    with the profiles; a writer attached later writes everything first, then changes."""
    config = load()
    expected = _outputs(Pipeline(config), stream)
    pipeline = Pipeline(config)
    half = len(stream) // 2
    got = [orjson.dumps(o.record) for line in stream[:half] for o in pipeline.feed(line)]
    assert len(pipeline.profiles) > 100
    assert not pipeline.changed_profiles and not pipeline.graph.changed
    writer = StateWriter(pipeline, saved=False)
    changelog = writer.changes()
    got += [orjson.dumps(o.record) for line in stream[half:-500] for o in pipeline.feed(line)]
    changelog += writer.changes()
    assert pipeline.graph.changed == set()  # taken
    rest = _outputs(rebuild(config, changelog, "test"), stream[-500:])
    assert got + rest == expected


def test_restored_summary_is_the_same(stream: list[bytes]) -> None:
    config = load()
    pipeline = Pipeline(config)
    for line in stream[:3000]:
        pipeline.feed(line)
    restored = rebuild(config, list(everything(pipeline)), "test")
    for line in stream[3000:]:
        pipeline.feed(line)
        restored.feed(line)
    pipeline.flush()
    restored.flush()
    assert restored.summary() == pipeline.summary()
    assert list(restored.profile_snapshots()) == list(pipeline.profile_snapshots())


def test_a_commit_writes_what_changed_not_the_whole_state(stream: list[bytes]) -> None:
    pipeline = Pipeline(load())
    writer = StateWriter(pipeline, saved=False)
    for line in stream:
        pipeline.feed(line)
    pipeline.flush()
    full = writer.changes()
    profiles = len(pipeline.profiles)
    assert sum(r.store == "profile" for r in full) == profiles
    # nothing else changed (and the model learned nothing): the small meta record only
    assert writer.changes() == [r for r in full if r.key == META_KEY]
    # one more event of one person: one profile record, one de-dup chunk, the meta record
    event = orjson.loads(stream[-1])
    event["event_id"] = "one-more"
    pipeline.feed(orjson.dumps(event))
    pipeline.flush()
    changed = writer.changes()
    assert {r.store for r in changed} <= {"profile", "dedup", "meta", "held"}
    assert sum(r.store == "profile" for r in changed) == 1
    assert sum(len(r.value or b"") for r in changed) < sum(len(r.value or b"") for r in full) / 20


def test_every_stage_of_the_partitioned_core_restores_from_its_own_records(
        stream: list[bytes]) -> None:
    """The identity stage, each profile partition and the trainer commit their own records;
    a new set of stages rebuilt from them at any commit point continues to exactly the
    outputs and profiles of an uninterrupted run."""
    config = small_stream_config()
    expected = LocalTopology(config, 3)
    expected.feed_many(stream)
    want = sorted(orjson.dumps(o.record) for o in expected.flush())
    topology = LocalTopology(config, 3)
    stages: list[Any] = [topology.stage, *topology.tasks, topology.trainer]
    writers = [StateWriter(stage, saved=False) for stage in stages]
    changelogs: list[list[StateRecord]] = [[] for _ in stages]
    cut = len(stream) // 4
    for start in range(0, len(stream), cut):
        topology.feed_many(stream[start:start + cut])
        for changelog, writer in zip(changelogs, writers, strict=True):
            changelog += writer.changes()
        restored = LocalTopology(config, 3)
        for stage, changelog in zip([restored.stage, *restored.tasks, restored.trainer],
                                    changelogs, strict=True):
            restore(stage, changelog, "test")
        restored.outputs = list(topology.outputs)
        restored.feed_many(stream[start + cut:])
        got = sorted(orjson.dumps(o.record) for o in restored.flush())
        assert got == want, f"restored at record {start + cut}"


def test_merges_held_back_at_a_commit_are_restored_with_their_absorbed_states(
        stream: list[bytes]) -> None:
    """Committed while profile partitions hold merges back (absorbed states waiting for
    the next tick every partition is sent), a restored set of stages merges them as the
    uninterrupted run does; each waiting state is a record of its own."""
    config = small_stream_config()
    expected = LocalTopology(config, 3)
    expected.feed_many(stream)
    want = sorted(orjson.dumps(o.record) for o in expected.flush())
    topology = LocalTopology(config, 3)
    cuts = 0
    for at, line in enumerate(stream):
        topology.feed_many([line])
        if not any(task.held and task.arrived for task in topology.tasks):
            continue
        cuts += 1
        if cuts not in (1, 50, 200):  # a few such points along the stream
            continue
        restored = LocalTopology(config, 3)
        for stage, new in zip([topology.stage, *topology.tasks, topology.trainer],
                              [restored.stage, *restored.tasks, restored.trainer], strict=True):
            records = list(everything(stage))
            restore(new, records, "test")
            if stage in topology.tasks and stage.held:
                assert any(r.key.startswith(b"hold:") for r in records)
        assert [len(t.held) for t in restored.tasks] == [len(t.held) for t in topology.tasks]
        restored.outputs = list(topology.outputs)
        restored.feed_many(stream[at + 1:])
        got = sorted(orjson.dumps(o.record) for o in restored.flush())
        assert got == want, f"restored after record {at}"
    assert cuts >= 200


def test_a_profile_partition_commits_only_the_profiles_it_changed(stream: list[bytes]) -> None:
    topology = LocalTopology(small_stream_config(), 3)
    task = topology.tasks[0]
    writer = StateWriter(task, saved=False)
    topology.feed_many(stream)
    topology.flush()
    first = writer.changes()
    assert sum(r.store == "profile" for r in first) == len(task.work.profiles) > 0
    assert sum(r.store == "view" for r in first) == len(task.view.held) > 0
    assert [r.store for r in writer.changes()] == ["meta"]


class _Sequenced(NamedTuple):
    key: bytes
    value: bytes
    offset: int


def _two_routers(lines: list[bytes], seed: int) -> list[_Sequenced]:
    """A backlog of two input partitions forwarded by two routers racing each other: the
    sequenced stream interleaves them in runs, hours of event time apart (beyond the
    reorder window), each record keyed by its input partition and offset, then a flush."""
    rnd = random.Random(seed)
    parts: list[list[bytes]] = [[], []]
    for line in lines:
        parts[zlib.crc32(identity_key(line) or b"") % 2].append(line)
    out: list[_Sequenced] = []
    at = [0, 0]
    while at[0] < len(parts[0]) or at[1] < len(parts[1]):
        p = rnd.randrange(2)
        for line in parts[p][at[p]:at[p] + rnd.randint(20, 700)]:
            out.append(_Sequenced(f"in:{p}:{at[p]}".encode(), line, len(out)))
            at[p] += 1
    out.append(_Sequenced(FLUSH_KEY, b"", len(out)))
    return out


def _groups_and_counts(pipeline: Pipeline) -> dict[str, tuple[dict[str, list[str]], int]]:
    return {pid: (pipeline.graph.identifiers(pid), pipeline.profiles[pid].event_count)
            for pid in pipeline.profiles}


def test_a_takeover_at_any_commit_of_a_sequenced_stream_ends_as_one_pass(tmp_path: Path) -> None:
    """The worker's takeover without a broker (issue 14): the owner's batches over a
    sequenced stream of two racing routers, a commit after random batches with merges
    between them, the RocksDB store; rebuilt from the newest record per key at every
    commit point and continued, the identity groups and event counts equal one
    uninterrupted pass over the same sequenced stream."""
    lines, _, _ = simulate(300, seed=23, days=2)
    config = config_from({"state": {"store": "rocksdb", "directory": str(tmp_path)},
                          "segmentation": {"warmup_profiles": 50}})
    sequenced = _two_routers(lines, seed=5)
    whole = Pipeline(config)
    process_batch(whole, sequenced)
    expected = _groups_and_counts(whole)
    rnd = random.Random(7)
    pipeline = Pipeline(config)
    writer = StateWriter(pipeline, saved=False)
    latest: dict[tuple[Store, bytes], bytes | None] = {}
    at = commits = merges = 0
    while at < len(sequenced):
        size = rnd.randint(1, 600)
        merges -= pipeline.stats.identity_merges
        process_batch(pipeline, sequenced[at:at + size])
        merges += pipeline.stats.identity_merges
        at += size
        if rnd.random() < 0.5 or at >= len(sequenced):
            latest.update(((r.store, r.key), r.value) for r in writer.changes())
            commits += 1
            restored = rebuild(config, [StateRecord(store, key, value)
                                        for (store, key), value in latest.items()], "test")
            if at < len(sequenced):
                process_batch(restored, sequenced[at:])
            assert _groups_and_counts(restored) == expected, f"restored at offset {at}"
            restored.profiles.close()
    assert commits > 10 and merges > 0


def test_the_trainer_keeps_what_waits_a_record_each_and_restores_it(
        stream: list[bytes]) -> None:
    """Partitions far apart: the samples and marks waiting for the slowest one are records
    of their own (never one big value), and a trainer restored from them learns what an
    uninterrupted one learns."""
    config = small_stream_config()
    topology = LocalTopology(config, 2)
    held: list[Any] = []
    offer = topology.trainer.offer

    def spy(record: Any) -> None:
        held.append(record)
        offer(record)

    topology.trainer.offer = spy  # type: ignore[method-assign]
    topology.feed_many(stream)
    topology.flush()
    # partition 1 marks nothing until the end: everything else waits for it
    late = [r for r in held if getattr(r, "partition", None) == 1]
    early = [r for r in held if getattr(r, "partition", None) != 1]
    trainer = Trainer(config, 2)
    writer = StateWriter(trainer, saved=False)
    for record in early:
        trainer.offer(record)
    records = writer.changes()
    waiting = [r for r in records if r.key.startswith((b"sample:", b"mark:"))]
    assert len(waiting) > 500 and max(len(r.value or b"") for r in records) < 100_000
    restored = restore(Trainer(config, 2), records, "test")
    for record in late:
        trainer.offer(record)
        restored.offer(record)
    assert restored.learned_through == trainer.learned_through > 0
    assert restored.model.snapshot == trainer.model.snapshot
    assert restored.model.snapshot is not None
    assert [(v.epoch, v.snapshots) for v in restored.take_versions()] == [
        (v.epoch, v.snapshots) for v in trainer.take_versions()]


def _changelog(pipeline: Pipeline) -> dict[tuple[str, bytes], bytes | None]:
    return {(r.store, r.key): r.value for r in everything(pipeline)}


@pytest.mark.parametrize(("change", "says"), [
    (lambda h: {**h, "format": h["format"] - 1}, r"state format \d+\); this is"),
    (lambda h: {**h, "config": {**h["config"], "features": {
        **h["config"]["features"], "half_life_days": 99}}},
     r"different configuration: features\.half_life_days: 99 in the state, 14"),
    (None, r"before state format headers"),
])
def test_changelogs_of_another_format_or_configuration_are_refused_in_one_line(
        stream: list[bytes], change: Any, says: str) -> None:
    """Profiles written by another state format or feature configuration would be read
    wrongly: the header record refuses them, naming what differs."""
    pipeline = Pipeline(load())
    for line in stream[:2000]:
        pipeline.feed(line)
    records = _changelog(pipeline)
    key = ("meta", b"header:" + META_KEY)
    if change is None:
        del records[key]
    else:
        value = records[key]
        assert value is not None
        records[key] = orjson.dumps(change(orjson.loads(value)))
    with pytest.raises(StateError, match=says):
        rebuild(load(), [StateRecord(s, k, v) for (s, k), v in records.items()],  # type: ignore[arg-type]
                "the changelogs")


def test_an_upgrade_that_keeps_the_state_format_restores(stream: list[bytes]) -> None:
    pipeline = Pipeline(load())
    for line in stream[:2000]:
        pipeline.feed(line)
    records = _changelog(pipeline)
    key = ("meta", b"header:" + META_KEY)
    value = records[key]
    assert value is not None
    records[key] = orjson.dumps({**orjson.loads(value), "version": "0.0.1"})
    restored = rebuild(load(), [StateRecord(s, k, v) for (s, k), v in records.items()],  # type: ignore[arg-type]
                       "the changelogs")
    assert len(restored.profiles) == len(pipeline.profiles)
