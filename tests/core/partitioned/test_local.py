"""Profiles spread over partitions (no broker): the same results for any number of
partitions and any order the stages' records meet in, and the identity groups of one
process."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson
import pytest

from workers.config import Config
from workers.core.forget import ForgetRequest, request_hashes
from workers.core.partitioned.local import LocalTopology
from workers.core.partitioned.records import Tick
from workers.core.partitioned.router import partition_of
from workers.core.pipeline import Pipeline
from workers.simulation.generator import simulate
from workers.testing import pipeline_over, small_stream_config


@cache
def stream() -> list[bytes]:
    return simulate(600, seed=5, days=10)[0]


@cache
def config() -> Config:
    """A warm-up a few hundred people reach, and a model that publishes often, moves
    people on a new version (a low hysteresis) and is in force soon after (so versions
    reach the profiles within this short stream)."""
    base = small_stream_config()
    return dataclasses.replace(base, segmentation=dataclasses.replace(
        base.segmentation, snapshot_every_learns=25, min_publish_interval_seconds=3600,
        publish_shift=0.1, hysteresis=0.05, version_epoch_ticks=4, version_delay_ticks=16))


def topology_over(lines: list[bytes], partitions: int, seed: int | None,
                  workers: int | None = None) -> LocalTopology:
    topology = LocalTopology(config(), partitions, seed, workers)
    topology.feed_many(lines)
    topology.flush()
    return topology


def profiles(topology: LocalTopology) -> dict[str, tuple[Any, int, int | None]]:
    """Each profile's identifier group, event count and segment, over every partition."""
    found = {}
    for task in topology.tasks:
        for pid, state in task.work.profiles.items():
            assert pid not in found, "a profile in two partitions"
            ids = {t: sorted(v) for t, v in task.view.identifiers(pid).items()}
            found[pid] = (ids, state.event_count, state.segment)
    return found


def output_ids(topology: LocalTopology) -> dict[str, list[str]]:
    by_kind: dict[str, list[str]] = {}
    for out in topology.outputs:
        by_kind.setdefault(out.kind, []).append(out.record.get("event_id") or
                                                orjson.dumps(out.record).decode())
    return {kind: sorted(ids) for kind, ids in by_kind.items()}


@cache
def reference() -> LocalTopology:
    return topology_over(stream(), 1, None)


@pytest.mark.parametrize(("partitions", "seed"), [(2, None), (3, 1), (3, 2), (6, None),
                                                  (6, 3)])
def test_any_number_of_partitions_in_any_delivery_order_gives_the_same_results(
        partitions: int, seed: int | None) -> None:
    """Segment changes, merges, lineage (their event ids) and every profile's group, count
    and segment: as one partition makes them, however the records of the stage, the
    moved states and the trainer's versions interleave on the way."""
    got = topology_over(stream(), partitions, seed)
    assert profiles(got) == profiles(reference())
    assert output_ids(got) == output_ids(reference())
    assert sum(len(t.work.profiles) > 0 for t in got.tasks) == partitions  # all did work


@pytest.mark.parametrize(("partitions", "seed", "workers"), [(3, 2, 1), (6, 3, 1), (6, 4, 2),
                                                             (6, None, 2)])
def test_states_handed_over_within_a_worker_give_the_same_results(
        partitions: int, seed: int | None, workers: int) -> None:
    """A state moved to a partition of the same worker is handed over at once and its copy
    through the topic is not taken again: the same results, and nothing left over."""
    got = topology_over(stream(), partitions, seed, workers)
    assert profiles(got) == profiles(reference())
    assert output_ids(got) == output_ids(reference())
    assert [(t.arrived, t.handed) for t in got.tasks] == [({}, set())] * partitions


def test_the_stream_exercises_what_the_partitions_must_agree_on() -> None:
    """The stream above is not a trivial one: merges across partitions, model versions."""
    ref, spread = reference(), topology_over(stream(), 3, None)
    kinds = output_ids(ref)
    assert len(kinds["segment_change"]) > 500 and len(kinds["identity_merge"]) > 100
    assert ref.trainer.model.snapshot is not None and ref.trainer.model.snapshot.version >= 5
    assert "segment_lineage" in kinds
    reasons = {o.record["reason"] for o in ref.outputs if o.kind == "segment_change"}
    assert {"assignment", "merge", "model_update"} <= reasons
    across = [o for o in spread.outputs if o.kind == "identity_merge"
              and any(partition_of(m, 3) != partition_of(o.record["profile_id"], 3)
                      for m in o.record["merged_profile_ids"])]
    assert len(across) > 50


