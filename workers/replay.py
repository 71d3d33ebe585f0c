"""``persona-stream replay``: history through the same core, into a fresh target.

A replay reads a topic between two bounds (or JSON-lines files), feeds every
record to a :class:`~workers.core.pipeline.Pipeline` in event-time order and sends
the outputs to an output folder, to a separate set of topics, or nowhere (a
dry run that reports what would change). It never joins a consumer group and
never commits an offset, so live workers do not notice it.

Same input + same starting state = byte-identical output (``emitted_at``
aside): the merge order across partitions depends only on the records, and
the core has no clock.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.core.records import Output, PersonaCard
from workers.core.touchpoints import format_time, parse_time
from workers.errors import Interrupted, UsageError
from workers.io.kafka import live_topics, prefixed_output_topics
from workers.io.progress import Progress, ProgressMode
from workers.io.sinks import DryRun, EndOfRun, FileSink, Sink, TopicSink, wall_clock
from workers.io.sources import Bound, FileSource, Source, TopicSource, event_time
from workers.state.saved import load_state, save_state

_BATCH = 5000  # outputs per sink write: amortises every round trip


class ReplayInterrupted(Interrupted):
    """Ctrl-C: the replay stopped cleanly after ``events`` records."""

    def __init__(self, events: int, last_time: str | None) -> None:
        super().__init__(f"interrupted after {events:,} events (last event time "
                         f"{last_time or 'none'}); outputs up to there were written, "
                         "no state was saved")
        self.events = events
        self.last_time = last_time


# ---- bounds -----------------------------------------------------------------------


def parse_bound(text: str, flag: str) -> Bound:
    if text.startswith("offset:"):
        digits = text[len("offset:"):]
        if digits.isdigit():
            return Bound(offset=int(digits))
    else:
        with contextlib.suppress(ValueError):
            return Bound(time=parse_time(text))
    raise UsageError(f"{flag} {text!r} is neither an RFC 3339 time (e.g. 2026-01-05T00:00:00Z)"
                     " nor offset:N")


# ---- progress ---------------------------------------------------------------------


def _serve_metrics(port: int | None,
                   pipeline: Pipeline) -> Callable[[int, int | None], None] | None:
    """With a port: serve the worker's metrics for this replay; returns the progress hook."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    from workers.service.metrics import Metrics

    metrics = Metrics()
    try:
        start_http_server(port, registry=metrics.registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on port {port}: {exc.strerror}") from None

    def report(events: int, total: int | None) -> None:
        metrics.replay_progress.set(min(1.0, events / total) if total else 0.0)
        metrics.sync(pipeline)

    return report


def _note(last: bytes | None) -> str:
    when = None if last is None else _time_of(last)
    return f"at event time {when or '-'}"


def _time_of(raw: bytes) -> str | None:
    ts = event_time(raw)
    return None if ts == -math.inf else format_time(ts)


# ---- the replay -------------------------------------------------------------------


def replay(pipeline: Pipeline, source: Source, sink: Sink, progress: Progress | None = None,
           flush: bool = True) -> dict[str, Any]:
    """Feed every record of ``source`` to ``pipeline``; outputs go to ``sink`` in batches.

    ``flush=False`` leaves events still inside the reorder window (and the open
    tick) in the pipeline, so a saved state continues exactly where this ended.
    """
    feed = pipeline.feed
    pending: list[Output] = []
    events = 0
    last: bytes | None = None
    started = time.perf_counter()
    interrupted = False
    try:
        for raw, origin in source:
            pending.extend(feed(raw, origin))
            events += 1
            last = raw
            if events % _BATCH == 0:
                sink.write(pending)
                pending.clear()
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
    seconds = time.perf_counter() - started
    summary = pipeline.summary()
    summary["events_replayed"] = events
    summary["seconds"] = round(seconds, 3)
    summary["events_per_second"] = round(events / seconds, 1) if seconds else 0.0
    if interrupted:
        summary["interrupted"] = True
    sink.close(EndOfRun(summary, pipeline.personas(), pipeline.profile_snapshots()))
    if interrupted:
        raise ReplayInterrupted(events, None if last is None else _time_of(last))
    return summary


@dataclass(frozen=True)
class ReplayRequest:
    """What ``persona-stream replay`` was asked to do (one source, one target)."""

    topic: str | None = None
    files: list[str] | None = None
    start: str | None = None
    stop: str | None = None
    out: str | None = None
    to_topic: str | None = None
    dry_run: bool = False
    allow_live_topics: bool = False
    state_in: str | None = None
    state_out: str | None = None
    personas_from: str | None = None
    progress: ProgressMode = "off"
    metrics_port: int | None = None  # serve /metrics (progress, counters) while running


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    report: str | None = None


def run_replay(config: Config, request: ReplayRequest,
               clock: Callable[[], str] = wall_clock) -> ReplayResult:
    """Check the request, open source and target, replay, save the end state."""
    r = request
    if (r.topic is None) == (r.files is None):
        raise UsageError("replay needs exactly one source: --topic TOPIC or --files FILE...")
    if r.files is not None and (r.start or r.stop):
        raise UsageError("--from/--to select a range of a --topic; with --files, pass the files")
    if sum((r.out is not None, r.to_topic is not None, r.dry_run)) != 1:
        raise UsageError("replay needs exactly one target: --out DIR, --to-topic PREFIX or"
                         " --dry-run")
    if r.personas_from is not None and not r.dry_run:
        raise UsageError("--personas-from only applies to --dry-run")
    start = None if r.start is None else parse_bound(r.start, "--from")
    stop = None if r.stop is None else parse_bound(r.stop, "--to")
    if (start is not None and stop is not None and start.time is not None
            and stop.time is not None and start.time >= stop.time):
        raise UsageError(f"--from {r.start} is not before --to {r.stop}")
    if r.to_topic is not None:
        clash = sorted(set(prefixed_output_topics(r.to_topic).values()) & live_topics(config))
        if clash and not r.allow_live_topics:
            raise UsageError(f"--to-topic {r.to_topic} would write to the live topic {clash[0]};"
                             " add --allow-live-topics if that is really meant")
    current = _read_personas(r.personas_from) if r.personas_from is not None else None
    pipeline = load_state(r.state_in, config) if r.state_in else Pipeline(config)

    source: Source
    if r.topic is not None:
        source = TopicSource(config, r.topic, start, stop)
    else:
        assert r.files is not None
        source = FileSource(r.files)
    sink: Sink
    try:
        if r.out is not None:
            sink = FileSink(r.out, clock=clock)
        elif r.to_topic is not None:
            sink = TopicSink(config, r.to_topic, clock=clock)
        else:
            sink = DryRun()
    except BaseException:
        source.close()
        raise
    progress = Progress(r.progress, "replay", listener=_serve_metrics(r.metrics_port, pipeline))
    summary = replay(pipeline, source, sink, progress, flush=r.state_out is None)
    if r.state_out is not None:
        save_state(pipeline, r.state_out)
    report = sink.report(current, r.personas_from) if isinstance(sink, DryRun) else None
    return ReplayResult(summary, report)


def _read_personas(folder: str) -> list[PersonaCard]:
    path = Path(folder) / "personas.json"
    try:
        cards: list[PersonaCard] = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise UsageError(f"{path} is not a personas.json written by run or replay") from None
    return cards
