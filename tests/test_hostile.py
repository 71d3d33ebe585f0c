"""The hostile corpus (workers/simulation/hostile.py) through ``persona-stream run``.

Mixed into an ordinary stream, every hostile record ends valid, duplicate or as a
dead letter with a reason; the run neither crashes nor hangs nor grows without
bound, and the segment changes and merges are those of the stream without them.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.core.touchpoints import IntakeLimits, TouchpointParser
from workers.errors import InvalidEvent
from workers.io.drive import run_files
from workers.simulation.generator import simulate
from workers.simulation.hostile import hostile_records

RUN_SECONDS = 180  # the stream alone takes a few seconds; a hang fails here, not in CI's limit
# the CLI in a child that reports its own peak memory (KiB) as its last line: VmHWM, not
# ru_maxrss, which a child inherits from the (large) test process it was forked from
_MEASURED = ("import re, sys\nfrom workers.cli import main\nrc = main(sys.argv[1:])\n"
             "status = open('/proc/self/status').read()\n"
             "print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1), file=sys.stderr)\n"
             "sys.exit(rc)")


def run(tmp: Path, name: str, lines: list[bytes]) -> tuple[dict[str, Any], Path]:
    source = tmp / f"{name}.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp / name
    done = subprocess.run([sys.executable, "-c", _MEASURED, "run", str(source), "--out",
                           str(out), "--quiet"], capture_output=True, text=True,
                          timeout=RUN_SECONDS, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    summary["max_rss_kib"] = int(done.stderr.split()[-1])
    return summary, out


def records(folder: Path, name: str) -> list[dict[str, Any]]:
    rows = [orjson.loads(line) for line in (folder / name).read_bytes().splitlines()]
    for row in rows:
        row.pop("emitted_at", None)
    return rows


def kept_as(record: dict[str, Any]) -> str:
    """How a dead letter identifies its record: the hash when cut, else the bytes."""
    if "raw_sha256" in record:
        return record["raw_sha256"]
    raw = (record["raw"].encode() if "raw" in record
           else base64.b64decode(record["raw_base64"]))
    return hashlib.sha256(raw).hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hostile")
    stream = simulate(300, seed=9, days=5)[0]
    corpus: list[bytes] = [r for r in hostile_records(kafka=False) if r is not None]
    mixed = list(stream)
    step = len(stream) // len(corpus)
    for i, record in enumerate(corpus):
        mixed.insert(i * (step + 1), record)
    control, control_out = run(tmp, "control", list(stream))
    hostile, hostile_out = run(tmp, "hostile", mixed)
    return {"corpus": corpus, "control": control, "control_out": control_out,
            "hostile": hostile, "hostile_out": hostile_out}


def test_the_corpus_is_big_and_distinct() -> None:
    corpus = hostile_records(kafka=False)
    assert len(set(corpus)) >= 200


def test_every_record_has_an_outcome(runs: dict[str, Any]) -> None:
    s, c, corpus = runs["hostile"], runs["control"], runs["corpus"]
    assert s["events_read"] == c["events_read"] + len(corpus)
    assert s["events_read"] == s["events_valid"] + s["events_invalid"] + s["events_duplicate"]
    dead = records(runs["hostile_out"], "dead_letters.jsonl")
    assert len(dead) == s["events_invalid"]
    assert all(d["error"] and d["detail"] for d in dead)
    # every hostile record the intake refuses is among the dead letters, with its bytes
    # (or, when cut, its hash)
    parser = TouchpointParser(IntakeLimits.from_config(load()))
    kept = {kept_as(d) for d in dead}
    for record in corpus:
        try:
            parser.parse(record)
        except InvalidEvent:
            assert hashlib.sha256(record).hexdigest() in kept, record[:80]


def test_dead_letters_fit_on_the_topic(runs: dict[str, Any]) -> None:
    lines = (runs["hostile_out"] / "dead_letters.jsonl").read_bytes().splitlines()
    assert max(len(line) for line in lines) < 1_000_000


def test_nothing_else_changes(runs: dict[str, Any]) -> None:
    for name in ("segment_changes.jsonl", "identity_merges.jsonl"):
        assert records(runs["hostile_out"], name) == records(runs["control_out"], name)
    hostile = orjson.loads((runs["hostile_out"] / "personas.json").read_bytes())
    assert hostile == orjson.loads((runs["control_out"] / "personas.json").read_bytes())


def test_memory_stays_bounded(runs: dict[str, Any]) -> None:
    """5 MB of hostile records add little to the run's peak memory (BENCHMARKS.md)."""
    assert runs["hostile"]["max_rss_kib"] < runs["control"]["max_rss_kib"] + 100_000


def test_progress_lines_survive_every_hostile_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each record in turn is the last one a progress line (or Ctrl-C) reports on."""
    monkeypatch.setattr("workers.io.drive._BATCH", 1)
    monkeypatch.setattr("workers.io.progress._LOG_SECONDS", 0.0)
    source = tmp_path / "corpus.jsonl"
    source.write_bytes(b"".join(r + b"\n" for r in hostile_records(kafka=False)))
    summary = run_files(load(), [str(source)], tmp_path / "out", progress="log")
    assert summary["events_read"] == len(hostile_records(kafka=False))
    assert "event time" in capsys.readouterr().err
