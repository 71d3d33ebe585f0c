"""The records the partitioned stages send each other, as Kafka values.

:mod:`workers.core.partitioned.records` lists them. A Kafka value is a *bundle*:
the records one stage sent one partition in one go (an owner batch's records for
a profile partition, a task run's samples and marks), in order. aiokafka costs
tens of microseconds of Python per record sent and read (a future, an
acknowledgement, a ``ConsumerRecord``), several times the work a profile task
does per event, so one Kafka record per bundle is what lets the hops cost less
than the work. A bundle is a msgpack array of records, cut at
:data:`BUNDLE_BYTES` so no value comes near the broker's size limit; a bundle of
the identity stage starts with the number of its first record in its partition
(an integer; the records after it are numbered on), which a profile task reads
to tell a record it has from one sent again. Each record
is a list ``[kind, *fields]``, of plain values where the kind has only those
(written by one reused packer: most records are events and ticks), else a
:mod:`workers.state.codec` value (a moved profile's state, a forget request, a
model version); read back by one :func:`~workers.state.codec.unpack` per bundle,
so reading one never runs code. An event travels as its fields' JSON
(``Touchpoint.data_json``), without the bytes it came in (only the stage that
dead-letters needs them): the identity stage passes the JSON it was given on
without reading it, and the profile task reads it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from workers.core.partitioned.records import (
    Forgotten,
    Mark,
    Move,
    Moved,
    Routed,
    Sample,
    Tick,
    Version,
)
from workers.core.segments import Snapshot
from workers.core.touchpoints import CarriedTouchpoint, Touchpoint
from workers.errors import StateError
from workers.state.codec import pack, unpack

Record = Routed | Move | Tick | Forgotten | Moved | Sample | Mark | Version
_KINDS: dict[str, type[Any]] = {kind.__name__: kind for kind in (
    Routed, Move, Tick, Forgotten, Moved, Sample, Mark, Version)}
# a bundle is cut once its records reach this many bytes: a record (an event is at most
# intake.max_event_bytes) and a bundle stay well under the producer's 1 MiB request limit
BUNDLE_BYTES = 256 * 1024


_PLAIN_KINDS = (Routed, Tick, Move, Sample, Mark)
_plain = msgpack.Packer(use_bin_type=True)


def encode_one(record: Record) -> bytes:
    """One record's msgpack value (an element of a bundle's array)."""
    if isinstance(record, Routed):
        tp = record.tp
        return _plain.pack(["Routed", record.pid, tp.data_json(), tp.event_id, tp.ts, tp.type,
                            tp.identity, record.absorbed, record.identifiers])
    if isinstance(record, _PLAIN_KINDS):
        return _plain.pack([type(record).__name__, *record])
    if isinstance(record, Version):
        return pack(["Version", record.epoch,
                     [(snapshot.fields(), ts) for snapshot, ts in record.snapshots]])
    return pack([type(record).__name__, *record])


def encode(records: Sequence[Record], first: int | None = None) -> list[bytes]:
    """``records`` as bundles, in order: one Kafka value each. ``first``: the number of
    the first record (the identity stage's records for a partition), each bundle then
    starting with the number of its own first record."""
    bundles: list[bytes] = []
    items: list[bytes] = []
    size = 0
    for record in records:
        item = encode_one(record)
        items.append(item)
        size += len(item)
        if size >= BUNDLE_BYTES:
            bundles.append(_array(items, first))
            first = None if first is None else first + len(items)
            items, size = [], 0
    if items:
        bundles.append(_array(items, first))
    return bundles


def encode_per_partition(sent: Iterable[tuple[int, int, Record]]) -> list[tuple[int, bytes]]:
    """(partition, number, record) in order as numbered bundles per partition, each
    partition's records in their order: what one batch of the identity stage sends."""
    by_partition: dict[int, tuple[int, list[Record]]] = {}
    for partition, number, record in sent:
        numbered = by_partition.get(partition)
        if numbered is None:
            by_partition[partition] = number, [record]
        else:
            numbered[1].append(record)
    return [(partition, value) for partition, (first, records) in by_partition.items()
            for value in encode(records, first)]


def _array(items: list[bytes], first: int | None) -> bytes:
    """A msgpack array of values already packed (array 32: a type byte, then the count),
    after the number ``first`` if there is one."""
    if first is None:
        return b"\xdd" + len(items).to_bytes(4, "big") + b"".join(items)
    return (b"\xdd" + (len(items) + 1).to_bytes(4, "big") + _plain.pack(first)
            + b"".join(items))


def decode(data: bytes | None) -> list[Record]:
    """The records of a bundle from :func:`encode`; a StateError for anything else."""
    return decode_numbered(data)[1]


def decode_numbered(data: bytes | None) -> tuple[int | None, list[Record]]:
    """The number of a bundle's first record (None: not numbered) and its records."""
    if data is None:
        raise StateError("an internal record without a value")
    items = unpack(data)
    if not isinstance(items, list):
        raise StateError("not a bundle of internal records of persona-stream")
    first = None
    if items and type(items[0]) is int:
        first = items[0]
        del items[0]
        if not items:  # encode() never writes a number alone
            raise StateError("not a bundle of internal records of persona-stream")
    # a bundle written before records went inline holds each record's own bytes
    return first, [_record(unpack(item) if type(item) is bytes else item) for item in items]


def _record(item: Any) -> Record:
    if not isinstance(item, list) or not item or item[0] not in _KINDS:
        raise StateError("not an internal record of persona-stream")
    kind, fields = item[0], item[1:]
    try:
        if kind == "Routed":
            pid, event, event_id, ts, type_, identity, absorbed, identifiers = fields
            tp = (Touchpoint(event, event_id, ts, type_, identity) if type(event) is dict
                  else CarriedTouchpoint(event, event_id, ts, type_, identity))
            return Routed(pid, tp, tuple(absorbed), identifiers)
        if kind == "Version":
            tick, snapshots = fields
            return Version(tick, tuple((Snapshot(*f), ts) for f, ts in snapshots))
        made: Record = _KINDS[kind](*fields)
    except (TypeError, ValueError) as exc:
        raise StateError(f"a damaged internal {kind} record ({exc})") from None
    return made
