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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.config import Config
from workers.core.formats import Format
from workers.core.pipeline import Pipeline
from workers.core.records import output_kinds
from workers.core.touchpoints import parse_time
from workers.errors import UsageError
from workers.io.drive import drive, file_source
from workers.io.folder import read_personas
from workers.io.forget import read_history
from workers.io.kafka import live_topics, prefixed_output_topics
from workers.io.progress import Progress, ProgressMode
from workers.io.sinks import DryRun, FileSink, Sink, TopicSink, wall_clock
from workers.io.sources import Bound, Source, TopicSource
from workers.state.saved import load_state, save_state


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
    format: Format | None = None  # the input format (default: the configuration's)
    assume_sorted: bool = False  # --files are in event-time order already: no sort
    # read kafka.forget_topic and the live forget list before replaying (README
    # "Forgetting a person"); off only with --ignore-forget-requests
    forget_requests: bool = True


@dataclass
class ReplayResult:
    """The summary (as in ``summary.json``) and, for a dry run, the report to print."""

    summary: dict[str, Any]
    report: str | None = None


def run_replay(config: Config, request: ReplayRequest,
               clock: Callable[[], str] = wall_clock) -> ReplayResult:
    """Check the request, open source and target, replay, save the end state."""
    r = request
    start, stop = _check(config, r)
    current = read_personas(r.personas_from) if r.personas_from is not None else None
    pipeline = load_state(r.state_in, config) if r.state_in else Pipeline(config)
    history = read_history(config) if r.forget_requests else None
    listener = _serve_metrics(r.metrics_port, pipeline)
    progress = Progress(r.progress, "replay", listener=listener)
    source: Source
    try:
        if r.topic is not None:
            source = TopicSource(config, r.topic, start, stop, r.format)
        else:
            assert r.files is not None
            source = file_source(config, r.files, r.format, r.assume_sorted, progress)
    except BaseException:
        progress.close()
        raise
    try:
        sink = _open_sink(config, r, clock)
    except BaseException:
        source.close()
        progress.close()
        raise
    if history is not None:
        # before any history: a state that holds a forgotten person loses them here, and
        # no event of theirs is taken from the source
        sink.write(history.apply(pipeline))
    summary = drive(pipeline, source, sink, progress, flush=r.state_out is None,
                    count_as="events_replayed", fmt=r.format)
    if r.state_out is not None:
        save_state(pipeline, r.state_out)
    report = sink.report(current, r.personas_from) if isinstance(sink, DryRun) else None
    return ReplayResult(summary, report)


def _check(config: Config, r: ReplayRequest) -> tuple[Bound | None, Bound | None]:
    """Refuse a request that cannot work, in one line; returns the topic bounds."""
    if (r.topic is None) == (r.files is None):
        raise UsageError("replay needs exactly one source: --topic TOPIC or --files FILE...")
    if r.files is not None and (r.start or r.stop):
        raise UsageError("--from/--to select a range of a --topic; with --files, pass the files")
    if sum((r.out is not None, r.to_topic is not None, r.dry_run)) != 1:
        raise UsageError("replay needs exactly one target: --out DIR, --to-topic PREFIX or"
                         " --dry-run")
    if r.personas_from is not None and not r.dry_run:
        raise UsageError("--personas-from only applies to --dry-run")
    if r.assume_sorted and r.files is None:
        raise UsageError("--assume-sorted applies to --files (a topic is merged by event time)")
    start = None if r.start is None else parse_bound(r.start, "--from")
    stop = None if r.stop is None else parse_bound(r.stop, "--to")
    if (start is not None and stop is not None and start.time is not None
            and stop.time is not None and start.time >= stop.time):
        raise UsageError(f"--from {r.start} is not before --to {r.stop}")
    if r.to_topic is not None:
        targets = prefixed_output_topics(config, r.to_topic).values()
        clash = sorted(set(targets) & live_topics(config))
        if clash and not r.allow_live_topics:
            raise UsageError(f"--to-topic {r.to_topic} would write to the live topic {clash[0]};"
                             " add --allow-live-topics if that is really meant")
    return start, stop


def parse_bound(text: str, flag: str) -> Bound:
    """``--from``/``--to``: an RFC 3339 time or ``offset:N``."""
    if text.startswith("offset:"):
        digits = text[len("offset:"):]
        if digits.isdigit():
            return Bound(offset=int(digits))
    else:
        with contextlib.suppress(ValueError):
            return Bound(time=parse_time(text))
    raise UsageError(f"{flag} {text!r} is neither an RFC 3339 time (e.g. 2026-01-05T00:00:00Z)"
                     " nor offset:N")


def _open_sink(config: Config, r: ReplayRequest, clock: Callable[[], str]) -> Sink | DryRun:
    if r.out is not None:
        return FileSink(r.out, output_kinds(config), clock=clock)
    if r.to_topic is not None:
        return TopicSink(config, r.to_topic, clock=clock)
    return DryRun()


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
