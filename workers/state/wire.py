"""The records the partitioned stages send each other, as Kafka values.

:mod:`workers.core.partitioned.records` lists them; on the wire each is a
:mod:`workers.state.codec` list ``[kind, *fields]`` (so reading one never runs
code). An event travels without the bytes it came in: only the stage that
dead-letters needs them.
"""

from __future__ import annotations

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


def encode(record: Record) -> bytes:
    if isinstance(record, Routed):
        tp = record.tp
        light = Touchpoint(tp.data, tp.event_id, tp.ts, tp.type, tp.identity)
        return pack(["Routed", record.pid, light, record.absorbed, record.identifiers])
    if isinstance(record, Version):
        return pack(["Version", record.epoch,
                     [(snapshot.fields(), ts) for snapshot, ts in record.snapshots]])
    return pack([type(record).__name__, *record])


def decode(data: bytes | None) -> Record:
    """A record from :func:`encode` bytes; a StateError for anything else."""
    if data is None:
        raise StateError("an internal record without a value")
    item = unpack(data)
    if not isinstance(item, list) or not item or item[0] not in _KINDS:
        raise StateError("not an internal record of persona-stream")
    kind, fields = item[0], item[1:]
    try:
        if kind == "Version":
            tick, snapshots = fields
            return Version(tick, tuple((Snapshot(*f), ts) for f, ts in snapshots))
        if kind == "Routed":
            pid, tp, absorbed, identifiers = fields
            return Routed(pid, tp, tuple(absorbed), identifiers)
        made: Record = _KINDS[kind](*fields)
    except (TypeError, ValueError) as exc:
        raise StateError(f"a damaged internal {kind} record ({exc})") from None
    return made
