"""State on Kafka: one compacted changelog topic per store, written in transactions.

What follows says it of the owner's state (the identity stage's); a profile
partition's state is kept alike, in partition ``p`` of its
changelog topics, under the transactional id ``<app>.profiles.<p>``, and the
trainer's in ``<app>-trainer-changelog`` under ``<app>.trainer``.

A commit is one Kafka transaction holding the records of every key changed
since the previous commit (:class:`~workers.state.changelog.StateWriter`), the
sequenced offset the state has reached (the ``meta`` store's ``sequenced``
key) and the owner group's offset for it (``send_offsets_to_transaction``);
with ``kafka.processing_guarantee: exactly_once`` the outputs produced since
the previous commit are in the same transaction. So the changelogs always hold
a state that some sequenced offset produced, never half of a commit: a
restore reads them with ``read_committed`` and replays the sequenced stream
from that offset. The transactional id is the owner role's
(``<app>.owner``): a new owner's producer fences the old one's, so an owner
that lost its partition (a zombie) can no longer commit.

A commit costs what changed since the previous one. Compaction keeps the
newest record per key, and tombstones remove deleted keys, so a changelog holds
about the size of the state, however long it has run. This is the pattern of
faust tables and Kafka Streams stores, written on aiokafka: faust's tables
update one key per agent message, and the owner works in batches of thousands
of records outside faust agents (see :mod:`workers.service.app`).

:class:`ChangelogCopy` is the reading side: a copy of the changelogs' newest
records, brought up to date on demand. The owner restores from one at takeover;
a standby (``state.standby``) keeps one current all the time, so a takeover
reads only the last few seconds of changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from workers.config import Config
from workers.errors import BrokerError
from workers.io.kafka import changelog_topic
from workers.state.changelog import STAGE_STORES, StateRecord, Store
from workers.state.codec import pack, unpack

SEQUENCED_KEY = b"sequenced"  # meta store: the first sequenced offset the state has not seen
_FETCH_BYTES = 8 * 1_048_576
_READ_MS = 500
_TRANSACTION_MS = 300_000  # under the broker's transaction.max.timeout.ms (15 min)
# a send that finds room in the producer's buffer does not give the event loop back: a
# commit of thousands of keys does so every this many, so batches are not held up by it
_YIELD_EVERY = 256
# a commit's markers follow its answer: how long a state handed over waits for them
_MARKER_WAIT_S = 5.0
_MARKER_POLL_S = 0.05
_PARTITIONER = DefaultPartitioner()  # a key's partition as Kafka's own clients choose it
T = TypeVar("T")
K = TypeVar("K")


def owner_changelogs(config: Config) -> dict[str, Store]:
    """The owner's changelog topics (the identity stage's), each with the store it holds."""
    return {changelog_topic(config, s): s for s in STAGE_STORES}


class ChangelogCopy:
    """The newest record of every key of the changelogs, as far as read so far.

    ``topics``: each changelog topic with the store it holds (the owner's by default);
    ``partition``: read only that partition of each (a profile partition's state).
    """

    def __init__(self, config: Config, security: dict[str, Any],
                 topics: Mapping[str, Store] | None = None,
                 partition: int | None = None) -> None:
        self.config = config
        self.security = security
        self._store_of = dict(topics or owner_changelogs(config))
        self.latest: dict[Store, dict[bytes, bytes | None]] = {
            s: {} for s in set(self._store_of.values())}
        self._partition = partition
        self._positions: dict[TopicPartition, int] = {}
        self.records_read = 0
        # one reader at a time: a standby's refresh still reading when the owner takes the
        # copy over would write older values over the owner's newer ones
        self._reading = asyncio.Lock()

    @property
    def empty(self) -> bool:
        return not self.latest["meta"]

    @property
    def next_offset(self) -> int:
        """The sequenced offset the copy's state continues from (0: no state yet)."""
        return self.position(SEQUENCED_KEY)

    def position(self, key: bytes) -> int:
        """An offset the state's commit noted under ``key`` in its meta store (0: none)."""
        value = self.latest["meta"].get(key)
        return 0 if value is None else int(unpack(value))

    def records(self) -> Iterator[StateRecord]:
        for store, table in self.latest.items():
            for key, value in table.items():
                yield StateRecord(store, key, value)

    async def catch_up(self) -> int:
        """Read every committed record not read yet; returns how many."""
        async with self._reading:
            return await self._read_to_end()

    async def _read_to_end(self) -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.config.kafka.bootstrap_servers,
                                    group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed",
                                    max_partition_fetch_bytes=_FETCH_BYTES, **self.security)
        await consumer.start()
        try:
            # every topic has a partition 0: asking its end brings the topics' metadata
            await consumer.end_offsets([TopicPartition(topic, 0) for topic in self._store_of])
            partitions = [TopicPartition(topic, p) for topic in self._store_of
                          for p in sorted(consumer.partitions_for_topic(topic) or ())
                          if self._partition in (None, p)]
            if not partitions:
                raise BrokerError("the state's changelog topics are missing: the worker"
                                  " creates them at start, so they were deleted meanwhile")
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            pending = {tp for tp in partitions if self._positions.get(tp, 0) < ends[tp]}
            for tp in partitions:
                consumer.seek(tp, self._positions.get(tp, 0))
            count = 0
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=_READ_MS)
                for tp, batch in batches.items():
                    table = self.latest[self._store_of[tp.topic]]
                    for record in batch:
                        table[record.key] = record.value
                    count += len(batch)
                for tp in list(pending):
                    position = await consumer.position(tp)
                    self._positions[tp] = position
                    if position >= ends[tp]:
                        pending.discard(tp)
            self.records_read += count
            return count
        finally:
            await consumer.stop()


