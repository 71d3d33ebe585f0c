"""Replay: topic ranges and files through the core, into files, topics or nowhere."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers import cli
from workers.config import Config, load
from workers.core.pipeline import Pipeline
from workers.core.touchpoints import format_time, parse_time
from workers.errors import BrokerError, StateError, UsageError
from workers.io.drive import StreamInterrupted, run_files
from workers.io.sources import event_time
from workers.replay import ReplayRequest, run_replay
from workers.simulation.generator import simulate
from workers.state.saved import load_state, save_state
from workers.testing import (
    SMALL_WARMUP,
    Record,
    free_port,
    fresh_config,
    http_get,
    identity_key,
    produce,
    run_cli,
    small_stream_config,
)

OUTPUTS = ("segment_changes.jsonl", "identity_merges.jsonl", "dead_letters.jsonl")
FINAL = ("profiles.jsonl", "personas.json")
DAY = 86_400.0


def fixed_clock() -> str:
    return "2030-01-01T00:00:00.000Z"


def records(folder: Path, name: str, strip: tuple[str, ...] = ("emitted_at",)) -> list[dict]:
    rows = [orjson.loads(line) for line in (folder / name).read_bytes().splitlines()]
    return [{k: v for k, v in row.items() if k not in strip} for row in rows]


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    lines, _, _ = simulate(300, seed=21, days=3)
    return lines


# ---- no broker ------------------------------------------------------------------------


def test_event_time_reads_occurred_at_and_orders_junk_first() -> None:
    assert event_time(b'{"event_id":"a","occurred_at":"2026-01-05T10:00:00Z"}') == parse_time(
        "2026-01-05T10:00:00Z")
    for junk in (b"not json", b'{"occurred_at":"yesterday"}', b"\xff\xfe", b"[]"):
        assert event_time(junk) == -math.inf


def test_file_replay_equals_run(tmp_path: Path, stream: list[bytes]) -> None:
    source = write_lines(tmp_path / "s.jsonl", stream)
    config = load()
    run_files(config, [str(source)], tmp_path / "run")
    result = run_replay(config, ReplayRequest(files=[str(source)], out=str(tmp_path / "rep"),
                                              forget_requests=False),
                        clock=fixed_clock)
    assert result.summary["events_replayed"] == len(stream)
    for name in OUTPUTS:
        assert records(tmp_path / "rep", name) == records(tmp_path / "run", name)
    for name in FINAL:
        assert (tmp_path / "rep" / name).read_bytes() == (tmp_path / "run" / name).read_bytes()
    # the same summary, but for timing and the count of events this replay fed
    summaries = [orjson.loads((tmp_path / d / "summary.json").read_bytes()) for d in ("run", "rep")]
    for summary in summaries:
        del summary["seconds"], summary["events_per_second"]
    assert summaries[1].pop("events_replayed") == len(stream)
    assert summaries[0] == summaries[1]


# ---- history in event-time order -------------------------------------------------------

ALL_OUTPUTS = (*OUTPUTS, "segment_lineage.jsonl")


def test_two_orders_of_the_same_history_give_identical_outputs(
        tmp_path: Path, stream: list[bytes]) -> None:
    """Sorted by time, shuffled, or split in two files given in reverse order: the same."""
    import random

    config = small_stream_config()
    ordered = sorted(stream, key=lambda line: (event_time(line), line))
    shuffled = stream[:]
    random.Random(3).shuffle(shuffled)
    half = len(ordered) // 2
    inputs = {
        "sorted": [write_lines(tmp_path / "sorted.jsonl", ordered)],
        "shuffled": [write_lines(tmp_path / "shuffled.jsonl", shuffled)],
        "reversed": [write_lines(tmp_path / "late.jsonl", ordered[half:]),
                     write_lines(tmp_path / "early.jsonl", ordered[:half])],
    }
    for name, files in inputs.items():
        run_files(config, [str(f) for f in files], tmp_path / name)
    for name in (*ALL_OUTPUTS, *FINAL):
        expected = records(tmp_path / "sorted", name) if name.endswith(".jsonl") else (
            tmp_path / "sorted" / name).read_bytes()
        for other in ("shuffled", "reversed"):
            got = records(tmp_path / other, name) if name.endswith(".jsonl") else (
                tmp_path / other / name).read_bytes()
            assert got == expected, (other, name)
    assert records(tmp_path / "sorted", "segment_changes.jsonl")


def test_a_large_file_is_sorted_out_of_core_in_the_same_order(
        tmp_path: Path, stream: list[bytes]) -> None:
    import random

    from workers.io.sources import FileSource, ValidTime

    shuffled = stream[:]
    random.Random(4).shuffle(shuffled)
    path = str(write_lines(tmp_path / "s.jsonl", shuffled))
    said: list[str] = []
    timer = ValidTime(load())
    in_memory = FileSource([path], timer)
    on_disk = FileSource([path], timer, said.append, run_bytes=20_000)
    got = [line for line, _ in on_disk]
    assert got == [line for line, _ in in_memory]
    assert on_disk.runs > 5  # bounded memory: many runs merged
    assert on_disk.estimate(10) == len(stream)
    assert [timer(line) for line in got] == sorted(timer(line) for line in got)
    assert any("sorting" in s for s in said) and any("runs on disk" in s for s in said)
    assert [line for line, _ in FileSource([path])] == shuffled  # --assume-sorted


def test_run_says_it_sorts_and_assume_sorted_skips_it(tmp_path: Path,
                                                      stream: list[bytes]) -> None:
    path = str(write_lines(tmp_path / "s.jsonl", stream[:500]))
    done = run_cli("run", path, "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert b"run: sorting 1 file(s) by event time" in done.stderr
    assert b"--assume-sorted skips this" in done.stderr
    assert b"sorted 500 records in memory" in done.stderr
    done = run_cli("run", path, "--out", str(tmp_path / "b"), "--assume-sorted")
    assert done.returncode == 0, done.stderr
    assert b"sorting" not in done.stderr


def test_assume_sorted_with_a_topic_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--assume-sorted applies to --files"):
        run_replay(load(), ReplayRequest(topic="t", dry_run=True, assume_sorted=True))


def test_saved_state_continues_exactly(tmp_path: Path, stream: list[bytes]) -> None:
    half = len(stream) // 2
    first = write_lines(tmp_path / "first.jsonl", stream[:half])
    second = write_lines(tmp_path / "second.jsonl", stream[half:])
    config = small_stream_config()
    state = tmp_path / "state.bin"
    # the halves of a recorded stream, replayed as recorded (sorting each half would move
    # late events of the second half before the state's end, as no live worker could)
    whole = run_replay(config, ReplayRequest(files=[str(first), str(second)],
                                             out=str(tmp_path / "whole"), assume_sorted=True,
                                             forget_requests=False),
                       clock=fixed_clock)
    run_replay(config, ReplayRequest(files=[str(first)], out=str(tmp_path / "a"),
                                     state_out=str(state), assume_sorted=True,
                                     forget_requests=False),
               clock=fixed_clock)
    # the continuation runs in a fresh process with another hash seed: nothing in the state
    # may depend on set or dict iteration order of the process that wrote it
    done = run_cli("replay", "--files", str(second), "--state-in", str(state), "--assume-sorted",
                   "--out", str(tmp_path / "b"), "--quiet", "--ignore-forget-requests", env={
                       "PYTHONHASHSEED": "12345",
                       "PERSONA_STREAM_SEGMENTATION__WARMUP_PROFILES": str(SMALL_WARMUP)})
    assert done.returncode == 0, done.stderr
    for name in OUTPUTS:
        a, b = records(tmp_path / "a", name), records(tmp_path / "b", name)
        assert len(b) > 0 or name == "dead_letters.jsonl"
        assert a + b == records(tmp_path / "whole", name), name
    for name in FINAL:
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert whole.summary["events_replayed"] == len(stream)


def test_forget_offline_in_a_state_file_keeps_the_person_out_of_a_replay(
        tmp_path: Path, stream: list[bytes]) -> None:
    """``forget --state FILE``: no broker; the state's forget list then keeps the person's
    history out of a replay that continues from it, forget requests ignored or not."""
    half = len(stream) // 2
    source = write_lines(tmp_path / "all.jsonl", stream)
    state = tmp_path / "state.bin"
    run_replay(load(), ReplayRequest(files=[str(write_lines(tmp_path / "a.jsonl",
                                                            stream[:half]))],
                                     dry_run=True, state_out=str(state),
                                     forget_requests=False))
    pipeline = load_state(state, load())
    pid, email = next((pid, ids["email"][0]) for pid in sorted(pipeline.profiles)
                      if (ids := pipeline.graph.identifiers(pid)).get("email"))
    done = run_cli("forget", email, "--reason", "test", "--state", str(state))
    assert done.returncode == 0, done.stderr
    printed = done.stdout.decode()
    assert printed.count("\n") == 1 and f"forgot 1 profile(s) {pid}" in printed
    assert email not in printed
    forgotten = load_state(state, load())
    assert pid not in forgotten.profiles and forgotten.lookup(f"email:{email}") is None
    # the whole history again (the person's events included) on top of that state
    result = run_replay(load(), ReplayRequest(files=[str(source)], out=str(tmp_path / "o"),
                                              state_in=str(state), forget_requests=False))
    assert result.summary["events_forgotten"] > 0
    kept = ((tmp_path / "o" / "profiles.jsonl").read_text()
            + (tmp_path / "o" / "segment_changes.jsonl").read_text())
    assert pid not in kept and email not in kept
    # `run` continues from the state as well, forget list included
    done = run_cli("run", str(source), "--state-in", str(state), "--out", str(tmp_path / "r"),
                   "--quiet")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads((tmp_path / "r" / "summary.json").read_bytes())
    assert summary["events_forgotten"] == result.summary["events_forgotten"]
    kept = ((tmp_path / "r" / "profiles.jsonl").read_text()
            + (tmp_path / "r" / "segment_changes.jsonl").read_text())
    assert pid not in kept and email not in kept


def test_state_refuses_another_configuration(tmp_path: Path, stream: list[bytes]) -> None:
    config = load()
    pipeline = Pipeline(config)
    for line in stream[:200]:
        pipeline.feed(line)
    save_state(pipeline, tmp_path / "s.bin")
    other = dataclasses.replace(config, segmentation=dataclasses.replace(
        config.segmentation, n_clusters=config.segmentation.n_clusters + 1))
    with pytest.raises(StateError, match=r"segmentation\.n_clusters"):
        load_state(tmp_path / "s.bin", other)
    # where records go is no part of the state
    elsewhere = dataclasses.replace(config, kafka=dataclasses.replace(
        config.kafka, bootstrap_servers="elsewhere:9092"))
    loaded = load_state(tmp_path / "s.bin", elsewhere)
    assert loaded.config is elsewhere and loaded.stats == pipeline.stats
    (tmp_path / "junk.bin").write_bytes(b"hello\n")
    with pytest.raises(StateError, match="not a persona-stream state"):
        load_state(tmp_path / "junk.bin", config)


def test_dry_run_report_counts_what_would_change(tmp_path: Path, stream: list[bytes]) -> None:
    source = write_lines(tmp_path / "s.jsonl", stream)
    config = load()
    summary = run_files(config, [str(source)], tmp_path / "now")
    result = run_replay(config, ReplayRequest(files=[str(source)], dry_run=True,
                                              personas_from=str(tmp_path / "now"),
                                              forget_requests=False))
    report = result.report
    assert report is not None
    assert f"segment changes: {summary['segment_changes']:,}" in report
    assert f"identity merges: {summary['identity_merges']:,}" in report
    assert f"dead letters: {summary['events_invalid']:,}" in report
    assert "not_json" in report and f"(current: {tmp_path / 'now'})" in report


def test_cli_exit_130_on_interrupt(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*_: Any, **__: Any) -> None:
        raise StreamInterrupted(42, "2026-01-05T10:00:00.000Z")

    monkeypatch.setattr("workers.replay.run_replay", interrupted)
    assert cli.main(["replay", "--files", "x.jsonl", "--dry-run"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "42 events" in err[0] and "2026-01-05T10:00:00.000Z" in err[0]


def test_refuses_live_topics_without_the_flag() -> None:
    base = load()
    config = dataclasses.replace(base, kafka=dataclasses.replace(
        base.kafka, segment_changes_topic="prod.segment-changes"))
    with pytest.raises(UsageError, match=r"live topic prod\.segment-changes"):
        run_replay(config, ReplayRequest(files=["-"], to_topic="prod"))
    done = run_cli("replay", "--files", "x.jsonl", "--to-topic", "prod",
                   env={"PERSONA_STREAM_KAFKA__DLQ_TOPIC": "prod.dlq"})
    assert done.returncode == 2
    assert done.stderr.decode().strip().count("\n") == 0
    assert b"--allow-live-topics" in done.stderr


@pytest.mark.parametrize("bound", ["yesterday", "2026-13-01T00:00:00Z", "offset:-3", "offset:"])
def test_bad_from_is_one_line(bound: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "--topic", "t", "--from", bound, "--dry-run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--from" in lines[0] and "offset:N" in lines[0]


# ---- against the local broker -----------------------------------------------------------


def _config(bootstrap: str, unique_name: Callable[[str], str]) -> Config:
    """Every live topic name unique to the test, so nothing it checks is shared; a warm-up
    the small stream reaches."""
    return fresh_config(unique_name, bootstrap=bootstrap, kafka={"connect_timeout_seconds": 10.0},
                        segmentation={"warmup_profiles": SMALL_WARMUP})


def _produce(bootstrap: str, admin: Any, topic: str, lines: list[bytes]) -> list[float]:
    """To 3 partitions keyed by anonymous_id, each record stamped with the newest event time
    so far (what a producer stamps when it sends events as they happen); returns the stamps."""
    from kafka.admin import NewTopic

    # history stamped months back: without retention.ms -1 the broker's retention check
    # (every 5 min) may delete it in the middle of the test
    admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "-1"})])
    stamps, newest = [], 0.0
    for line in lines:
        newest = max(newest, event_time(line))
        stamps.append(newest)
    produce(topic, [Record(line, identity_key(line, "anonymous_id"), int(stamp * 1000))
                    for line, stamp in zip(lines, stamps, strict=True)], bootstrap)
    return stamps


def _end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t))]
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _window(stamps: list[float]) -> tuple[str, str, float, float]:
    start = math.floor(stamps[0] / DAY) * DAY + 0.5 * DAY
    stop = start + 1.5 * DAY
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    from datetime import UTC, datetime

    return (datetime.fromtimestamp(start, UTC).strftime(fmt),
            datetime.fromtimestamp(stop, UTC).strftime(fmt), start, stop)


@pytest.mark.integration
def test_topic_window_equals_run_over_the_same_events(
        tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str], admin: Any,
        stream: list[bytes]) -> None:
    config = _config(kafka_bootstrap, unique_name)
    topic = unique_name("history")
    stamps = _produce(kafka_bootstrap, admin, topic, stream)
    since, until, start, stop = _window(stamps)
    inside = [line for line, ts in zip(stream, stamps, strict=True) if start <= ts < stop]
    assert 0 < len(inside) < len(stream)
    run_files(config, [str(write_lines(tmp_path / "in.jsonl", inside))], tmp_path / "run")

    outs = []
    for n in range(2):  # two replays of the same window: identical, byte for byte
        out = tmp_path / f"replay{n}"
        result = run_replay(config, ReplayRequest(topic=topic, start=since, stop=until,
                                                  out=str(out)), clock=fixed_clock)
        assert result.summary["events_replayed"] == len(inside)
        outs.append(out)
    for name in (*OUTPUTS, *FINAL):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name

    for name in ("segment_changes.jsonl", "identity_merges.jsonl"):
        assert records(outs[0], name) == records(tmp_path / "run", name), name
    for name in FINAL:
        assert (outs[0] / name).read_bytes() == (tmp_path / "run" / name).read_bytes()
    # dead letters leave in partition order, not file order, and carry where they came from
    dead = records(outs[0], "dead_letters.jsonl")
    assert dead and all(d["topic"] == topic and d["offset"] >= 0 for d in dead)
    origin = ("emitted_at", "topic", "partition", "offset")
    key = orjson.dumps
    assert (sorted(records(outs[0], "dead_letters.jsonl", origin), key=key)
            == sorted(records(tmp_path / "run", "dead_letters.jsonl"), key=key))

    # offset bounds: offset:0 to the end is the whole topic
    whole = run_replay(config, ReplayRequest(topic=topic, start="offset:0", dry_run=True))
    assert whole.summary["events_replayed"] == len(stream)


@pytest.mark.integration
def test_a_record_that_will_be_refused_does_not_hold_its_partition_back(
        tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str], admin: Any,
        stream: list[bytes]) -> None:
    """An oversized record dated a day ahead, early in one partition: merged by its date,
    it would hold that partition's later events back until every other partition had
    passed them, and they would come out of order. Merged as a dead letter, it does not."""
    config = _config(kafka_bootstrap, unique_name)
    newest = max(event_time(line) for line in stream)
    ahead = orjson.dumps({"event_id": "oversized", "occurred_at": format_time(newest + 86400),
                          "type": "page_view", "identity": {"anonymous_id": "x"},
                          "properties": {"blob": "x" * 70_000}})
    with_it, without = unique_name("with"), unique_name("without")
    _produce(kafka_bootstrap, admin, without, stream)
    _produce(kafka_bootstrap, admin, with_it, [stream[0], ahead, *stream[1:]])
    outs = {}
    for topic in (with_it, without):
        outs[topic] = tmp_path / topic
        run_replay(config, ReplayRequest(topic=topic, out=str(outs[topic])), clock=fixed_clock)
    for name in ("segment_changes.jsonl", "identity_merges.jsonl"):
        assert records(outs[with_it], name) == records(outs[without], name), name
    assert len(records(outs[with_it], "dead_letters.jsonl")) == len(
        records(outs[without], "dead_letters.jsonl")) + 1


@pytest.mark.integration
def test_dry_run_produces_nothing(tmp_path: Path, kafka_bootstrap: str,
                                  unique_name: Callable[[str], str], admin: Any,
                                  stream: list[bytes]) -> None:
    config = _config(kafka_bootstrap, unique_name)
    topic = unique_name("history")
    _produce(kafka_bootstrap, admin, topic, stream)
    run_id = topic.rsplit("-", 1)[1]

    def watched() -> dict[tuple[str, int], int]:
        # every topic name the replay knows carries this test's run id; the broker's other
        # topics may be written by other tests running at the same time
        names = [t for t in admin.list_topics() if run_id in t]
        return _end_offsets(kafka_bootstrap, names)

    before = watched()
    result = run_replay(config, ReplayRequest(topic=topic, dry_run=True))
    assert result.summary["events_replayed"] == len(stream)
    assert result.report is not None and "nothing was emitted" in result.report
    assert watched() == before


@pytest.mark.integration
def test_replay_to_a_new_prefix_leaves_live_group_offsets_alone(
        tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str], admin: Any,
        stream: list[bytes]) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    config = _config(kafka_bootstrap, unique_name)
    topic, group = unique_name("history"), unique_name("live-group")
    _produce(kafka_bootstrap, admin, topic, stream)
    live = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                         enable_auto_commit=False)
    live.commit({TopicPartition(topic, p): OffsetAndMetadata(10 + p, "", -1) for p in range(3)})
    live.close()
    committed = admin.list_group_offsets(group)[group]
    assert len(committed) == 3

    prefix = unique_name("backfill")
    result = run_replay(config, ReplayRequest(topic=topic, to_topic=prefix))
    assert admin.list_group_offsets(group)[group] == committed
    names = ("segment-changes", "identity-merges", "dlq", "segment-lineage")
    produced = _end_offsets(kafka_bootstrap, [f"{prefix}.{name}" for name in names])
    totals = {name: sum(v for (t, _), v in produced.items() if t == f"{prefix}.{name}")
              for name in names}
    s = result.summary
    assert {k: totals[k] for k in names[:3]} == {
        "segment-changes": s["segment_changes"], "identity-merges": s["identity_merges"],
        "dlq": s["events_invalid"]}
    assert s["segment_changes"] > 0
    assert totals["segment-lineage"] >= s["segments"] > 0  # every segment's birth at least


@pytest.mark.integration
def test_missing_topic_is_one_line(kafka_bootstrap: str,
                                   unique_name: Callable[[str], str]) -> None:
    config = _config(kafka_bootstrap, unique_name)
    with pytest.raises(BrokerError, match="does not exist"):
        run_replay(config, ReplayRequest(topic=unique_name("nope"), dry_run=True))


def test_the_removed_initial_state_flag_says_what_to_do_instead(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deployments scripted with ``worker --initial-state`` get one line, before any broker
    is contacted: a whole pipeline's state has no place in the partitioned design."""
    assert cli.main(["worker", "--initial-state", str(tmp_path / "jan.state")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--initial-state was removed" in err[0], err
    assert "produce it to the input topic" in err[0]


def test_replay_serves_its_progress_as_a_metric(tmp_path: Path, stream: list[bytes]) -> None:
    from workers.replay import ReplayRequest, run_replay

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(stream[:800]) + b"\n")
    port = free_port()
    result = run_replay(load(), ReplayRequest(files=[str(source)], out=str(tmp_path / "o"),
                                              metrics_port=port, forget_requests=False))
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    text = body.decode()
    assert status == 200
    assert "persona_stream_replay_progress_ratio 1.0" in text
    valid = result.summary["events_valid"]
    assert f'persona_stream_events_total{{outcome="valid"}} {float(valid)}' in text