def test_a_tick_ends_only_where_it_changes_something_with_the_same_results() -> None:
    """A partition is sent a tick's end when it had an event in the tick, or at an epoch's
    first and last tick: the outputs are those of sending every partition every tick."""
    runs = []
    for every_tick in (False, True):
        topology = LocalTopology(config(), 6, seed=7)
        if every_tick:  # as if every tick began and ended an epoch
            topology.router.epoch_ticks = 1
        ticks = []
        take = topology.router.take

        def counted(take: Any = take, ticks: list[int] = ticks) -> Any:
            sent = take()
            ticks.append(sum(1 for _, _, record in sent if isinstance(record, Tick)))
            return sent

        topology.router.take = counted  # type: ignore[method-assign]
        topology.feed_many(stream())
        topology.flush()
        runs.append((output_ids(topology), profiles(topology), sum(ticks)))
    (outputs, found, sent), (every_outputs, every_found, every_sent) = runs
    assert outputs == every_outputs and found == every_found
    # epochs of 4 ticks here: half the ticks begin or end one and still go to every partition
    assert sent < 0.7 * every_sent, (sent, every_sent)


def test_records_the_identity_stage_sends_again_are_applied_once() -> None:
    """A stage restored from a commit older than its partitions' sends again what it sent
    since, with the same numbers: a partition takes each number once (its profiles'
    recent event ids alone let events through, and ticks and moves would repeat)."""
    topology = LocalTopology(config(), 3, seed=5)
    take = topology.router.take
    again: list[Any] = []

    def twice() -> Any:
        sent = take()
        replayed, again[:] = list(again), sent[: len(sent) // 2]
        return replayed + sent + sent[len(sent) // 2:]  # some records come three times

    topology.router.take = twice  # type: ignore[method-assign]
    topology.feed_many(stream())
    topology.flush()
    assert profiles(topology) == profiles(reference())
    assert output_ids(topology) == output_ids(reference())


def test_identifier_groups_and_event_counts_are_those_of_one_pipeline() -> None:
    pipeline = pipeline_over(stream(), config())
    want = {pid: ({t: sorted(v) for t, v in pipeline.graph.identifiers(pid).items()},
                  state.event_count) for pid, state in pipeline.profiles.items()}
    got = {pid: (ids, count) for pid, (ids, count, _) in
           profiles(topology_over(stream(), 3, 4)).items()}
    assert got == want


def test_every_stage_counts_only_what_it_did() -> None:
    """Added up, the stages' counts are one pipeline's (the model's versions once, not once
    per partition)."""
    pipeline = pipeline_over(stream(), config())
    stats = topology_over(stream(), 3, None).stats()
    for name in ("events_read", "events_valid", "events_invalid", "events_duplicate",
                 "identity_merges", "traits_dropped"):
        assert getattr(stats, name) == getattr(pipeline.stats, name), name
    versions = reference().trainer.model.snapshot
    assert versions is not None and stats.model_updates == versions.version


def _segment_changes(topology: LocalTopology) -> Iterator[dict[str, Any]]:
    return (o.record for o in topology.outputs if o.kind == "segment_change")


def test_a_version_is_in_force_from_a_tick_set_by_the_trainer_not_by_speed() -> None:
    """Held back from every partition, the trainer's versions stop the partitions at the
    same tick: nothing is assessed with a version before its tick, whatever the order."""
    topology = LocalTopology(config(), 2, None)
    topology.trainer.offer = lambda record: None  # type: ignore[method-assign]
    topology.feed_many(stream()[:3000])
    stopped = [(t.inbox[0], t.learned_through) for t in topology.tasks]
    delay = config().segmentation.version_delay_ticks
    assert all(record.tick == delay and learned == -1  # type: ignore[union-attr]
               for record, learned in stopped)
    assert list(_segment_changes(topology)) == []


def test_a_forgotten_person_leaves_the_partition_that_held_them() -> None:
    lines = stream()
    topology = LocalTopology(config(), 3, None)
    topology.feed_many(lines)
    topology.flush()
    pid, (ids, _, _) = next((pid, p) for pid, p in sorted(profiles(topology).items())
                            if "email" in p[0] and p[2] is not None)
    email = ids["email"][0]
    topology.forget(ForgetRequest("r-1", request_hashes([f"email:{email}"], config()),
                                  "2026-02-01T09:00:00Z", "asked by the person"))
    topology.flush()
    assert pid not in profiles(topology)
    forgets = [o.record for o in topology.outputs if o.kind == "forget"]
    assert [f["profile_id"] for f in forgets] == [pid]
    assert forgets[0]["previous_segment"] is not None
    assert topology.stats().profiles_forgotten == 1
    # one pipeline forgets the same profile
    pipeline = Pipeline(config())
    for line in lines:
        pipeline.feed(line)
    pipeline.flush()
    assert pipeline.lookup(f"email:{email}") == pid