@dataclass
class Kept(Generic[T]):
    """A state this worker committed and handed over at a revocation. An eager rebalance
    revokes every partition, even the ones it gives straight back: taken back while
    nobody else has written to its changelogs, the state is still theirs and needs no
    restore (as Kafka Streams keeps a revoked task's store).

    ``ends``: where the holder's own committed writes ended in each changelog partition
    (:attr:`ChangelogWriter.written`). Each is followed by exactly one record, the
    marker of the transaction that wrote it; another holder's commit (every commit writes
    the meta store's offsets) adds records and a marker of its own after it."""

    state: T
    ends: dict[TopicPartition, int]


async def untouched(config: Config, security: dict[str, Any],
                    kept: Mapping[K, Kept[Any]], marker_wait: float = _MARKER_WAIT_S) -> set[K]:
    """The keys of the states in ``kept`` with only their holder's own marker after its
    writes, asked with ``ListOffsets``. The broker answers a commit before it writes the
    commit's markers, so a revocation taken straight back can find them missing: those
    ends (nothing after the writes yet) are asked again for up to ``marker_wait`` seconds.
    Not known (the broker did not answer, nothing was written, a marker still missing)
    counts as touched: that state is restored."""
    found: set[K] = set()
    waiting = {key: state for key, state in kept.items() if state.ends}
    if not waiting:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers,
                                group_id=None, enable_auto_commit=False, **security)
    deadline = time.monotonic() + marker_wait
    try:
        await consumer.start()
        while True:
            now = await consumer.end_offsets(
                [tp for state in waiting.values() for tp in state.ends])
            for key, state in list(waiting.items()):
                after = [now[tp] - end for tp, end in state.ends.items()]
                if all(n == 1 for n in after):
                    found.add(key)
                if not all(n in (0, 1) for n in after) or key in found:
                    del waiting[key]  # kept, or written after: settled either way
            if not waiting or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(_MARKER_POLL_S)
    except KafkaError:
        return found
    finally:
        await consumer.stop()


