"""The one loop outside the worker: source -> pipeline -> sink, for ``run`` and ``replay``.

Outputs reach the sink in batches (one write per few thousand events, one
``emitted_at`` reading per batch); the progress display hears of each batch.
Ctrl-C stops the loop cleanly: what was fed so far goes to the sink, end
state included, and :class:`StreamInterrupted` says how far it got.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workers.config import Config
from workers.core.formats import Format
from workers.core.pipeline import Pipeline
from workers.core.records import Output, output_kinds
from workers.core.touchpoints import format_time
from workers.errors import Interrupted
from workers.io.progress import Progress, ProgressMode
from workers.io.sinks import EndOfRun, FileSink, Sink
from workers.io.sources import FileSource, Source, ValidTime, event_time

_BATCH = 5000  # events per sink write: amortises the file or producer round trip
# ...and at most this much input per write: a dead letter carries its record (up to
# output.dead_letter_raw_bytes), so a run of large bad records cannot pile up in memory
_BATCH_BYTES = 16 * 1_048_576


class StreamInterrupted(Interrupted):
    """Ctrl-C: the loop stopped cleanly after ``events`` records."""

    def __init__(self, events: int, last_time: str | None) -> None:
        super().__init__(f"interrupted after {events:,} events (last event time "
                         f"{last_time or 'none'}); outputs up to there were written, "
                         "no state was saved")
        self.events = events
        self.last_time = last_time


def drive(pipeline: Pipeline, source: Source, sink: Sink, progress: Progress | None = None,
          *, flush: bool = True, count_as: str | None = None,
          fmt: Format | None = None) -> dict[str, Any]:
    """Feed every record of ``source`` to ``pipeline``; outputs go to ``sink`` in batches.

    ``flush=False`` leaves events still inside the reorder window (and the open
    tick) in the pipeline, so a saved state continues exactly where this ended.
    ``count_as`` names the summary field for the events fed here (a pipeline
    restored from a saved state counted earlier ones in ``events_read``).
    ``fmt`` is the input format of every record (default: the configuration's).
    Returns the summary, which the sink also got.
    """
    feed = pipeline.feed
    pending: list[Output] = []
    events = held = 0
    last: bytes | None = None
    started = time.perf_counter()
    interrupted = False
    try:
        if progress is not None:
            progress.update(0, source.estimate(0))
        for raw, origin in source:
            pending.extend(feed(raw, origin, fmt))
            events += 1
            held += len(raw)
            last = raw
            if events % _BATCH == 0 or held > _BATCH_BYTES:
                sink.write(pending)
                pending.clear()
                held = 0
                if progress is not None:
                    progress.update(events, source.estimate(events), _note(last))
        if flush:
            pending.extend(pipeline.flush())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        source.close()
        if progress is not None:
            progress.update(events, source.estimate(events), _note(last))
            progress.close()
    sink.write(pending)
    summary = _summary(pipeline, events, time.perf_counter() - started, count_as, interrupted)
    sink.close(EndOfRun(summary, pipeline.personas(), pipeline.profile_snapshots()))
    if interrupted:
        raise StreamInterrupted(events, None if last is None else _time_of(last))
    return summary


def _summary(pipeline: Pipeline, events: int, seconds: float, count_as: str | None,
             interrupted: bool) -> dict[str, Any]:
    summary = pipeline.summary()
    if count_as is not None:
        summary[count_as] = events
    summary["seconds"] = round(seconds, 3)
    summary["events_per_second"] = round(events / seconds, 1) if seconds else 0.0
    if interrupted:
        summary["interrupted"] = True
    return summary


def _note(last: bytes | None) -> str:
    when = None if last is None else _time_of(last)
    return f"at event time {when or '-'}"


def _time_of(raw: bytes) -> str | None:
    """The record's event time for a progress line; None when it has none a person can
    read (missing, or outside the years 1..9999: the record is a dead letter anyway)."""
    ts = event_time(raw)
    return format_time(ts) if _FIRST_YEAR <= ts < _AFTER_YEAR_9999 else None


_FIRST_YEAR = -62135596800.0  # 0001-01-01T00:00:00Z
_AFTER_YEAR_9999 = 253402300800.0  # 10000-01-01T00:00:00Z


def run_files(config: Config, inputs: list[str], out_dir: str | Path,
              progress: ProgressMode = "off", fmt: Format | None = None,
              assume_sorted: bool = False, start: Pipeline | None = None) -> dict[str, Any]:
    """``persona-stream run``: ``inputs`` in event-time order (as given with
    ``assume_sorted``) through a fresh pipeline, or ``start`` (a saved state: its forget
    list applies too), into ``out_dir``."""
    display = Progress(progress, "run")
    pipeline = start if start is not None else Pipeline(config)
    return drive(pipeline, file_source(config, inputs, fmt, assume_sorted, display),
                 FileSink(out_dir, output_kinds(config)), display, fmt=fmt)


def file_source(config: Config, paths: list[str], fmt: Format | None, assume_sorted: bool,
                progress: Progress) -> FileSource:
    """Files sorted by the time each record will be processed at, unless they are known
    to be in order already."""
    return FileSource(paths, None if assume_sorted else ValidTime(config, fmt), progress.say)
