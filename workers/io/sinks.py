"""Where output records go: an output folder (the files of docs/contracts.md
section 2), a set of topics, or nowhere (a dry run).

A sink gets the outputs in batches while the input is read, then one
:class:`EndOfRun` when it is done. That value is all a sink learns about the
pipeline, so a sink can be tested, or replaced, without one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, cast

import orjson

from workers.config import Config
from workers.core.records import (
    CHANGE_REASONS,
    OUTPUT_KINDS,
    AudienceCall,
    DeadLetter,
    Forget,
    IdentityMerge,
    Output,
    OutputKind,
    PersonaCard,
    ProfileSnapshot,
    SegmentChange,
    SegmentLineage,
)
from workers.errors import BrokerError
from workers.io import folder
from workers.io.cloudevents import Envelope
from workers.io.kafka import (
    client_security,
    output_topic_specs,
    prefixed_output_topics,
    provision,
    unreachable,
)

_FLUSH_SECONDS = 120.0  # a healthy broker acknowledges the last batches in well under 1 s


@dataclass(frozen=True)
class EndOfRun:
    """What a sink may keep once the input is done: the end state, as plain records."""

    summary: dict[str, Any]
    personas: list[PersonaCard]
    profiles: Iterable[ProfileSnapshot]  # in profile-id order; lazy, so read it at most once


class Sink(Protocol):
    def write(self, outputs: list[Output]) -> None:
        """Take one batch of outputs, in the order the pipeline emitted them."""

    def close(self, end: EndOfRun) -> None:
        """The input is done: keep what this sink keeps of the end state, release the rest."""


_STAMPED = ("segment_change", "identity_merge", "segment_lineage", "forget")


def wall_clock() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def stamp_emitted(outputs: Iterable[Output], clock: Callable[[], str]) -> None:
    """Set ``emitted_at`` (one reading of the clock per batch); dead letters have none, and
    audience calls keep to the Segment spec (their ``timestamp`` is the event time)."""
    stamp = None
    for out in outputs:
        if out.kind in _STAMPED:
            if stamp is None:
                stamp = clock()
            cast(SegmentChange | IdentityMerge | SegmentLineage | Forget,
                 out.record)["emitted_at"] = stamp


def _pretty(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


class FileSink:
    """Streams records to JSON-lines files; the end state is written by :meth:`close`."""

    def __init__(self, out_dir: str | Path, kinds: Iterable[OutputKind],
                 clock: Callable[[], str] = wall_clock) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._files: dict[OutputKind, IO[bytes]] = {
            kind: open(self.dir / OUTPUT_KINDS[kind].file, "wb")  # noqa: SIM115 - closed in close()
            for kind in kinds}

    def write(self, outputs: list[Output]) -> None:
        files = self._files
        stamp_emitted(outputs, self.clock)
        for out in outputs:
            files[out.kind].write(orjson.dumps(out.record) + b"\n")

    def close(self, end: EndOfRun) -> None:
        for handle in self._files.values():
            handle.close()
        with open(self.dir / folder.PROFILES, "wb") as handle:
            for snapshot in end.profiles:
                handle.write(orjson.dumps(snapshot) + b"\n")
        (self.dir / folder.PERSONAS).write_bytes(_pretty(end.personas))
        (self.dir / folder.SUMMARY).write_bytes(_pretty(end.summary))


class TopicSink:
    """Produces to ``PREFIX.segment-changes``, ``.identity-merges``, ``.dlq`` (and
    ``.audiences`` with ``audiences.enabled``), with CloudEvents headers.

    Sends are asynchronous and batched by the producer; ``close`` waits for
    every acknowledgement and fails if any record was refused.
    """

    def __init__(self, config: Config, prefix: str,
                 clock: Callable[[], str] = wall_clock) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        k = config.kafka
        self.topics = prefixed_output_topics(config, prefix)
        self.envelope = Envelope(config)
        self.clock = clock
        self._error: BaseException | None = None
        timeout_ms = int(k.connect_timeout_seconds * 1000)
        provision(config, output_topic_specs(config, sorted(set(self.topics.values()))))
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=k.bootstrap_servers, acks="all",
                linger_ms=20,  # fill batches instead of one request per record
                batch_size=256 * 1024, max_block_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                client_id="persona-stream-replay",
                **client_security(config))
        except KafkaError as exc:
            raise BrokerError(unreachable(config, exc)) from None

    def _failed(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def write(self, outputs: list[Output]) -> None:
        send, topics, failed = self._producer.send, self.topics, self._failed
        message = self.envelope.message
        stamp_emitted(outputs, self.clock)
        for out in outputs:
            key, value, headers = message(out)
            send(topics[out.kind], key=key, value=value, headers=headers).add_errback(failed)

    def close(self, end: EndOfRun) -> None:
        """Wait for every acknowledgement; the end state stays in the pipeline (or its saved
        state): topics carry records, not snapshots."""
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout=_FLUSH_SECONDS)
        except KafkaError as exc:
            self._failed(exc)
        finally:
            self._producer.close(timeout=_FLUSH_SECONDS)
        if self._error is not None:
            raise BrokerError(f"producing to {self.topics['segment_change']} and co. failed: "
                              f"{self._error}")


@dataclass
class DryRun:
    """Counts what a replay would emit, and emits nothing."""

    changes: Counter[tuple[int | None, str]] = field(default_factory=Counter)
    merges: int = 0
    forgets: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    audience_calls: Counter[str] = field(default_factory=Counter)  # by track event/identify
    lineage: Counter[str] = field(default_factory=Counter)  # by kind
    personas: list[PersonaCard] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self, outputs: list[Output]) -> None:
        for out in outputs:
            if out.kind == "segment_change":
                change = cast(SegmentChange, out.record)
                self.changes[(change["segment"]["id"], change["reason"])] += 1
            elif out.kind == "identity_merge":
                self.merges += 1
            elif out.kind == "audience":
                call = cast(AudienceCall, out.record)
                self.audience_calls[call.get("event", call["type"])] += 1
            elif out.kind == "segment_lineage":
                self.lineage[cast(SegmentLineage, out.record)["kind"]] += 1
            elif out.kind == "forget":
                self.forgets += 1
            else:
                self.dead[cast(DeadLetter, out.record)["error"]] += 1

    def close(self, end: EndOfRun) -> None:
        self.personas = end.personas
        self.summary = end.summary

    def report(self, current: list[PersonaCard] | None, current_from: str | None) -> str:
        """What would change, for an operator: counts, then the segment distribution set
        against ``current`` (the personas of ``current_from``) when given."""
        s = self.summary
        lines = [f"dry run: {s['events_replayed']:,} events replayed in {s['seconds']} s;"
                 " nothing was emitted", "", *self._changes(), "",
                 f"identity merges: {self.merges:,}", "",
                 f"segment lineage events: {sum(self.lineage.values()):,}"
                 + "".join(f"  {kind} {n:,}" for kind, n in sorted(self.lineage.items())), "",
                 f"dead letters: {sum(self.dead.values()):,}"]
        lines += [f"  {error:<28}{count:>10,}" for error, count in sorted(self.dead.items())]
        if self.forgets or s.get("events_forgotten"):
            lines += ["", f"forgotten: {self.forgets:,} profiles removed,"
                      f" {s.get('events_forgotten', 0):,} events of forgotten people dropped"]
        if self.audience_calls:
            lines += ["", f"audience calls: {sum(self.audience_calls.values()):,}"]
            lines += [f"  {call:<28}{count:>10,}"
                      for call, count in sorted(self.audience_calls.items())]
        lines += ["", *self._distribution(current)]
        if current is not None:
            lines.append(f"  (current: {current_from})")
        return "\n".join(lines) + "\n"

    def _changes(self) -> list[str]:
        names = {c["segment_id"]: c["name"] for c in self.personas}
        lines = [f"segment changes: {sum(self.changes.values()):,}",
                 f"  {'segment':<44}" + "".join(f"{r:>13}" for r in CHANGE_REASONS)]
        for sid in sorted({sid for sid, _ in self.changes}, key=lambda x: (x is None, x or 0)):
            label = "(none)" if sid is None else f"{sid} {names.get(sid, f'Segment {sid}')}"
            lines.append(f"  {label[:44]:<44}"
                         + "".join(f"{self.changes[(sid, r)]:>13,}" for r in CHANGE_REASONS))
        return lines

    def _distribution(self, current: list[PersonaCard] | None) -> list[str]:
        lines = ["segment distribution (profiles):",
                 f"  {'segment':<44}{'replay':>16}"
                 + (f"{'current':>16}{'change':>10}" if current is not None else "")]
        names = {c["segment_id"]: c["name"] for c in self.personas}
        replay_sizes = {c["segment_id"]: c["size"] for c in self.personas}
        now_sizes = {c["segment_id"]: c["size"] for c in current or []}
        names_now = {c["segment_id"]: c["name"] for c in current or []}
        replay_total = sum(replay_sizes.values()) or 1
        now_total = sum(now_sizes.values()) or 1
        for sid in sorted(set(replay_sizes) | set(now_sizes)):
            label = f"{sid} {names.get(sid) or names_now.get(sid, '')}"
            a, b = replay_sizes.get(sid, 0), now_sizes.get(sid, 0)
            row = f"  {label[:44]:<44}{a:>8,} {a / replay_total:>6.1%}"
            if current is not None:
                shift = 100 * (a / replay_total - b / now_total)
                row += f"{b:>8,} {b / now_total:>6.1%}{shift:>+7.1f} pts"
            lines.append(row)
        return lines
