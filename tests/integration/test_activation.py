"""Activation on the real broker: replay's topics carry CloudEvents headers and the
audience calls, and the example subscriber turns them into the CSV files an ESP takes."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.io.cloudevents import source
from workers.replay import ReplayRequest, run_replay
from workers.simulation.generator import simulate
from workers.testing import cloudevents_problems, fresh_config, pipeline_over, topic_messages

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "audience_csv.py"


def _config(bootstrap: str, unique_name: Callable[[str], str]) -> Config:
    return fresh_config(unique_name, bootstrap=bootstrap, kafka={"partitions": 3},
                        segmentation={"warmup_profiles": 80},
                        audiences={"enabled": True, "keys": {"1": "first_pick"}})


def _replay(config: Config, lines: list[bytes], path: Path, prefix: str,
            state_in: Path | None = None, state_out: Path | None = None) -> None:
    """``replay --files PATH --to-topic PREFIX``; without ``state_out`` it flushes at the
    end, so everything is on the topics."""
    path.write_bytes(b"\n".join(lines) + b"\n")
    run_replay(config, ReplayRequest(files=[str(path)], to_topic=prefix,
                                     state_in=None if state_in is None else str(state_in),
                                     state_out=None if state_out is None else str(state_out)))


def test_every_replayed_topic_carries_cloudevents_headers(
        tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    config = _config(kafka_bootstrap, unique_name)
    lines = [*simulate(150, seed=4, days=2)[0], b"not json"]
    prefix = unique_name("headers")
    _replay(config, lines, tmp_path / "in.jsonl", prefix)
    kinds = {"segment_change": "segment-changes", "identity_merge": "identity-merges",
             "dead_letter": "dlq", "audience": "audiences"}
    for kind, suffix in kinds.items():
        messages = topic_messages(f"{prefix}.{suffix}", kafka_bootstrap, idle_ms=2000)
        assert messages, suffix
        for record, headers in messages:
            assert cloudevents_problems(kind, record, headers, source(config)) == []


def _run_example(bootstrap: str, prefix: str, out: Path, group: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--bootstrap", bootstrap, "--out", str(out),
         "--audiences-topic", f"{prefix}.audiences",
         "--merges-topic", f"{prefix}.identity-merges",
         "--changes-topic", f"{prefix}.segment-changes", "--group", group,
         "--idle-seconds", "3"],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def _expected(pipeline: Pipeline) -> dict[str, set[str]]:
    """Each audience's people, from the pipeline's end state: its userId, else its
    profile id (the anonymousId of its calls)."""
    keys = pipeline.audience_keys.resolved(pipeline.config.audiences.chosen)
    out: dict[str, set[str]] = {key: set() for key in keys.values()}
    for snapshot in pipeline.profile_snapshots():
        if snapshot["segment"] is not None:
            users = snapshot["identifiers"].get("user_id")
            out[keys[snapshot["segment"]["id"]]].add(users[0] if users
                                                      else snapshot["profile_id"])
    return out


def _files(out: Path) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for path in sorted(out.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == ["email", "user_id", "anonymous_id"]
            found[path.stem] = list(reader)
    return found


def test_example_subscriber_keeps_membership_as_esp_csv_files(
        tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """Two batches of history, the subscriber run after each (resuming from its state and
    committed offsets): its files hold exactly the end state's audience membership."""
    config = _config(kafka_bootstrap, unique_name)
    lines = simulate(400, seed=9, days=6)[0]
    half = len(lines) // 2
    prefix, group, out = unique_name("activation"), unique_name("csv"), tmp_path / "csv"
    state = tmp_path / "first.state"
    _replay(config, lines[:half], tmp_path / "first.jsonl", prefix, state_out=state)
    _run_example(kafka_bootstrap, prefix, out, group)
    assert _files(out), "no audience after the first half"
    _replay(config, lines[half:], tmp_path / "second.jsonl", prefix, state_in=state)
    _run_example(kafka_bootstrap, prefix, out, group)

    end = pipeline_over(lines, config)  # one pass gives what the two replays gave
    expected = _expected(end)
    files = _files(out)
    assert set(files) == set(expected)
    assert "first_pick" in files  # the marketer's key for segment 1
    emails = {s["profile_id"]: s["identifiers"].get("email", [])
              for s in end.profile_snapshots()}
    for key, rows in files.items():
        people = {row["user_id"] or row["anonymous_id"] for row in rows}
        assert people == expected[key], key
        for row in rows:
            if row["anonymous_id"]:
                assert row["email"] in [*emails[row["anonymous_id"]], ""]
    assert sum(len(rows) for rows in files.values()) > 50
