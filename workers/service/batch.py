"""One batch of the sequenced stream through the pipeline: the owner's rule, without I/O.

The owner reads a batch, hands it to :func:`process_batch`, then produces the
outputs and commits (:mod:`workers.service.owner`). Keeping this step pure lets a
unit test drive it with a list of fake records, and lets a test replay the
sequenced topic exactly as the owner does.

A router forwards the records of an input partition it read in one batch as one
sequenced record, a *bundle* (:func:`bundles`): its key names the input topic and
partition (``\x00in:topic:partition``), its value lists each record's input offset
and bytes, so the pipeline drops a record a router forwarded twice. One Kafka record
per bundle rather than per event: aiokafka's Python per record sent and read (a
future, an acknowledgement, a ``ConsumerRecord``) costs more than the owner's work on
the event. A record keyed ``topic:partition:offset`` (see :func:`origin_of`) holds
one event's bytes, as routers wrote them before bundles. The key :data:`FLUSH_KEY`
marks an idle flush, written into the stream so that a replay of it flushes at the
same place, and :data:`FORGET_KEY` a forget request a router forwarded from
``kafka.forget_topic``, applied at its place in the stream likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import msgpack

from workers.core.forget import parse_request
from workers.core.identity_stage import IdentityStage
from workers.core.records import Origin, Output
from workers.errors import InvalidEvent

FLUSH_KEY = b"\x00flush"
FORGET_KEY = b"\x00forget"
BUNDLE_PREFIX = b"\x00in:"
# a bundle is cut once its events reach this many bytes, well under the producer's 1 MiB
BUNDLE_BYTES = 256 * 1024


class InputRecord(Protocol):
    """What a router forwards of an input record."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def offset(self) -> int: ...


class SequencedRecord(Protocol):
    """What the owner reads of a sequenced record (aiokafka's and kafka-python's have it)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...  # None: a tombstone, which becomes a dead letter

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class BatchResult:
    """What a batch did: the outputs to produce before committing, and where it ended."""

    outputs: list[Output]
    fed: int  # records fed to the pipeline; flush markers are not counted
    next_offset: int  # the first sequenced offset after the batch


def bundles(topic: str, partition: int,
            records: Iterable[InputRecord]) -> Iterator[tuple[bytes, bytes]]:
    """Key and value of each sequenced bundle holding ``records`` of one input partition,
    in order."""
    key = BUNDLE_PREFIX + f"{topic}:{partition}".encode()
    offsets: list[int] = []
    values: list[bytes | None] = []
    size = 0
    for record in records:
        value = record.value
        offsets.append(record.offset)
        values.append(value)
        size += 16 if value is None else len(value)
        if size >= BUNDLE_BYTES:
            yield key, msgpack.packb([offsets, values])
            offsets, values, size = [], [], 0
    if offsets:
        yield key, msgpack.packb([offsets, values])


def _unbundle(key: bytes, value: bytes | None) -> tuple[str, int, list[int], list[bytes | None]]:
    """The input topic and partition of a bundle, its records' offsets and bytes; an
    InvalidEvent when it is no bundle a router wrote."""
    try:
        topic, partition = key[len(BUNDLE_PREFIX):].decode().rsplit(":", 1)
        offsets, values = msgpack.unpackb(value or b"")
        if len(offsets) != len(values) or not all(type(o) is int for o in offsets):
            raise ValueError("an offset per record")
        return topic, int(partition), offsets, values
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidEvent("not_object", f"a damaged sequenced bundle ({exc})") from None


def origin_of(key: bytes | None) -> Origin | None:
    """Where a sequenced record came from, read from its key ("topic:partition:offset")."""
    if not key:
        return None
    topic, partition, offset = key.decode().rsplit(":", 2)
    return Origin(topic, int(partition), int(offset))


def process_batch(pipeline: IdentityStage, records: Iterable[SequencedRecord]) -> BatchResult:
    """Feed ``records`` (in sequenced order, at least one) to ``pipeline``.

    The sequenced topic has one partition, so the last record's offset is where
    the batch ends, however the caller grouped the records.
    """
    outputs: list[Output] = []
    fed = 0
    feed = pipeline.feed
    record: SequencedRecord | None = None
    for record in records:
        key = record.key
        if key is not None and key.startswith(BUNDLE_PREFIX):
            try:
                topic, partition, offsets, values = _unbundle(key, record.value)
            except InvalidEvent as exc:
                outputs.extend(pipeline.reject(record.value, exc))
                continue
            for offset, value in zip(offsets, values, strict=True):
                outputs.extend(feed(value, Origin(topic, partition, offset)))
            fed += len(offsets)
            continue
        if key == FLUSH_KEY:
            outputs.extend(pipeline.flush())
            continue
        if key == FORGET_KEY:
            outputs.extend(forget(pipeline, record.value))
            continue
        outputs.extend(feed(record.value, origin_of(key)))
        fed += 1
    if record is None:
        raise ValueError("an empty batch has no position")
    return BatchResult(outputs, fed, record.offset + 1)


def forget(pipeline: IdentityStage, value: bytes | None) -> list[Output]:
    """Apply one forget request; an unreadable one is a dead letter (it holds hashes only)."""
    try:
        request = parse_request(value)
    except InvalidEvent as exc:
        return pipeline.reject(value, exc)
    return pipeline.forget(request)
