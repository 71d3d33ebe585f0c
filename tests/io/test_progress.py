"""The progress display: plain lines in a log, nothing when quiet, a gauge either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.config import load
from workers.core.pipeline import Pipeline
from workers.io.drive import drive
from workers.io.progress import Progress
from workers.io.sinks import DryRun
from workers.io.sources import FileSource
from workers.simulation.generator import simulate


@pytest.fixture
def source(tmp_path: Path) -> FileSource:
    lines, _, _ = simulate(200, seed=3, days=2)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return FileSource([str(path)])


def test_without_a_terminal_the_driver_logs_plain_lines(
        source: FileSource, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("workers.io.progress._LOG_SECONDS", 0.0)  # every batch, not every 5 s
    summary = drive(Pipeline(load()), source, DryRun(), Progress("log", "replay"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) > 1 and all(line.startswith("replay: ") and "events/s" in line
                                  for line in lines)
    n = summary["events_read"]
    assert f"{n:,} events of ~{n:,} (100%)" in lines[-1]
    assert ", at event time 20" in lines[-1]


def test_quiet_prints_nothing_but_the_listener_hears_every_update(
        source: FileSource, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("workers.io.progress._LOG_SECONDS", 0.0)
    heard: list[tuple[int, int | None]] = []
    summary = drive(Pipeline(load()), source, DryRun(),
                    Progress("off", "replay", listener=lambda n, total: heard.append((n, total))))
    assert capsys.readouterr().err == ""
    n = summary["events_read"]
    assert heard[0][0] == 0 and heard[-1] == (n, n)
