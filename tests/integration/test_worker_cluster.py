"""Worker processes on the real local broker: scale-out and crash recovery (issue 5).

Each test runs `persona-stream worker` processes, as an operator would, on
fresh topics, and compares the end state with the in-process pipeline: the same
identifier groups and event counts (``test_worker_partitioned`` holds the rest of the
outputs against the same stages in one process).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from workers.config import load
from workers.core.partitioned.local import LocalTopology
from workers.core.partitioned.router import partition_of
from workers.core.pipeline import Pipeline
from workers.service.app import provision_topics
from workers.service.batch import process_batch
from workers.simulation.generator import simulate
from workers.testing import (
    Record,
    WorkerProcess,
    identity_key,
    pipeline_over,
    produce,
    run_cli,
    topic_records,
    wait_for,
    worker_config,
    worker_processes,
)

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    # keyed like a web SDK would: by the first identifier of the event
    produce(topic, [Record(line, identity_key(line)) for line in lines], bootstrap)



def _routers_committed_all(bootstrap: str, application_id: str, topic: str) -> bool:
    """The router group's committed offsets reach the end of every input partition."""
    from kafka.admin import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p)
                                     for p in consumer.partitions_for_topic(topic) or ()])
        group = f"{application_id}.router"
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        consumer.close()
        admin.close()
    return bool(ends) and all(tp in committed and committed[tp].offset == end
                              for tp, end in ends.items())


def _owner(group: list[WorkerProcess]) -> WorkerProcess | None:
    for w in group:
        status = w.status()
        if status and status["owner"]:
            return w
    return None


def _the_owner(group: list[WorkerProcess]) -> WorkerProcess:
    """The worker reporting the owner role, asked until one answers: a ``/status`` that
    times out under load is no answer, not "no owner"."""
    deadline = time.monotonic() + 30
    while (owner := _owner(group)) is None:
        if time.monotonic() > deadline:
            pytest.fail("no worker reports the owner role")
        time.sleep(0.5)
    return owner


def _caught_up(group: list[WorkerProcess], partitions: int) -> bool:
    statuses = [w.status() for w in group]
    if not all(statuses):
        return False
    owners = [s for s in statuses if s and s["owner"]]
    held = sorted(p for s in statuses if s for p in s["task_partitions"])
    return (len(owners) == 1 and bool(owners[0]["caught_up"])
            and held == list(range(partitions))
            and all(s and s["tasks_caught_up"] for s in statuses if s["task_partitions"]))


def _done(group: list[WorkerProcess], partitions: int) -> bool:
    """The identity stage and every profile partition applied every record, twice in a
    row two seconds apart (a partition may still wait for a model version)."""
    if not _caught_up(group, partitions):
        return False
    time.sleep(2)
    return _caught_up(group, partitions)


def _profiles(group: list[WorkerProcess]) -> dict[str, dict[str, Any]]:
    """Every worker's profile partitions' profiles: together, the whole population."""
    found: dict[str, dict[str, Any]] = {}
    for worker in group:
        status, body = worker.admin_get("/profiles")
        assert status == 200
        for p in map(orjson.loads, body.splitlines()):
            assert found.setdefault(p["profile_id"], p) is p, "a profile held twice"
    return found


def _groups_and_counts(profiles: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, int]]:
    return {pid: ({t: sorted(v) for t, v in p["identifiers"].items()}, p["event_count"])
            for pid, p in profiles.items()}


def _assert_as_one_process(got: dict[str, dict[str, Any]], lines: list[bytes]) -> None:
    """The same profiles (identifier groups and event counts) as one process makes."""
    expected = pipeline_over(lines)
    want = {pid: expected.profile_snapshot(pid) for pid in expected.profiles}
    assert _groups_and_counts(got) == _groups_and_counts(want)


