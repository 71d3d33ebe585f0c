"""The command line as a user meets it: help, errors in one line, run end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

COMMANDS = ["simulate", "run", "worker", "replay", "personas", "profile"]


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], input=stdin,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert b"usage: persona-stream " + command.encode() in result.stdout


@pytest.mark.parametrize("args", [["run", "x.jsonl", "--out", "o", "--bogus"],
                                  ["simulate", "--seed", "1"],
                                  ["frobnicate"],
                                  ["simulate", "--profiles", "many", "--output", "x"]])
def test_bad_arguments_fail_with_one_line(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]


def test_unreadable_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    result = cli("run", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert result.stderr.decode().strip().count("\n") == 0
    assert b"cannot read" in result.stderr


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("segmentation:\n  n_clusterz: 3\n")
    result = cli("run", "-", "--out", str(tmp_path / "o"), "--config", str(config), stdin=b"")
    assert result.returncode == 2
    assert b"segmentation.n_clusterz" in result.stderr
    assert result.stderr.decode().strip().count("\n") == 0


def test_simulate_run_personas_profile_end_to_end(tmp_path: Path) -> None:
    stream, truth, out = tmp_path / "s.jsonl.gz", tmp_path / "truth.json", tmp_path / "out"
    assert cli("simulate", "--profiles", "800", "--seed", "2", "--output", str(stream),
               "--truth", str(truth)).returncode == 0
    result = cli("run", str(stream), "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {"segment_changes.jsonl", "identity_merges.jsonl", "profiles.jsonl",
             "personas.json", "dead_letters.jsonl", "summary.json"}
    assert names <= {p.name for p in out.iterdir()}
    summary = orjson.loads((out / "summary.json").read_bytes())
    dead = (out / "dead_letters.jsonl").read_bytes().splitlines()
    changes = (out / "segment_changes.jsonl").read_bytes().splitlines()
    merges = (out / "identity_merges.jsonl").read_bytes().splitlines()
    profiles = [orjson.loads(line) for line in (out / "profiles.jsonl").read_bytes().splitlines()]
    assert summary["events_invalid"] == len(dead) > 0
    assert all(orjson.loads(d)["error"] for d in dead)
    assert summary["segment_changes"] == len(changes) > 0
    assert summary["identity_merges"] == len(merges) > 0
    assert summary["profiles"] == len(profiles)
    assert summary["events_read"] == (summary["events_valid"] + summary["events_invalid"]
                                      + summary["events_duplicate"])
    assert sum(p["event_count"] for p in profiles) == summary["events_valid"]

    table = cli("personas", "--from", str(out))
    assert table.returncode == 0
    cards = orjson.loads((out / "personas.json").read_bytes())
    assert len(cards) == summary["segments"] > 0
    for card in cards:
        assert card["name"].encode() in table.stdout

    known = next(p for p in profiles if "email" in p["identifiers"])
    email = known["identifiers"]["email"][0]
    for key in (known["profile_id"], email, f"email:{email}"):
        shown = cli("profile", key, "--from", str(out))
        assert shown.returncode == 0
        assert orjson.loads(shown.stdout)["profile_id"] == known["profile_id"]
    assert cli("profile", "nobody@nowhere", "--from", str(out)).returncode == 2


def test_run_reads_stdin_and_dead_letters_garbage(tmp_path: Path) -> None:
    out = tmp_path / "o"
    good = orjson.dumps({"event_id": "e1", "occurred_at": "2026-01-01T00:00:00Z",
                         "type": "page_view", "identity": {"anonymous_id": "a1"}})
    result = cli("run", "-", "--out", str(out), stdin=good + b"\nnot json\n\xff\xfe\n")
    assert result.returncode == 0
    dead = [orjson.loads(line) for line in (out / "dead_letters.jsonl").read_bytes().splitlines()]
    assert [d["error"] for d in dead] == ["not_json", "not_utf8"]
    assert "raw_base64" in dead[1]
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert (summary["events_valid"], summary["events_invalid"], summary["profiles"]) == (1, 2, 1)


def test_simulate_creates_the_output_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "s.jsonl"
    assert cli("simulate", "--profiles", "5", "--output", str(target)).returncode == 0
    assert target.stat().st_size > 0


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("simulate", "--profiles", "5", "--output", str(blocker / "s.jsonl"))
    assert result.returncode == 1
    assert result.stderr.decode().strip().count("\n") == 0


def test_worker_with_unreachable_broker_fails_in_one_line() -> None:
    import os

    env = dict(os.environ, PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1",
               PERSONA_STREAM_KAFKA__CONNECT_TIMEOUT_SECONDS="2")
    result = subprocess.run([sys.executable, "-m", "workers.cli", "worker"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot reach Kafka at 127.0.0.1:1" in lines[0]
