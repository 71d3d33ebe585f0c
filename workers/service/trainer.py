"""The trainer: the one model every profile partition uses.

The member of ``<app>.trainer`` holding the one partition of ``<app>-samples``
runs the :class:`~workers.core.partitioned.trainer.Trainer`: it learns each tick
once every profile partition has marked it, sends a version for every tick to
``<app>-versions`` and each new version's lineage records to the personas
topic. Its state is in ``<app>-trainer-changelog``, committed as the owner's is
(one transaction with its offset, transactional id ``<app>.trainer``); when it
dies, the group gives the partition to another worker, which restores it and
reads on. Versions sent again after a restart are the same, and tasks ignore
the ones they have.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.config import Config
from workers.core.partitioned.records import Mark, Sample
from workers.core.partitioned.trainer import Trainer
from workers.io.kafka import changelog_topic, samples_topic, versions_topic
from workers.service.background import CommitInterval
from workers.service.changelog import ChangelogCopy, ChangelogWriter
from workers.service.clients import BATCH, QUICK_FETCH_MS, Batches, Clients, read_until
from workers.service.emitter import Emitter, role_emitter
from workers.service.logs import worker_log
from workers.service.metrics import Metrics, counts_of
from workers.service.rebalances import RebalanceWatch
from workers.service.role import Role
from workers.service.state import WorkerState
from workers.state.changelog import StateWriter, Store, restore
from workers.state.wire import decode, encode

_SOURCE = "trainer"  # whose counts the metrics advance by


class TrainerRole(Role):
    """Runs the trainer while this worker holds ``<app>-samples``."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState,
                 metrics: Metrics) -> None:
        super().__init__(config, clients, state, metrics)
        self.partition = TopicPartition(samples_topic(config), 0)
        self.versions = versions_topic(config)
        self._interval = CommitInterval(config.kafka.commit_interval_seconds)
        self.exactly_once = config.kafka.processing_guarantee == "exactly_once"
        self._awaited = False  # versions sent, not committed yet (exactly once)
        self.trainer: Trainer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.shared: Emitter | None = None  # the process's, for at least once
        self.emitter: Emitter | None = None  # the one of the trainer's records
        self._writer: ChangelogWriter | None = None
        self._changes: StateWriter | None = None
        self._next_offset = 0
        self._lock = asyncio.Lock()

    async def run(self, stopping: asyncio.Event) -> None:
        self.shared = Emitter(self.config, await self.clients.producer())
        consumer = self.consumer = self.clients.consumer(
            role="trainer", isolation_level="read_committed", fetch_max_wait_ms=QUICK_FETCH_MS)
        watch = RebalanceWatch("trainer", self, self.metrics.observe_rebalance)
        consumer.subscribe([self.partition.topic], listener=watch)
        self._interval.restart()
        await read_until(stopping, consumer, self._process, max_records=BATCH,
                         watch=watch)

    async def _process(self, batches: Batches) -> None:
        async with self._lock:
            trainer, emitter = self.trainer, self.emitter
            if trainer is not None and emitter is not None:
                for records in batches.values():
                    for record in records:
                        if record.offset < self._next_offset:
                            continue  # fetched before the seek to where the state stands
                        for item in decode(record.value):
                            assert isinstance(item, Sample | Mark)
                            trainer.offer(item)
                        self._next_offset = record.offset + 1
                outputs = trainer.take_outputs()
                await emitter.emit(outputs)
                self.metrics.observe_stats(_SOURCE, trainer.stats, outputs)
                versions = encode(trainer.take_versions())
                for value in versions:
                    await emitter.send(self.versions, value, partition=0)
                # exactly once, the tasks see versions only once committed: commit at once
                self._awaited |= self.exactly_once and bool(versions)
                self.state.trainer_learned_through = trainer.learned_through
            if self._awaited or self._interval.due():
                await self._commit()

    async def _commit(self) -> None:
        emitter, writer, changes = self.emitter, self._writer, self._changes
        if emitter is None or writer is None or changes is None or emitter.failed:
            return
        self._awaited = False
        self._interval.restart()
        await emitter.acknowledged()
        await writer.commit(changes.changes(), self.partition, self._next_offset)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if not assigned:
            return
        assert self.consumer is not None
        topics: dict[str, Store] = {changelog_topic(self.config, "trainer"): "meta"}
        async with self._lock:
            self._writer = ChangelogWriter(self.config, self.clients.security, role="trainer",
                                           topics={"meta": changelog_topic(self.config,
                                                                           "trainer")})
            await self._writer.start()  # fences a previous trainer
            assert self.shared is not None
            self.emitter = role_emitter(self.config, self.shared, self._writer)
            copy = ChangelogCopy(self.config, self.clients.security, topics)
            read = await copy.catch_up()
            trainer = Trainer(self.config, self.config.kafka.partitions)
            if not copy.empty:
                await asyncio.to_thread(restore, trainer, copy.records(),
                                        "the trainer's changelog")
            self.trainer, self._changes = trainer, StateWriter(trainer, saved=not copy.empty)
            self.metrics.start_source(_SOURCE, counts_of(trainer.stats))
            self._next_offset = copy.next_offset
            self.consumer.seek(self.partition, self._next_offset)
            self.state.trainer = True
            self.state.trainer_learned_through = trainer.learned_through
        worker_log.info("trainer", extra={"from_offset": self._next_offset,
                                          "changelog_records_read": read})

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.close()

    async def close(self) -> None:
        async with self._lock:
            if self.trainer is not None:
                emitter = self.emitter
                if emitter is None or not emitter.failed:
                    await self._commit()
            if self._writer is not None:
                await self._writer.stop()
            self.trainer, self._writer, self._changes = None, None, None
            self.state.trainer = False
            self.metrics.forget_source(_SOURCE)