def test_two_workers_on_four_partitions_match_one_process(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    lines, _, _ = simulate(400, seed=21, days=2)
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=4, commit_interval_seconds=1)
    with worker_processes(config, 2, tmp_path) as group:
        wait_for(lambda: all((w.status() or {}).get("input_partitions") for w in group), 60,
                 "both routers to share the input partitions")
        _produce(kafka_bootstrap, settings["kafka"]["input_topic"], lines)
        wait_for(lambda: _done(group, 4), 180, "every stage to process every record")
        owner = _the_owner(group)
        # both routers took part: the input partitions were shared
        assert all(w.status()["routed"] > 0 for w in group)  # type: ignore[index]
        # the stream has gone quiet: the routers commit what they forwarded within their
        # interval anyway, so a restart forwards none of it again
        kafka = settings["kafka"]
        wait_for(lambda: _routers_committed_all(kafka_bootstrap, kafka["application_id"],
                                                kafka["input_topic"]),
                 10, "the routers to commit every input record they forwarded")
        got = _profiles(group)
        _assert_as_one_process(got, lines)
        wait_for(lambda: len({w.status()["model_version"] for w in group}) == 1  # type: ignore[index]
                  and group[0].status()["model_version"] > 0,  # type: ignore[index]
                  30, "every worker to report the same model version")
        # `persona-stream profile --url` looks a profile up in the running deployment: an
        # identifier on the worker making the identity decisions, for a profile it holds
        held = set(owner.status()["task_partitions"])  # type: ignore[index]
        known = next(p for p in got.values() if "email" in p["identifiers"]
                     and partition_of(p["profile_id"], 4) in held)
        email = known["identifiers"]["email"][0]
        shown = run_cli("profile", f"email:{email}", "--url", owner.admin_url)
        assert shown.returncode == 0
        assert orjson.loads(shown.stdout)["profile_id"] == known["profile_id"]
        other = next(w for w in group if w is not owner)
        refused = run_cli("profile", email, "--url", other.admin_url)
        assert refused.returncode == 2
        assert len(refused.stderr.decode().strip().splitlines()) == 1
        table = run_cli("personas", "--url", f"http://127.0.0.1:{other.port}")
        assert table.returncode == 0 and b"size" in table.stdout


