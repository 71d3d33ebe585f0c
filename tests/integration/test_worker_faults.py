"""The Kafka worker against poison records and faults, on the real broker (issue 13).

Worker processes, as an operator runs them, compared with the in-process core
over the same records: every record has an outcome, the worker stays up, and a
failure while producing never costs an output.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from workers.config import load
from workers.core.partitioned.local import LocalTopology
from workers.io.kafka import provision, worker_topics
from workers.simulation.generator import simulate
from workers.simulation.hostile import hostile_records
from workers.testing import (
    Record,
    WorkerProcess,
    pipeline_over,
    produce,
    run_cli,
    topic_records,
    wait_for,
    worker_config,
    write_config,
)

pytestmark = pytest.mark.integration



def _caught_up(worker: WorkerProcess, records: int) -> bool:
    status = worker.status()
    return bool(status and status["owner"] and status["caught_up"]
                and status["events_read"] == records and status["tasks_caught_up"])


def _ids(topic: str, bootstrap: str) -> set[str]:
    return {r["event_id"] for r in topic_records(topic, bootstrap)}


def test_poison_records_leave_the_worker_up_and_every_output_as_without_them(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    lines = simulate(300, seed=31, days=3)[0]
    corpus = hostile_records(kafka=True)
    mixed: list[bytes | None] = list(lines)
    step = len(lines) // len(corpus)
    for i, record in enumerate(corpus):
        mixed.insert(i * (step + 1) + 7, record)
    # one input partition: the sequenced order is the order produced, as in the reference
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=1, commit_interval_seconds=2)
    k = settings["kafka"]
    # everything is on the topic before the worker starts: no idle flush mid-stream
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as worker:
        wait_for(lambda: worker.status() is not None, 60, "the worker to serve /status")
        produce(k["input_topic"], [Record(r, b"k") for r in mixed[:len(mixed) // 2]],
                kafka_bootstrap)
        # a tombstone and a record that is no card on the personas topic, mid-stream
        produce(k["personas_topic"], [Record(None, b"3"), Record(b"not a card", b"4")],
                kafka_bootstrap)
        produce(k["input_topic"], [Record(r, b"k") for r in mixed[len(mixed) // 2:]],
                kafka_bootstrap)
        wait_for(lambda: _caught_up(worker, len(mixed)), 240, "every record to be processed")
        assert worker.proc.poll() is None  # still up
        # the cards of a model version, added up from the partitions' reports
        wait_for(lambda: (worker.status() or {}).get("model_version", 0) > 0, 60,
                 "the worker to follow a model version")
    s = pipeline_over(mixed, load(config)).stats
    assert s.events_read == s.events_valid + s.events_invalid + s.events_duplicate
    dead = topic_records(k["dlq_topic"], kafka_bootstrap)
    assert len(dead) == s.events_invalid
    assert all(d["error"] and d["detail"] for d in dead)
    assert sum(1 for d in dead if d["error"] == "empty") == 2  # the null value and b""
    # the worker's segment changes and merges are those of the stream alone
    for kind, topic in (("segment_change", k["segment_changes_topic"]),
                        ("identity_merge", k["identity_merges_topic"])):
        assert _ids(topic, kafka_bootstrap) == _ids_of(lines, kind, config)


def _ids_of(lines: list[bytes], kind: str, config: Path) -> set[str]:
    """Output ids of the same stages in this process over ``lines`` (one input partition)
    under the workers' ``config``."""
    stages = LocalTopology(load(config), 1)
    stages.feed_many(lines)
    return {str(o.record["event_id"]) for o in stages.flush() if o.kind == kind}


def _topic_setting(bootstrap: str, topic: str, key: str, value: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={key: value})])
    finally:
        admin.close()


