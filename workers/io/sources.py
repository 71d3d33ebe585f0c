"""Where raw records come from: JSON-lines files (plain, .gz or stdin) or a topic range.

A :class:`Source` yields each raw record with its :class:`Origin` (None for a
file line) and estimates its size for the progress display. Neither source
joins a consumer group or commits an offset.
"""

from __future__ import annotations

import gzip
import heapq
import math
import os
import re
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from workers.config import Config
from workers.core.formats import Format
from workers.core.intake import Intake, Rejected
from workers.core.records import Origin
from workers.core.touchpoints import parse_time
from workers.errors import BrokerError, InputError
from workers.io.kafka import client_security, unreachable

_POLL_RECORDS = 5000  # records per poll: amortises the round trip
_PAUSE_AT = 20_000  # records buffered per partition before its fetching pauses (~20 MB)
_POLL_MS = 500  # one poll waits at most this long, so a stalled read is noticed promptly
# a file sort holds at most this much input in memory; more is sorted in runs on disk
RUN_BYTES = 64 * 1_048_576
_RUN_HEADER = struct.Struct("<dI")  # a spilled record: its time and its length, then it
_OCCURRED_AT = re.compile(rb'"occurred_at"\s*:\s*"([^"\\]{1,64})"')


def event_time(raw: bytes) -> float:
    """``occurred_at`` without a full JSON parse; -inf when absent or unparsable.

    Only the merge order depends on it: an unparsable record leaves its
    partition as soon as it is at the head, so it still reaches the dead letters.
    """
    match = _OCCURRED_AT.search(raw)
    if match is None:
        return -math.inf
    try:
        return parse_time(match.group(1).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return -math.inf



def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by read_lines
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


def read_lines(paths: list[str]) -> Iterator[bytes]:
    """Every non-blank line of every file, in order, without its line ending."""
    for path in paths:
        handle = _open(path)
        try:
            for line in handle:
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()


class Source(Protocol):
    """Raw records in the order the pipeline is to see them."""

    def __iter__(self) -> Iterator[tuple[bytes, Origin | None]]:
        """Each raw record with where it came from (None for a file line), for its dead
        letter and for dropping a record fed twice."""

    def estimate(self, events: int) -> int | None:
        """How many records the whole source holds, if known, after ``events`` were read."""

    def close(self) -> None:
        """Release what the source holds (a broker connection); also after an interrupt."""


class FileSource:
    """JSON-lines files in event-time order, whatever the order of files and lines.

    ``time_of`` gives a record's processing time (a :class:`ValidTime`); the files are
    read once and sorted by (time, bytes), so two orders of the same history give the
    same records in the same order. Up to ``run_bytes`` of input is sorted in memory;
    beyond, sorted runs go to temporary files and are merged (bounded memory).
    ``time_of=None`` (``--assume-sorted``) reads the files as they are, in the order given.
    ``say`` hears a line about the sort for the progress display.
    """

    def __init__(self, paths: list[str], time_of: Callable[[bytes], float] | None = None,
                 say: Callable[[str], None] | None = None, run_bytes: int = RUN_BYTES) -> None:
        self.paths = paths
        self.time_of = time_of
        self.say = say
        self.run_bytes = run_bytes
        self.bytes_read = 0
        self.lines: int | None = None  # known once a sort has read everything
        self.runs = 0
        sizes = [_uncompressed_size(p) for p in paths]
        self.total_bytes = None if None in sizes else sum(s or 0 for s in sizes)

    def __iter__(self) -> Iterator[tuple[bytes, Origin | None]]:
        if self.time_of is None:
            for line in read_lines(self.paths):
                self.bytes_read += len(line) + 1
                yield line, None
            return
        with tempfile.TemporaryDirectory(prefix="persona-stream-sort-") as spill:
            for line in self._sorted(self.time_of, spill):
                yield line, None

    def _sorted(self, time_of: Callable[[bytes], float], spill: str) -> Iterator[bytes]:
        started = time.monotonic()
        if self.say is not None:
            self.say(f"sorting {len(self.paths)} file(s) by event time before processing"
                     " (--assume-sorted skips this)")
        run: list[tuple[float, bytes]] = []
        held = lines = 0
        runs: list[str] = []
        for line in read_lines(self.paths):
            run.append((time_of(line), line))
            lines += 1
            held += len(line)
            if held >= self.run_bytes:
                runs.append(_spill(sorted(run), spill, len(runs)))
                run, held = [], 0
        run.sort()
        self.lines, self.runs = lines, len(runs) + 1
        if self.say is not None:
            where = (f"in {self.runs} runs on disk under {tempfile.gettempdir()}" if runs
                     else "in memory")
            self.say(f"sorted {lines:,} records {where} in {time.monotonic() - started:.1f} s")
        merged = heapq.merge(run, *(_read_run(path) for path in runs)) if runs else iter(run)
        del run
        for _, line in merged:
            self.bytes_read += len(line) + 1
            yield line

    def estimate(self, events: int) -> int | None:
        if self.lines is not None:
            return self.lines
        if not self.total_bytes or not self.bytes_read:
            return None
        return max(events, round(events * self.total_bytes / self.bytes_read))

    def close(self) -> None:
        """Nothing held: read_lines closes each file, a sort removes its runs itself."""


def _spill(run: list[tuple[float, bytes]], directory: str, index: int) -> str:
    path = os.path.join(directory, f"run-{index}")
    pack = _RUN_HEADER.pack
    with open(path, "wb", buffering=1_048_576) as out:
        for ts, line in run:
            out.write(pack(ts, len(line)))
            out.write(line)
    return path


def _read_run(path: str) -> Iterator[tuple[float, bytes]]:
    size = _RUN_HEADER.size
    unpack = _RUN_HEADER.unpack
    with open(path, "rb", buffering=1_048_576) as run:
        while header := run.read(size):
            ts, length = unpack(header)
            yield ts, run.read(length)


def _uncompressed_size(path: str) -> int | None:
    """gzip keeps the uncompressed size (mod 2**32) in its last 4 bytes; stdin has none."""
    if path == "-":
        return None
    try:
        if not path.endswith(".gz"):
            return os.path.getsize(path)
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            return int.from_bytes(handle.read(4), "little")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Bound:
    """One end of a topic range: an event time (epoch seconds) or an offset."""

    time: float | None = None
    offset: int | None = None


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    stop: int  # exclusive; never past the end offset seen when the replay started


class ValidTime:
    """The time a record will be processed at; -inf for one that will be a dead letter.

    What a file sort orders by, and what a replay merges partitions by: a record that
    will be refused (too large, unreadable, dated out of range) must not hold its
    partition back, or the valid events behind it would come out of order. The record
    is read as the pipeline will read it (its format included), by a parser whose
    counts are not kept.
    """

    def __init__(self, config: Config, fmt: Format | None = None) -> None:
        self.intake = Intake(config)
        self.fmt = fmt

    def __call__(self, raw: bytes, topic: str | None = None) -> float:
        """The time of the record's first valid event."""
        for item in self.intake.read(raw, topic, self.fmt):
            if not isinstance(item, Rejected):
                return item.ts
        return -math.inf  # a dead letter to be: it does not hold its partition back


class TopicSource:
    """One topic between two bounds, merged across partitions in event-time order.

    Partitions are ``assign()``-ed (no group, no commits); each stops at the
    end offset captured at start, so records produced during the replay are
    not chased. The merge goes by :class:`ValidTime`.
    """

    def __init__(self, config: Config, topic: str, start: Bound | None,
                 stop: Bound | None, fmt: Format | None = None) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        k = config.kafka
        self.topic = topic
        self._time_of = ValidTime(config, fmt)
        self._stall_seconds = k.connect_timeout_seconds  # no data this long = broker gone
        timeout_ms = int(k.connect_timeout_seconds * 1000)
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=k.bootstrap_servers, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", max_poll_records=_POLL_RECORDS,
                client_id="persona-stream-replay", request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms, **client_security(config))
        except KafkaError as exc:
            raise BrokerError(unreachable(config, exc)) from None
        try:
            partitions = sorted(self._consumer.partitions_for_topic(topic))
            if not partitions:
                raise BrokerError(f"topic {topic!r} does not exist")
            self._tps = {p: TopicPartition(topic, p) for p in partitions}
            tps = list(self._tps.values())
            begin = self._consumer.beginning_offsets(tps)
            end = self._consumer.end_offsets(tps)
            starts = self._resolve(start, begin, end)
            stops = self._resolve(stop, end, end)
        except KafkaError as exc:
            self._consumer.close()
            raise BrokerError(f"cannot read topic {topic!r}: {exc}") from None
        except BrokerError:
            self._consumer.close()
            raise
        self.ranges = []
        for p, tp in self._tps.items():
            first = min(max(starts[tp], begin[tp]), end[tp])
            self.ranges.append(PartitionRange(p, first, min(max(stops[tp], first), end[tp])))
        self.total = sum(r.stop - r.start for r in self.ranges)
        self._buffers: dict[int, deque[Any]] = {p: deque() for p in partitions}
        self._stops = {r.partition: r.stop for r in self.ranges}
        self._done = {r.partition for r in self.ranges if r.start >= r.stop}
        self._paused: set[int] = set()

    def _resolve(self, bound: Bound | None, default: dict[Any, int],
                 end: dict[Any, int]) -> dict[Any, int]:
        """Offsets per partition; a time maps to the first record stamped at or after it."""
        if bound is None:
            return default
        if bound.offset is not None:
            return dict.fromkeys(default, bound.offset)
        assert bound.time is not None
        found = self._consumer.offsets_for_times(
            dict.fromkeys(default, int(bound.time * 1000)))
        return {tp: end[tp] if hit is None else hit.offset for tp, hit in found.items()}

    def estimate(self, events: int) -> int | None:
        return self.total

    def __iter__(self) -> Iterator[tuple[bytes, Origin | None]]:
        live = [r for r in self.ranges if r.start < r.stop]
        self._consumer.assign([self._tps[r.partition] for r in live])
        for r in live:
            self._consumer.seek(self._tps[r.partition], r.start)
        topic = self.topic
        for _, partition, offset, value in heapq.merge(*(self._partition(r.partition)
                                                         for r in live)):
            yield value, Origin(topic, partition, offset)

    def _partition(self, partition: int) -> Iterator[tuple[float, int, int, bytes]]:
        """One partition's records in offset order, keyed for the merge."""
        buffer = self._buffers[partition]
        while True:
            while buffer:
                record = buffer.popleft()
                value = record.value or b""  # a tombstone becomes a dead letter, not a crash
                yield self._time_of(value, self.topic), partition, record.offset, value
            if partition in self._done:
                return
            self._fill(partition)

    def _fill(self, partition: int) -> None:
        """Poll until ``partition`` has records or is done; others' records are kept."""
        from kafka.errors import KafkaError

        consumer = self._consumer
        if partition in self._paused:
            consumer.resume(self._tps[partition])
            self._paused.discard(partition)
        deadline = time.monotonic() + self._stall_seconds
        while not self._buffers[partition] and partition not in self._done:
            try:
                batches = consumer.poll(timeout_ms=_POLL_MS, max_records=_POLL_RECORDS)
            except KafkaError as exc:
                raise BrokerError(f"reading {self.topic!r} failed: {exc}") from None
            if batches:
                deadline = time.monotonic() + self._stall_seconds
            elif time.monotonic() > deadline:
                raise BrokerError(f"no records from {self.topic!r} partition {partition} for "
                                  f"{self._stall_seconds:g} s; is the broker up?")
            for tp, records in batches.items():
                p = tp.partition
                stop = self._stops[p]
                buffer = self._buffers[p]
                buffer.extend(r for r in records if r.offset < stop)
                if consumer.position(tp) >= stop:
                    self._done.add(p)
                    consumer.pause(tp)
                elif len(buffer) >= _PAUSE_AT:
                    consumer.pause(tp)
                    self._paused.add(p)

    def close(self) -> None:
        self._consumer.close(autocommit=False)
