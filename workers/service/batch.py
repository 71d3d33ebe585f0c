"""One batch of the sequenced stream through the pipeline: the owner's rule, without I/O.

The owner reads a batch, hands it to :func:`process_batch`, then produces the
outputs and commits (:mod:`workers.service.owner`). Keeping this step pure lets a
unit test drive it with a list of fake records, and lets a test replay the
sequenced topic exactly as the owner does.

A sequenced record's key says where its bytes came from (``topic:partition:offset``
of the input, see :func:`origin_of`), so the pipeline drops a record a router
forwarded twice; the key :data:`FLUSH_KEY` marks an idle flush, written into the
stream so that a replay of it flushes at the same place, and :data:`FORGET_KEY` a
forget request a router forwarded from ``kafka.forget_topic``, applied at its place
in the stream likewise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from workers.core.forget import parse_request
from workers.core.identity_stage import IdentityStage
from workers.core.records import Origin, Output
from workers.errors import InvalidEvent

FLUSH_KEY = b"\x00flush"
FORGET_KEY = b"\x00forget"


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
        if record.key == FLUSH_KEY:
            outputs.extend(pipeline.flush())
            continue
        if record.key == FORGET_KEY:
            outputs.extend(forget(pipeline, record.value))
            continue
        outputs.extend(feed(record.value, origin_of(record.key)))
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
