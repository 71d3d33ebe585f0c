"""The records the partitioned stages send each other, as Kafka values.

:mod:`workers.core.partitioned.records` lists them. A Kafka value is a *bundle*:
the records one stage sent one partition in one go (an owner batch's records for
a profile partition, a task run's samples and marks), in order. aiokafka costs
tens of microseconds of Python per record sent and read (a future, an
acknowledgement, a ``ConsumerRecord``), several times the work a profile task
does per event, so one Kafka record per bundle is what lets the hops cost less
than the work. A bundle is a :mod:`workers.state.codec` list of the records'
own encodings (so reading one never runs code), cut at :data:`BUNDLE_BYTES`
so no value comes near the broker's size limit. Each record is a list
``[kind, *fields]``; an event travels as its fields, without the bytes it came
in: only the stage that dead-letters needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from workers.core.touchpoints import Touchpoint
from workers.errors import StateError
from workers.state.codec import pack, unpack

Record = Routed | Move | Tick | Forgotten | Moved | Sample | Mark | Version
_KINDS: dict[str, type[Any]] = {kind.__name__: kind for kind in (
    Routed, Move, Tick, Forgotten, Moved, Sample, Mark, Version)}
# a bundle is cut once its records reach this many bytes: a record (an event is at most
# intake.max_event_bytes) and a bundle stay well under the producer's 1 MiB request limit
BUNDLE_BYTES = 256 * 1024


def encode_one(record: Record) -> bytes:
    if isinstance(record, Routed):
        tp = record.tp
        return pack(["Routed", record.pid, tp.data, tp.event_id, tp.ts, tp.type, tp.identity,
                     list(record.absorbed), record.identifiers])
    if isinstance(record, Version):
        return pack(["Version", record.epoch,
                     [(snapshot.fields(), ts) for snapshot, ts in record.snapshots]])
    return pack([type(record).__name__, *record])


def encode(records: Sequence[Record]) -> list[bytes]:
    """``records`` as bundles, in order: one Kafka value each."""
    bundles: list[bytes] = []
    items: list[bytes] = []
    size = 0
    for record in records:
        item = encode_one(record)
        items.append(item)
        size += len(item)
        if size >= BUNDLE_BYTES:
            bundles.append(pack(items))
            items, size = [], 0
    if items:
        bundles.append(pack(items))
    return bundles


def decode(data: bytes | None) -> list[Record]:
    """The records of a bundle from :func:`encode`; a StateError for anything else."""
    if data is None:
        raise StateError("an internal record without a value")
    items = unpack(data)
    if not isinstance(items, list):
        raise StateError("not a bundle of internal records of persona-stream")
    return [decode_one(item) for item in items]


def decode_one(data: bytes) -> Record:
    if not isinstance(data, bytes):
        raise StateError("not an internal record of persona-stream")
    item = unpack(data)
    if not isinstance(item, list) or not item or item[0] not in _KINDS:
        raise StateError("not an internal record of persona-stream")
    kind, fields = item[0], item[1:]
    try:
        if kind == "Routed":
            pid, event, event_id, ts, type_, identity, absorbed, identifiers = fields
            return Routed(pid, Touchpoint(event, event_id, ts, type_, identity),
                          tuple(absorbed), identifiers)
        if kind == "Version":
            tick, snapshots = fields
            return Version(tick, tuple((Snapshot(*f), ts) for f, ts in snapshots))
        made: Record = _KINDS[kind](*fields)
    except (TypeError, ValueError) as exc:
        raise StateError(f"a damaged internal {kind} record ({exc})") from None
    return made
