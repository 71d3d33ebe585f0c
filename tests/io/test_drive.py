"""The one loop of run and replay: batches, the end state, and Ctrl-C."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from workers import cli
from workers.core.pipeline import Pipeline
from workers.core.records import Origin, Output, ProfileSnapshot
from workers.core.touchpoints import format_time
from workers.io.drive import StreamInterrupted, drive
from workers.io.sinks import EndOfRun
from workers.io.sources import FileSource, event_time
from workers.simulation.generator import simulate
from workers.testing import small_stream_config

STOP = 1000  # where the tests press Ctrl-C


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    lines, _, _ = simulate(300, seed=21, days=3)
    return lines


@dataclass
class ListSource:
    """Records from memory; ``stop_at`` presses Ctrl-C before that record."""

    records: list[bytes]
    stop_at: int | None = None
    closed: bool = False

    def __iter__(self) -> Iterator[tuple[bytes, Origin | None]]:
        for n, raw in enumerate(self.records):
            if n == self.stop_at:
                raise KeyboardInterrupt
            yield raw, None

    def estimate(self, events: int) -> int | None:
        return len(self.records)

    def close(self) -> None:
        self.closed = True


@dataclass
class ListSink:
    """Keeps every batch and the end state."""

    batches: list[list[Output]] = field(default_factory=list)
    end: EndOfRun | None = None
    profiles: list[ProfileSnapshot] = field(default_factory=list)

    def write(self, outputs: list[Output]) -> None:
        self.batches.append(list(outputs))

    def close(self, end: EndOfRun) -> None:
        self.end = end
        self.profiles = list(end.profiles)

    @property
    def outputs(self) -> list[Output]:
        return [out for batch in self.batches for out in batch]


def fed_directly(lines: list[bytes], flush: bool = True) -> tuple[Pipeline, list[Output]]:
    pipeline = Pipeline(small_stream_config())
    outputs = [out for raw in lines for out in pipeline.feed(raw)]
    return pipeline, outputs + (pipeline.flush() if flush else [])


def test_batches_hold_every_output_once_in_order(stream: list[bytes],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.io.drive._BATCH", 700)
    source, sink = ListSource(stream), ListSink()
    summary = drive(Pipeline(small_stream_config()), source, sink)
    reference, expected = fed_directly(stream)
    assert sink.outputs == expected
    assert len(sink.batches) == len(stream) // 700 + 1
    assert sink.end is not None and sink.end.summary == summary
    assert sink.profiles == list(reference.profile_snapshots())
    assert sink.end.personas == reference.personas() != []
    assert source.closed


def test_without_flush_held_events_stay_in_the_pipeline(stream: list[bytes]) -> None:
    pipeline, sink = Pipeline(small_stream_config()), ListSink()
    drive(pipeline, ListSource(stream), sink, flush=False)
    _, expected = fed_directly(stream, flush=False)
    assert sink.outputs == expected
    assert pipeline.held > 0  # a saved state continues with them


def test_ctrl_c_keeps_what_was_fed_and_says_how_far(stream: list[bytes]) -> None:
    source, sink = ListSource(stream, stop_at=STOP), ListSink()
    with pytest.raises(StreamInterrupted) as caught:
        drive(Pipeline(small_stream_config()), source, sink)
    reference, expected = fed_directly(stream[:STOP], flush=False)
    assert sink.outputs == expected  # fed so far, not flushed: nothing made up
    assert sink.end is not None and sink.end.summary["interrupted"] is True
    assert sink.end.summary["events_read"] == STOP
    assert sink.profiles == list(reference.profile_snapshots())
    assert source.closed
    last_time = format_time(event_time(stream[STOP - 1]))
    assert (caught.value.events, caught.value.last_time) == (STOP, last_time)
    assert f"{STOP:,} events" in str(caught.value) and last_time in str(caught.value)


def test_run_interrupted_leaves_a_folder_the_other_commands_read(
        tmp_path: Path, stream: list[bytes], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    class CtrlC(FileSource):
        def __iter__(self) -> Iterator[tuple[bytes, Origin | None]]:
            for n, item in enumerate(super().__iter__()):
                if n == STOP:
                    raise KeyboardInterrupt
                yield item

    monkeypatch.setattr("workers.io.drive.FileSource", CtrlC)
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(stream) + b"\n")
    out = tmp_path / "out"
    assert cli.main(["run", str(tmp_path / "in.jsonl"), "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"interrupted after {STOP:,} events" in err[0]
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["interrupted"] is True and summary["events_read"] == STOP
    profiles = (out / "profiles.jsonl").read_bytes().splitlines()
    assert len(profiles) == summary["profiles"] > 0
    key = orjson.loads(profiles[0])["profile_id"]
    assert cli.main(["profile", key, "--from", str(out)]) == 0
    assert cli.main(["personas", "--from", str(out)]) == 0