def test_a_produce_failure_then_a_restart_loses_nothing(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    """segment-changes refuses every record for a while (its size limit made tiny): the
    owner stops naming the topic, with no checkpoint past the failed batch; restarted
    once the topic takes records again, it emits every change one pass would."""
    lines = simulate(300, seed=32, days=3)[0]
    # one input partition: the sequenced order is the order produced, as in the reference
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=1, commit_interval_seconds=2)
    k = settings["kafka"]
    provision(load(config), worker_topics(load(config)))
    _topic_setting(kafka_bootstrap, k["segment_changes_topic"], "max.message.bytes", "64")
    produce(k["input_topic"], [Record(line) for line in lines], kafka_bootstrap)
    first = WorkerProcess(config, instance_id="solo", log_dir=tmp_path)
    try:
        wait_for(lambda: first.proc.poll() is not None, 180, "the owner to stop")
    finally:
        first.stop()
    log = next(tmp_path.glob("worker-solo-*.log")).read_text()
    assert f"producing to {k['segment_changes_topic']} failed" in log
    _topic_setting(kafka_bootstrap, k["segment_changes_topic"], "max.message.bytes",
                   "1048588")
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as second:
        wait_for(lambda: _caught_up(second, len(lines)), 240, "the restart to catch up")
    assert _ids(k["segment_changes_topic"], kafka_bootstrap) == _ids_of(
        lines, "segment_change", config)


def test_a_restart_under_settings_its_state_was_not_made_with_stops_in_one_line(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    """A setting that shapes the state changed between two runs on the same changelogs:
    the role taking them refuses the state, and the worker stops with exit 1 and one line
    naming the setting. It used to go on holding the partitions, dropping every record."""
    lines = simulate(120, seed=33, days=1)[0]
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=2, commit_interval_seconds=1)
    produce(settings["kafka"]["input_topic"], [Record(line) for line in lines],
            kafka_bootstrap)
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as first:
        wait_for(lambda: _caught_up(first, len(lines))
                 and (first.status() or {}).get("commits", 0) >= 1, 120,
                 "a commit of the whole stream")
    settings["segmentation"] = {**settings.get("segmentation", {}), "n_clusters": 7}
    changed = write_config(tmp_path / "changed.yaml", settings)
    (tmp_path / "second").mkdir()
    second = WorkerProcess(changed, instance_id="solo", log_dir=tmp_path / "second")
    try:
        wait_for(lambda: second.proc.poll() is not None, 120, "the worker to stop")
    finally:
        second.stop()
    assert second.proc.returncode == 1
    log = next((tmp_path / "second").glob("worker-solo-*.log")).read_text()
    refused = [line for line in log.splitlines() if "different configuration" in line]
    assert refused and "segmentation.n_clusters: 5 in the state, 7 now" in refused[0]
    assert "Traceback" not in log
    assert "persona-stream worker: error: " in log  # the CLI's one line, on stderr


@pytest.mark.parametrize(("host", "says"), [
    ("127.0.0.1", "is in use on 127.0.0.1"),
    ("192.0.2.1", "metrics.host 192.0.2.1 is not an address of this machine"),
])
def test_a_metrics_address_that_cannot_be_served_is_one_line(host: str, says: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("worker", env={"PERSONA_STREAM_METRICS__HOST": host,
                                      "PERSONA_STREAM_METRICS__PORT": str(port)})
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2
    assert len(err) == 1 and says in err[0], err


def test_an_output_topic_deleted_under_the_worker_comes_back_with_its_partitions(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> None:
    lines = simulate(300, seed=33, days=3)[0]
    config, settings = worker_config(tmp_path, unique_name, bootstrap=kafka_bootstrap,
                                     partitions=4, commit_interval_seconds=2)
    k = settings["kafka"]
    half = len(lines) // 2
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as worker:
        wait_for(lambda: worker.status() is not None, 60, "the worker to serve /status")
        produce(k["input_topic"], [Record(line) for line in lines[:half]], kafka_bootstrap)
        wait_for(lambda: (worker.status() or {}).get("events_read") == half, 120,
                 "the first half to be processed")
        time.sleep(6)  # the broker probe has seen the output topics as they are
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics([k["segment_changes_topic"]])
            produce(k["input_topic"], [Record(line) for line in lines[half:]],
                    kafka_bootstrap)
            wait_for(lambda: _caught_up(worker, len(lines)), 120, "the rest to be processed")

            def partitions() -> int:
                found = admin.describe_topics([k["segment_changes_topic"]])
                return 0 if found[0].get("error_code") else len(found[0]["partitions"])

            wait_for(lambda: partitions() == 4, 30, "the topic's four partitions")
        finally:
            admin.close()
        assert worker.proc.poll() is None
    log = next(tmp_path.glob("worker-solo-*.log")).read_text()
    assert "an output topic was missing or lost partitions" in log