def _sequenced_pass(bootstrap: str, app: str, config: Path) -> Pipeline:
    """One uninterrupted pass over the sequenced stream, record by record through the owner's
    own batch step, the rest of the core in the same process: the pipeline it ends with."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    tp = TopicPartition(f"{app}-sequenced", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    pipeline = Pipeline(load(config))
    for record in consumer:
        process_batch(pipeline, [record])
    consumer.close()
    return pipeline


def _assert_as_one_sequenced_pass(got: dict[str, dict[str, Any]], bootstrap: str, app: str,
                                  config: Path, lines: list[bytes]) -> None:
    """The same profiles as one uninterrupted pass over the same sequenced stream, which
    holds every input record.

    Not compared with one process over ``lines`` in their order: two routers forwarding a
    backlog produced at once interleave its partitions in the sequenced stream hours of
    event time apart, far beyond the reorder window, and a refused link (``limit:...``)
    depends on the order events arrive in beyond the window (README, "Ordering"). What a
    takeover must keep is that the state is a function of the sequenced offset.
    """
    expected = _sequenced_pass(bootstrap, app, config)
    want = {pid: expected.profile_snapshot(pid) for pid in expected.profiles}
    assert _groups_and_counts(got) == _groups_and_counts(want)
    assert sum(expected.positions.values()) == len(lines)  # every input record was in it


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_killed_worker_restarts_from_its_changelogs_and_loses_nothing(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path,
        guarantee: str) -> None:
    """SIGKILL mid-stream, restart: nothing lost, the same outputs as one uninterrupted
    pass; exactly once, a read_committed consumer sees every output exactly once. One
    input partition: the sequenced order is the order produced, as in the reference."""
    lines, _, _ = simulate(500, seed=22, days=2)
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=1, commit_interval_seconds=1,
                                     processing_guarantee=guarantee)
    k = settings["kafka"]
    first = WorkerProcess(config, instance_id="solo", log_dir=tmp_path)
    try:
        wait_for(lambda: first.status() is not None, 60, "the worker to serve /status")
        _produce(kafka_bootstrap, k["input_topic"], lines)

        def midway() -> bool:
            status = first.status()
            return bool(status and status["owner"] and status["commits"] >= 1
                        and (status["events_read"] or 0) > len(lines) // 3)

        wait_for(midway, 120, "a commit in the middle of the stream")
        before = topic_records(k["segment_changes_topic"], kafka_bootstrap)
    finally:
        first.stop(signal.SIGKILL)  # no goodbye: no final commit
    # the same instance id (a pod restarted in place): static membership in every group
    # (faust joins none), so it is ready without waiting out its dead self's session
    restarted = time.monotonic()
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as second:
        wait_for(lambda: second.get("/readyz") is not None, 60,
                 "the restarted worker to be ready")
        ready_after = time.monotonic() - restarted
        wait_for(lambda: _done([second], 1), 180, "the restarted worker to catch up")
        restored = second.status()
        assert restored is not None and restored["restored_from"] > 0  # the changelogs were used
        _assert_as_one_process(_profiles([second]), lines)
        # its counters count what it processed, not the history it restored
        counted = sum(float(line.split()[-1]) for line in
                      (second.get("/metrics") or b"").decode().splitlines()
                      if line.startswith("persona_stream_events_total{"))
        # (events held in the restored event-time buffer count when they leave it)
        assert counted <= len(lines) - restored["restored_from"] + 100
    assert ready_after < 30, f"ready {ready_after:.0f} s after the restart"
    after = topic_records(k["segment_changes_topic"], kafka_bootstrap)
    ids = [r["event_id"] for r in after]
    # at-least-once: whatever was re-emitted repeats its id exactly; nothing is missing
    # and nothing new was invented compared with one uninterrupted pass
    one_pass = LocalTopology(load(config), 1)
    one_pass.feed_many(lines)
    assert set(ids) == {o.record["event_id"] for o in one_pass.flush()
                        if o.kind == "segment_change"}
    assert {r["event_id"] for r in before} <= set(ids)
    by_id: dict[str, dict[str, Any]] = {}
    for record in after:
        record.pop("emitted_at")
        assert by_id.setdefault(record["event_id"], record) == record
    if guarantee == "exactly_once":
        committed = [r["event_id"] for r in topic_records(
            k["segment_changes_topic"], kafka_bootstrap, isolation_level="read_committed")]
        assert sorted(committed) == sorted(set(ids))  # each once, none missing


def test_the_standby_takes_over_a_killed_owner_with_a_rocksdb_store(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    """Two workers with the production store: the non-owner keeps a copy of the changelogs
    restored; when the owner dies it takes over from that copy and loses nothing."""
    lines, _, _ = simulate(500, seed=23, days=2)
    (tmp_path / "state").mkdir()
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=2, commit_interval_seconds=1,
                                     state={"store": "rocksdb",
                                            "directory": str(tmp_path / "state")})
    with worker_processes(config, 2, tmp_path) as group:
        wait_for(lambda: all((w.status() or {}).get("input_partitions") for w in group), 60,
                 "both routers to share the input partitions")
        _produce(kafka_bootstrap, settings["kafka"]["input_topic"], lines)
        roles: list[tuple[WorkerProcess, WorkerProcess]] = []

        def warm() -> bool:
            # the roles are read afresh each time: a worker whose owner consumer joined its
            # group late takes the sequenced stream over from the first (the round-robin
            # assignor gives it to the lowest member id), and a busy page may not answer
            statuses = [w.status() or {} for w in group]
            if [bool(s.get("owner")) for s in statuses] not in ([True, False], [False, True]):
                return False
            held, copy = statuses if statuses[0]["owner"] else statuses[::-1]
            roles[:] = group if statuses[0]["owner"] else group[::-1]
            return bool(copy["standby_offset"] and (held["events_read"] or 0) > len(lines) // 3)

        wait_for(warm, 120, "the standby to hold a copy of the changelogs taken mid-stream")
        owner, standby = roles
        owner.stop(signal.SIGKILL)
        wait_for(lambda: _done([standby], 2), 180, "the standby to take over and catch up")
        status = standby.status()
        assert status is not None and status["store"] == "rocksdb"
        assert status["took_over_from_standby"] and status["restored_from"] > 0
        _assert_as_one_sequenced_pass(_profiles([standby]), kafka_bootstrap,
                                      settings["kafka"]["application_id"], config, lines)


def test_a_worker_joining_while_another_forwards_a_backlog_stops_neither(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    """A join mid-backlog rebalances the routers while they forward: neither worker stops,
    and the owner's state is a function of the sequenced stream, which holds every record.
    (Routers commit in the background while they forward the next batch; a rebalance that
    takes partitions between the two is left to their next holder. The race itself needs
    a longer backlog than a test affords: ``bench.py spread``, two workers started on
    200,000 records, stopped a worker on it before the fix, with ``Partition ... is not
    assigned``.)"""
    lines, _, _ = simulate(1500, seed=8, days=2)
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=4, commit_interval_seconds=1)
    provision_topics(load(config))  # the input's 4 partitions, before it is written
    _produce(kafka_bootstrap, settings["kafka"]["input_topic"], lines)
    first = WorkerProcess(config, instance_id="w0", log_dir=tmp_path)
    group = [first]
    try:
        wait_for(lambda: (first.status() or {}).get("routed", 0) > 0, 60,
                 "the first router to forward")
        group.append(WorkerProcess(config, instance_id="w1", log_dir=tmp_path))
        wait_for(lambda: all((w.status() or {}).get("input_partitions") for w in group), 60,
                 "both routers to share the input partitions")
        wait_for(lambda: _done(group, 4), 180, "every stage to process every record")
        assert all(w.proc.poll() is None for w in group)  # both still running
        _assert_as_one_sequenced_pass(_profiles(group), kafka_bootstrap,
                                      settings["kafka"]["application_id"], config, lines)
    finally:
        for worker in group:
            worker.stop()
