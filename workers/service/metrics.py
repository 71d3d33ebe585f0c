"""Prometheus metrics of one worker process, driven from the pipeline's ``Stats``.

The pure core only counts (``Stats``); this module turns those counts into
Prometheus counters by *deltas* against the previous snapshot, so the core stays
free of prometheus and a counter never counts the same event twice however
often :meth:`Metrics.observe_batch` runs.

Metrics live in their own :class:`CollectorRegistry`, not the global one, so
several workers started in one test process do not collide; the registry holds
the ``persona_stream_*`` series plus the standard ``process_*`` and
``python_info`` collectors (CPU, memory, open files: what an operator checks
first) and ``persona_stream_build_info``. Each worker process serves its own
``/metrics``; Prometheus scrapes every process and sums (README "Operations").
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, cast, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from workers import __version__
from workers.compiled import MODULES, compiled
from workers.core.identity_stage import IdentityStage
from workers.core.intake import Intake
from workers.core.records import CHANGE_REASONS, IdentityMerge, Output, SegmentChange
from workers.core.stats import Stats
from workers.core.touchpoints import parse_time

__all__ = ["CONTENT_TYPE_LATEST", "Message", "Metrics"]

OUTCOMES = ("valid", "invalid", "duplicate")
Counts = dict[tuple[str, str], int]  # (counter, label) -> count
OWNER = "owner"  # the source of the owner's counts (workers.service.owner)
ROUTER = "router"  # what this worker's router read (workers.service.router)
Hop = Literal["input", "sequenced", "profiles"]  # the hops of an event's path, in order

# Per-event processing time, a 1-2.5-5 series around the 10-100 µs a touchpoint
# costs: 5 µs catches batches of duplicates and dead letters (cheap), 10 ms a
# batch whose average is swamped by a model publish re-assessing every profile.
PROCESSING_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)
# Event-to-emit lag, 5 ms (a live event flushed at once) to 60 s (a minute behind:
# the consumer-lag alert's territory), then 120-600 s: the default reorder window
# (intake.reorder_window_seconds, 300 s) holds events that long on a busy stream.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               120.0, 300.0, 600.0)

# A rebalance's pause: 0.1 s (a state kept, nothing to restore) to 2 min (a restore of
# a large state, or a group waiting out a dead member's session)
REBALANCE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Message(Protocol):
    """What :meth:`Metrics.observe_routed` reads of a consumed record (aiokafka's)."""

    partition: int
    offset: int
    timestamp: int  # milliseconds, as Kafka stores it


class Metrics:
    """Every persona-stream metric of one worker process, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, fds...
        PlatformCollector(registry=r)  # python_info
        build = Gauge("persona_stream_build_info", "Always 1: the running persona-stream's"
                      " version and Python, to tell the versions of a rolling update apart,"
                      " and how many per-event modules run compiled (N/M; 0/M runs pure"
                      " Python, less than half the speed: BENCHMARKS.md, compiled).",
                      ["version", "python", "compiled"],
                      registry=r)
        build.labels(__version__, platform.python_version(),
                      f"{len(compiled())}/{len(MODULES)}").set(1)
        self.events = Counter(
            "persona_stream_events", "Touchpoints read, by final outcome (valid events count "
            "once they leave the event-time buffer, when their outcome is certain).",
            ["outcome"], registry=r)
        self.profiles_forgotten = Counter(
            "persona_stream_profiles_forgotten",
            "Profiles removed by a forget request (GDPR article 17).", registry=r)
        self.invalid = Counter("persona_stream_invalid_events",
                               "Dead-lettered touchpoints by error code.", ["error"], registry=r)
        self.merges = Counter("persona_stream_identity_merges",
                              "Identity merges (profiles joined into one).", registry=r)
        self.merges_refused = Counter(
            "persona_stream_identity_merges_refused",
            "Merges refused because the merged profile would break an identifier limit.",
            ["reason"], registry=r)
        self.blocked = Counter("persona_stream_identifiers_blocked",
                               "Identifiers dropped by the junk-value blocklist.", registry=r)
        self.changes = Counter("persona_stream_segment_changes",
                               "Segment-change records emitted, by reason.", ["reason"],
                               registry=r)
        self.model_updates = Counter("persona_stream_model_updates",
                                     "Model versions published.", registry=r)
        self.traits_dropped = Counter(
            "persona_stream_traits_dropped",
            "Trait keys not kept: past features.max_traits distinct keys of a profile.",
            registry=r)
        self.fields_dropped = Counter(
            "persona_stream_fields_dropped",
            "Optional fields left out of an event because they could not be used, by field.",
            ["field"], registry=r)
        self.values_coerced = Counter(
            "persona_stream_values_coerced",
            "Values made usable (a numeric string, a +0000 offset...), by field.",
            ["field"], registry=r)
        self.beyond_dedup_window = Counter(
            "persona_stream_events_beyond_dedup_window",
            "Valid events more than intake.dedup_window_seconds behind the stream's clock:"
            " checked for duplicates only against their profile's recent event ids.",
            registry=r)
        self.profiles = Gauge("persona_stream_profiles", "Profiles held in memory.", registry=r)
        self.segment_size = Gauge("persona_stream_segment_size", "Profiles per segment id.",
                                  ["segment"], registry=r)
        self.model_version = Gauge("persona_stream_model_version",
                                   "Version of the model snapshot assigning segments (0: none).",
                                   registry=r)
        self.processing = Histogram(
            "persona_stream_event_processing_seconds",
            "Pipeline time per event, averaged over each consumed batch (one observation per "
            "batch).", buckets=PROCESSING_BUCKETS, registry=r)
        self.emit_lag = Histogram(
            "persona_stream_event_to_emit_lag_seconds",
            "Wall-clock emitted_at minus the triggering touchpoint's occurred_at.",
            buckets=LAG_BUCKETS, registry=r)
        hops = Histogram(
            "persona_stream_hop_wait_seconds",
            "Per batch a role read, how long its oldest record had waited since its Kafka"
            " timestamp (the producer's, or the stage before's send), by hop: input (producers"
            " to routers), sequenced (routers to the identity stage), profiles (identity stage"
            " to profile partitions). Where a segment change's latency builds up; across"
            " hosts, their clocks' skew too.", ["hop"], buckets=LAG_BUCKETS, registry=r)
        self.hop_wait = {hop: hops.labels(hop) for hop in get_args(Hop)}
        self.consumer_lag = Gauge("persona_stream_consumer_lag",
                                  "Input messages not yet processed, per assigned partition.",
                                  ["partition"], registry=r)
        self.last_event_time = Gauge(
            "persona_stream_last_event_time_seconds",
            "Kafka timestamp (epoch seconds) of the last processed input message.",
            ["partition"], registry=r)
        self.commits = Counter("persona_stream_state_commits",
                               "Owner commits: changed state and offset in one transaction.",
                               registry=r)
        self.commit_records = Counter("persona_stream_state_commit_records",
                                      "Changelog records written by the owner's commits.",
                                      registry=r)
        self.commit_bytes = Counter("persona_stream_state_commit_bytes",
                                    "Bytes (keys and values) of changelog records written.",
                                    registry=r)
        self.rebalances = Counter(
            "persona_stream_rebalances",
            "Rebalances of a role's consumer group this worker completed (an assignment taken),"
            " by role: a steady rate is a group that does not settle.", ["role"], registry=r)
        self.rebalance_pause = Histogram(
            "persona_stream_rebalance_pause_seconds",
            "From a role's revocation (or its first join) until its next assignment is taken:"
            " how long its partitions were held by nobody here, by role.", ["role"],
            buckets=REBALANCE_BUCKETS, registry=r)
        self.replay_progress = Gauge("persona_stream_replay_progress_ratio",
                                     "Share of a running replay done, 0..1.", registry=r)
        for outcome in OUTCOMES:  # zero series from the start, so rate() has a baseline
            self.events.labels(outcome)
        for reason in CHANGE_REASONS:
            self.changes.labels(reason)
        self._counters: dict[str, Any] = {
            "events": self.events, "invalid": self.invalid, "merges": self.merges,
            "refused": self.merges_refused, "blocked": self.blocked, "changes": self.changes,
            "model_updates": self.model_updates, "traits_dropped": self.traits_dropped,
            "beyond_dedup_window": self.beyond_dedup_window,
            "profiles_forgotten": self.profiles_forgotten,
            "dropped": self.fields_dropped, "coerced": self.values_coerced,
        }
        # per holder of counted state (the owner's, each profile partition's, the
        # trainer's): the counts already exported
        self._exported: dict[str, Counts] = {}
        self._segments: set[str] = set()
        self._next_offset: dict[int, int] = {}
        self._lag_partitions: set[int] = set()

    # ---- driven by the agent -------------------------------------------------

    def observe_hop(self, hop: Hop, batches: Mapping[Any, Sequence[Message]]) -> None:
        """A batch read at ``hop``: per partition, the wait of its oldest record."""
        histogram, now = self.hop_wait[hop], time.time() * 1000.0
        for records in batches.values():
            if records:
                histogram.observe((now - records[0].timestamp) / 1000.0)

    def observe_routed(self, records: Sequence[Message], intake: Intake) -> None:
        """Input records of one partition read by this worker's router with ``intake`` and
        forwarded: the optional fields it dropped or coerced are counted here."""
        self._advance(ROUTER, _read_counts(intake))
        if records:
            last = records[-1]
            self._next_offset[last.partition] = max(self._next_offset.get(last.partition, 0),
                                                    last.offset + 1)
            self.last_event_time.labels(str(last.partition)).set(last.timestamp / 1000.0)

    def observe_batch(self, stage: IdentityStage, count: int, seconds: float,
                      outputs: Iterable[Output]) -> None:
        """After the owner fed ``count`` records and emitted their outputs."""
        if count:
            self.processing.observe(seconds / count)
        self._observe_emitted(outputs)
        self.sync(stage)

    def observe_rebalance(self, role: str, pause: float) -> None:
        """A rebalance of ``role``'s group completed here after ``pause`` seconds."""
        self.rebalances.labels(role).inc()
        self.rebalance_pause.labels(role).observe(pause)

    def observe_commit(self, records: int, written: int) -> None:
        self.commits.inc()
        self.commit_records.inc(records)
        self.commit_bytes.inc(written)

    def start_counting(self, stage: IdentityStage) -> None:
        """A state taken over: its counts so far are other processes' work (or this one's,
        already exported), so this process's counters grow only by what it does next, and
        ``sum()`` over workers stays right after any takeover."""
        self.start_source(OWNER, self._current(stage))
        self.sync(stage)

    def sync(self, stage: IdentityStage) -> None:
        """Counters advance by the growth of ``Stats`` since the last call; gauges are set."""
        self._advance(OWNER, self._current(stage))

    # ---- the other holders of state: profile partitions, the trainer -----------------

    def start_source(self, source: str, counts: Counts) -> None:
        """``source`` (``profiles:<p>``, ``trainer``) taken over with ``counts`` done
        elsewhere: this process counts only what it does next."""
        self._exported[source] = dict(counts)

    def observe_stats(self, source: str, stats: Stats, outputs: Iterable[Output]) -> None:
        """A profile partition's or the trainer's counts, after it emitted ``outputs``."""
        self._observe_emitted(outputs)
        self._advance(source, counts_of(stats))

    def observe_partitions(self, profiles: int, sizes: Mapping[int, int],
                           version: int) -> None:
        """The profile partitions this worker holds: their profiles and segment sizes
        (summed over workers, the population's), and the model version they assign with."""
        self.profiles.set(profiles)
        self._set_segment_sizes(sizes)
        self.model_version.set(version)

    def forget_source(self, source: str) -> None:
        """``source`` handed over: its next holder counts from there."""
        self._exported.pop(source, None)

    def _advance(self, source: str, current: Counts) -> None:
        exported = self._exported.setdefault(source, {})
        for key, value in current.items():
            delta = value - exported.get(key, 0)
            if delta > 0:
                name, label = key
                counter = self._counters[name]
                (counter.labels(label) if label else counter).inc(delta)
                exported[key] = value

    @staticmethod
    def _current(stage: IdentityStage) -> Counts:
        """Every counted quantity of ``stage``, keyed (counter, label)."""
        current = counts_of(stage.stats)
        # a held valid event may still turn out unattributable (then invalid), so it
        # is counted once it leaves the buffer: this keeps the counter monotonic
        current["events", "valid"] -= stage.buffered
        current["beyond_dedup_window", ""] = stage.dedup.beyond_window
        current.update(_read_counts(stage.intake))
        return current

    def _set_segment_sizes(self, sizes: Mapping[int, int]) -> None:
        live = {str(sid) for sid in sizes}
        for stale in self._segments - live:  # retired by a model update
            self.segment_size.remove(stale)
        for sid, size in sizes.items():
            self.segment_size.labels(str(sid)).set(size)
        self._segments = live

    def _observe_emitted(self, outputs: Iterable[Output]) -> None:
        stamps: dict[str, float] = {}  # one emit shares one stamp: parse it once
        for out in outputs:
            if out.kind not in ("segment_change", "identity_merge"):
                continue
            record = cast(SegmentChange | IdentityMerge, out.record)
            if record.get("trigger_event_id") is None:
                continue  # model updates have no triggering touchpoint to measure from
            emitted = record["emitted_at"]
            if emitted not in stamps:
                stamps[emitted] = parse_time(emitted)
            self.emit_lag.observe(max(0.0, stamps[emitted] - parse_time(record["occurred_at"])))

    # ---- driven by timers and rebalances ---------------------------------------

    def next_offset(self, partition: int) -> int | None:
        """The offset after the last one this process handled, if any."""
        return self._next_offset.get(partition)

    def observe_consumer_lag(self, lags: Mapping[int, int]) -> None:
        """Lag per assigned partition; partitions no longer assigned lose their series."""
        for partition in self._lag_partitions - set(lags):
            _drop(self.consumer_lag, partition)
        for partition, lag in lags.items():
            self.consumer_lag.labels(str(partition)).set(max(0, lag))
        self._lag_partitions = set(lags)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Revoked partitions: another worker moves their offsets on from now."""
        for partition in partitions:
            self._next_offset.pop(partition, None)
            self._lag_partitions.discard(partition)
            _drop(self.consumer_lag, partition)
            _drop(self.last_event_time, partition)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _drop(gauge: Gauge, partition: int) -> None:
    with contextlib.suppress(KeyError):  # no series yet for this partition
        gauge.remove(str(partition))


def counts_of(stats: Stats) -> Counts:
    """Every quantity ``stats`` counts, keyed (counter, label)."""
    current: Counts = {
        ("events", "valid"): stats.events_valid,
        ("events", "invalid"): stats.events_invalid,
        ("events", "duplicate"): stats.events_duplicate,
        # naming an identifier of a forgotten person: dropped at intake
        ("events", "forgotten"): stats.events_forgotten,
        ("profiles_forgotten", ""): stats.profiles_forgotten,
        ("merges", ""): stats.identity_merges,
        ("blocked", ""): stats.identifiers_blocked,
        ("model_updates", ""): stats.model_updates,
        ("traits_dropped", ""): stats.traits_dropped,
    }
    for name, counts in (("invalid", stats.invalid_by_error),
                         ("refused", stats.merges_refused),
                         ("changes", stats.changes_by_reason)):
        current.update(((name, label), n) for label, n in counts.items())
    return current


def _read_counts(intake: Intake) -> Counts:
    """The optional fields ``intake`` dropped and the values it coerced, by field."""
    optional = intake.parser.optional
    return {(name, label): n for name, counts in (("dropped", optional.dropped),
                                                  ("coerced", optional.coerced))
            for label, n in counts.items()}
