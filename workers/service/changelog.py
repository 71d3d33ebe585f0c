"""The owner's state on Kafka: one compacted changelog topic per store, written in transactions.

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
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from workers.config import Config
from workers.errors import BrokerError
from workers.io.kafka import changelog_topic
from workers.state.changelog import STORES, StateRecord, Store
from workers.state.codec import pack, unpack

SEQUENCED_KEY = b"sequenced"  # meta store: the first sequenced offset the state has not seen
_FETCH_BYTES = 8 * 1_048_576
_READ_MS = 500
_TRANSACTION_MS = 300_000  # under the broker's transaction.max.timeout.ms (15 min)
# a send that finds room in the producer's buffer does not give the event loop back: a
# commit of thousands of keys does so every this many, so batches are not held up by it
_YIELD_EVERY = 256


class ChangelogCopy:
    """The newest record of every key of the changelogs, as far as read so far."""

    def __init__(self, config: Config, security: dict[str, Any]) -> None:
        self.config = config
        self.security = security
        self.latest: dict[Store, dict[bytes, bytes | None]] = {s: {} for s in STORES}
        self._store_of = {changelog_topic(config, s): s for s in STORES}
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
        value = self.latest["meta"].get(SEQUENCED_KEY)
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
                          for p in sorted(consumer.partitions_for_topic(topic) or ())]
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


class ChangelogWriter:
    """The owner's transactional producer: state, offsets (and outputs) commit together."""

    def __init__(self, config: Config, security: dict[str, Any]) -> None:
        self.config = config
        k = config.kafka
        self.group = f"{k.application_id}.owner"
        self.producer = AIOKafkaProducer(
            bootstrap_servers=k.bootstrap_servers, acks="all", enable_idempotence=True,
            transactional_id=f"{k.application_id}.owner", linger_ms=5,
            # a first commit writes the whole state (a worker started from a state file)
            transaction_timeout_ms=_TRANSACTION_MS,
            max_request_size=1_048_576, **security)
        self._topics = {s: changelog_topic(config, s) for s in STORES}
        self._open = False

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
                     next_offset: int) -> int:
        """State records, the state's offset and the group's, in one transaction; returns
        the bytes of state written."""
        await self.begin()
        send = self.producer.send
        topics = self._topics
        written = 0
        try:
            futures = []
            for i, (store, key, value) in enumerate(records, 1):
                futures.append(await send(topics[store], key=key, value=value))
                written += len(key) + len(value or b"")
                if i % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the owner's next batch goes on meanwhile
            futures.append(await send(topics["meta"], key=SEQUENCED_KEY,
                                      value=pack(next_offset)))
            await self.producer.send_offsets_to_transaction({sequenced: next_offset},
                                                            self.group)
            await asyncio.gather(*futures)
            await self.producer.commit_transaction()
        except KafkaError as exc:
            raise BrokerError(f"committing the owner's state failed: {exc!r}") from exc
        finally:
            self._open = False
        return written
