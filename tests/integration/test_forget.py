"""Forgetting a person on the real broker (issue 17, GDPR article 17): a live worker applies
``persona-stream forget``, tells subscribers with ``forget/v1``, a worker restarted from the
changelog keeps the person out when their history is sent again, and a replay of that
history (the person's events twice over) does not bring them back."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from workers.testing import (
    WorkerProcess,
    config_from,
    http_get,
    lines_naming,
    personal_stream,
    pipeline_over,
    produce,
    run_cli,
    segmented_person,
    topic_messages,
    wait_for,
    worker_config,
)

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "forget.v1.schema.json"


def _metric(worker: WorkerProcess, sample: str) -> float:
    page = (worker.get("/metrics") or b"").decode()
    found = [line.split()[-1] for line in page.splitlines() if line.startswith(sample + " ")]
    return float(found[0]) if found else 0.0


@pytest.mark.integration
def test_a_forgotten_person_stays_forgotten_live_restarted_and_replayed(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    lines = personal_stream(200, seed=23)[0]
    config, settings = worker_config(tmp_path, bootstrap=kafka_bootstrap, partitions=1,
                                     commit_interval_seconds=1)
    k = settings["kafka"]
    reference = pipeline_over(lines, config_from(settings))
    pid, ids = segmented_person(reference)
    email = ids["email"][0]
    theirs = lines_naming(ids, lines)
    raw_values = [v for vs in ids.values() for v in vs]

    # ---- a live worker: the stream, then the request
    with WorkerProcess(config, instance_id="forget-live", log_dir=tmp_path) as worker:
        wait_for(lambda: worker.status() is not None, 60, "the worker to serve /status")
        produce(k["input_topic"], lines, kafka_bootstrap)
        wait_for(lambda: (worker.status() or {}).get("caught_up") is True
                 and worker.status()["events_read"] == len(lines)
                 and worker.status()["tasks_caught_up"], 180, "the stream")
        assert worker.admin_get(f"/profile/{pid}")[0] == 200
        asked = run_cli("forget", f"email:{email}", "--reason", "asked by the person",
                        "--config", str(config))
        assert asked.returncode == 0, asked.stderr
        printed = asked.stdout.decode()
        assert printed.count("\n") == 1 and k["forget_topic"] in printed
        assert email not in printed
        wait_for(lambda: (worker.status() or {}).get("profiles_forgotten") == 1, 60,
                 "the owner to apply the request")
        assert worker.admin_get(f"/profile/{pid}")[0] == 404
        assert worker.admin_get(f"/profile/email:{email}")[0] == 404
        assert _metric(worker, "persona_stream_profiles_forgotten_total") == 1
        wait_for(lambda: (worker.status() or {}).get("committed_offset")
                 == worker.status()["next_offset"], 30, "a commit after the forget")

    # subscribers hear of it on the segment-change topic: once, by hashes only
    messages = topic_messages(k["segment_changes_topic"], kafka_bootstrap)
    forgets = [(r, h) for r, h in messages if r.get("schema") == "forget/v1"]
    assert len(forgets) == 1
    record, headers = forgets[0]
    Draft202012Validator(json.loads(SCHEMA.read_text()),
                         format_checker=FormatChecker()).validate(record)
    assert record["profile_id"] == pid and record["previous_segment"] is not None
    assert headers["schema"] == b"forget/v1" and headers["ce_type"] == b"persona-stream.forget.v1"
    assert not [v for v in raw_values if v in orjson.dumps(record).decode()]
    dead_before = len(topic_messages(k["dlq_topic"], kafka_bootstrap))
    changes = [r for r, _ in messages if r.get("schema") == "segment_change/v1"]
    assert [r for r in changes if r["profile_id"] == pid]  # it had been segmented before

    # ---- a worker restarted from the changelog: the person's history sent again is dropped
    with WorkerProcess(config, instance_id="forget-restarted", log_dir=tmp_path) as worker:
        wait_for(lambda: (worker.status() or {}).get("owner") is True, 90, "a new owner")
        assert worker.status()["restored_from"] > 0
        produce(k["input_topic"], theirs, kafka_bootstrap)
        wait_for(lambda: (worker.status() or {}).get("caught_up") is True
                 and worker.status()["events_read"] == len(lines) + len(theirs)
                 and worker.status()["tasks_caught_up"], 120,
                 "the backfill")
        assert worker.status()["events_forgotten"] == len(theirs)
        assert _metric(worker, 'persona_stream_events_total{outcome="forgotten"}') == len(theirs)
        assert worker.admin_get(f"/profile/{pid}")[0] == 404
        for id_type, values in ids.items():
            for value in values:
                status, _ = http_get(f"{worker.admin_url}/profile/{id_type}:{value}"
                                     .replace(" ", "%20"))
                assert status == 404, (id_type, value)
    after = [r for r, _ in topic_messages(k["segment_changes_topic"], kafka_bootstrap)
             if r["profile_id"] == pid]
    assert after[-1]["schema"] == "forget/v1"  # nothing about the person since
    # dropped, not dead-lettered: no dead letter holds the person's records
    assert len(topic_messages(k["dlq_topic"], kafka_bootstrap)) == dead_before

    # ---- a replay of the history, which holds the person's events twice
    out = tmp_path / "replayed"
    replayed = run_cli("replay", "--topic", k["input_topic"], "--out", str(out), "--quiet",
                       "--config", str(config))
    assert replayed.returncode == 0, replayed.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["events_forgotten"] == 2 * len(theirs)
    kept = (out / "profiles.jsonl").read_text() + (out / "segment_changes.jsonl").read_text()
    assert pid not in kept and not [v for v in raw_values if v in kept]
    # the flag that skips the requests is what brings the person back: the default matters
    unsafe = tmp_path / "unsafe"
    ignored = run_cli("replay", "--topic", k["input_topic"], "--out", str(unsafe), "--quiet",
                      "--ignore-forget-requests", "--config", str(config))
    assert ignored.returncode == 0, ignored.stderr
    assert pid in (unsafe / "profiles.jsonl").read_text()

