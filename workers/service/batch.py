"""One batch of the sequenced stream through the pipeline: the owner's rule, without I/O.

The owner reads a batch, hands it to :func:`process_batch`, then produces the
outputs and commits (:mod:`workers.service.owner`). Keeping this step pure lets a
unit test drive it with a list of fake records, and lets a test replay the
sequenced topic exactly as the owner does.

A router reads the records of an input partition it fetched in one batch
(:class:`~workers.core.intake.Intake`: formats, validation) and forwards them as
one sequenced record, a *bundle* (:func:`bundles`): its key names the input topic
and partition (``\x00read:topic:partition``), its value lists each record's input
offset and what it read as (each event's id, time, type and identifiers, its fields
as JSON, which the identity stage passes on unread, and its bytes; or the reason it is
refused), so the pipeline drops a record a router forwarded twice, and reading,
half of the identity stage's work on an event, is done in parallel by the routers.
One Kafka record per bundle rather than per event: aiokafka's Python per record
sent and read (a future, an acknowledgement, a ``ConsumerRecord``) costs more than
the owner's work on the event. Routers of earlier releases wrote the records'
bytes unread (``\x00in:topic:partition``) or one record per event keyed
``topic:partition:offset`` (see :func:`origin_of`); the owner reads those too, so a
rolling upgrade loses nothing. The key :data:`FLUSH_KEY`
marks an idle flush, written into the stream so that a replay of it flushes at the
same place, and :data:`FORGET_KEY` a forget request a router forwarded from
``kafka.forget_topic``, applied at its place in the stream likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from workers.core.forget import parse_request
from workers.core.identity_stage import IdentityStage
from workers.core.intake import Intake, Item, Rejected
from workers.core.records import Origin, Output
from workers.core.touchpoints import CarriedTouchpoint, Touchpoint
from workers.errors import InvalidEvent, StateError
from workers.state.codec import pack, unpack
from workers.state.wire import BUNDLE_BYTES

FLUSH_KEY = b"\x00flush"
FORGET_KEY = b"\x00forget"
BUNDLE_PREFIX = b"\x00in:"  # the bytes of input records, unread
READ_PREFIX = b"\x00read:"  # input records as a router read them


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


def bundles(topic: str, partition: int, records: Iterable[InputRecord],
            intake: Intake) -> Iterator[tuple[bytes, bytes]]:
    """Key and value of each sequenced bundle holding ``records`` of one input partition,
    in order, each read by ``intake``."""
    key = READ_PREFIX + f"{topic}:{partition}".encode()
    read = intake.read
    offsets: list[int] = []
    items: list[list[list[Any]]] = []
    size = 0
    for record in records:
        value = record.value
        offsets.append(record.offset)
        items.append([_item_fields(item) for item in read(value, topic)])
        # the fields of an event take about as many bytes as the event
        size += 16 if value is None else 2 * len(value)
        if size >= BUNDLE_BYTES:
            yield key, pack([offsets, items])
            offsets, items, size = [], [], 0
    if offsets:
        yield key, pack([offsets, items])


def _item_fields(item: Item) -> list[Any]:
    if isinstance(item, Rejected):
        return list(item)
    return [item.data_json(), item.event_id, item.ts, item.type, item.identity, item.raw]


def _read_items(fields: list[Any]) -> Item:
    if len(fields) == 3:
        return Rejected(*fields)
    data, event_id, ts, type_, identity, raw = fields
    if type(data) is dict:  # bundled by a router before events went as JSON
        return Touchpoint(data, event_id, ts, type_, identity, raw)
    return CarriedTouchpoint(data, event_id, ts, type_, identity, raw)


def _unpack_read(value: bytes) -> list[Any]:
    offsets, read = unpack(value)
    return [offsets, [[_read_items(fields) for fields in items] for items in read]]


def _unbundle(key: bytes, value: bytes | None, read: bool,
              ) -> tuple[str, int, list[int], list[Any]]:
    """The input topic and partition of a bundle, its records' offsets and contents (as
    read, or their bytes); an InvalidEvent when it is no bundle a router wrote."""
    try:
        prefix, unpack_value = ((READ_PREFIX, _unpack_read) if read
                                else (BUNDLE_PREFIX, msgpack.unpackb))
        topic, partition = key[len(prefix):].decode().rsplit(":", 1)
        offsets, values = unpack_value(value or b"")
        if len(offsets) != len(values) or not all(type(o) is int for o in offsets):
            raise ValueError("an offset per record")
        return topic, int(partition), offsets, values
    except (ValueError, TypeError, StateError, msgpack.UnpackException) as exc:
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
    feed, feed_read = pipeline.feed, pipeline.feed_read
    record: SequencedRecord | None = None
    for record in records:
        key = record.key
        if key is not None and key.startswith((READ_PREFIX, BUNDLE_PREFIX)):
            read = key.startswith(READ_PREFIX)  # else bytes unread, by earlier routers
            try:
                topic, partition, offsets, values = _unbundle(key, record.value, read)
            except InvalidEvent as exc:
                outputs.extend(pipeline.reject(record.value, exc))
                continue
            step = feed_read if read else feed
            for offset, value in zip(offsets, values, strict=True):
                outputs.extend(step(value, Origin(topic, partition, offset)))
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