class ChangelogWriter:
    """A role's transactional producer: state, offsets (and outputs) commit together.

    ``role``: the consumer group (``<app>.<role>``) whose offsets the commits hold, and
    the transactional id, ``<app>.<role>`` or ``<app>.<role>.<partition>``; ``topics``:
    each store's changelog topic (the owner's by default), written in ``partition``
    (None: by key).
    """

    def __init__(self, config: Config, security: dict[str, Any], role: str = "owner",
                 topics: Mapping[Store, str] | None = None,
                 partition: int | None = None) -> None:
        self.config = config
        k = config.kafka
        self.group = f"{k.application_id}.{role}"
        suffix = "" if partition is None else f".{partition}"
        self.producer = AIOKafkaProducer(
            bootstrap_servers=k.bootstrap_servers, acks="all", enable_idempotence=True,
            transactional_id=f"{self.group}{suffix}", linger_ms=5,
            # a first commit writes the whole state (a worker started from a state file)
            transaction_timeout_ms=_TRANSACTION_MS,
            max_request_size=1_048_576, **security)
        self._topics = dict(topics or {s: t for t, s in owner_changelogs(config).items()})
        self._partition = partition
        self._open = False
        # where this producer's committed writes end in each changelog partition
        self.written: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Starting initialises the transactional id: any older owner is fenced from now."""
        await self.producer.start()

    async def stop(self) -> None:
        if self._open:
            await self.producer.abort_transaction()
            self._open = False
        await self.producer.stop()

    async def begin(self) -> None:
        """Open the transaction the next outputs (exactly once) and the commit go into."""
        if not self._open:
            await self.producer.begin_transaction()
            self._open = True

    async def commit(self, records: list[StateRecord], sequenced: TopicPartition,
                     next_offset: int, positions: Mapping[bytes, int] | None = None) -> int:
        """State records, the state's offset (and other ``positions`` to note in its meta
        store) and the group's offset, in one transaction; returns the bytes of state
        written."""
        await self.begin()
        metas = [StateRecord("meta", key, pack(offset))
                 for key, offset in {SEQUENCED_KEY: next_offset, **(positions or {})}.items()]
        written = 0
        try:
            batches = _Batches(self.producer, self._partition)
            for i, (store, key, value) in enumerate(records, 1):
                written += await batches.add(self._topics[store], key, value)
                if i % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the role's next batch goes on meanwhile
            for store, key, value in metas:
                await batches.add(self._topics[store], key, value)
            await self.producer.send_offsets_to_transaction({sequenced: next_offset},
                                                            self.group)
            ends = await batches.sent()
            await self.producer.commit_transaction()
            self.written.update(ends)
        except KafkaError as exc:
            # nothing of it is committed; the producer is left ready for a next owner's stop
            with contextlib.suppress(KafkaError):
                await self.producer.abort_transaction()
            raise BrokerError(f"committing the {self.group} state failed: {exc!r}") from exc
        finally:
            self._open = False
        return written


class _Batches:
    """A commit's records as one batch per topic partition filling up, each handed to the
    producer when full: a ``send`` per record cost a future and a metadata look each
    (7% of a partitioned worker's CPU in a backfill). Keys go to the partition the
    producer's own partitioner would choose (murmur2, as Kafka's), or to ``partition``."""

    def __init__(self, producer: AIOKafkaProducer, partition: int | None) -> None:
        self.producer = producer
        self.partition = partition
        self._open: dict[tuple[str, int], Any] = {}
        self._partitions: dict[str, list[int]] = {}
        self._futures: list[tuple[asyncio.Future[Any], int]] = []  # with its record count

    async def add(self, topic: str, key: bytes, value: bytes | None) -> int:
        """Add one record; returns its bytes."""
        where = (topic, self.partition if self.partition is not None
                 else _PARTITIONER(key, await self._all(topic), None))
        batch = self._open.get(where)
        if batch is None:
            batch = self._open[where] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            await self._send(where, batch)
            batch = self._open[where] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # a first record always fits
        return len(key) + len(value or b"")

    async def sent(self) -> dict[TopicPartition, int]:
        """Hand over the batches not full yet, then wait until every one is written; the
        offset after the last record written in each partition."""
        for where, batch in self._open.items():
            await self._send(where, batch)
        self._open.clear()
        written = await asyncio.gather(*(future for future, _ in self._futures))
        ends: dict[TopicPartition, int] = {}
        for meta, (_, count) in zip(written, self._futures, strict=True):
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + count)
        return ends

    async def _send(self, where: tuple[str, int], batch: Any) -> None:
        batch.close()
        count = batch.record_count()
        self._futures.append((await self.producer.send_batch(batch, where[0],
                                                             partition=where[1]), count))

    async def _all(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(
                await self.producer.partitions_for(topic))
        return partitions
