"""The router role: members of ``<app>.router`` share the input partitions and forward them.

A router reads the records (formats, validation: work done in parallel by every
router) and forwards what it read to the one-partition ``<app>-sequenced`` topic,
those of one input partition in a batch as one bundle naming their input topic,
partition and offsets (:func:`workers.service.batch.bundles`), and commits its
input offsets every ``kafka.commit_interval_seconds``, at revocation and at shutdown,
once the sequenced topic holds what they cover: not after every batch, which cost an
offset commit per batch on the broker and held the next batch back until the last
one's commit was done (a restarted or new holder forwards again what was not committed;
the identity stage drops those records by their offsets). Its client also answers
how far the input goes, which the owner's idle flush and ``/status`` compare
with the pipeline's positions, and how far behind the router is (the lag gauge).
The group also shares the one partition of ``kafka.forget_topic``: a forget request
goes into the sequenced topic under :data:`~workers.service.batch.FORGET_KEY`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)

from workers.config import Config
from workers.core.identity_stage import IdentityStage
from workers.core.intake import Intake
from workers.io.kafka import sequenced_topic
from workers.service.background import BackgroundCommit, CommitInterval
from workers.service.batch import FORGET_KEY, bundles
from workers.service.clients import BATCH, QUICK_FETCH_MS, Batches, Clients, read_until
from workers.service.logs import worker_log
from workers.service.metrics import Metrics
from workers.service.rebalances import RebalanceWatch
from workers.service.role import Role
from workers.service.state import WorkerState

# seconds between consumer-lag samples: well under the usual 15 s scrape interval, so
# every scrape sees a fresh value; cheap, as highwater marks come with each fetch
LAG_INTERVAL = 5.0
# how long the broker may hold a fetch with no new data. The router reads the forget topic
# too, mostly empty: while the input partitions' records wait to be forwarded, aiokafka
# fetches the other partitions alone, and no new input is fetched until that fetch
# returns; at aiokafka's default (500 ms) every batch could wait that long
_FETCH_WAIT_MS = QUICK_FETCH_MS


@dataclass
class Forwarded:
    """What a router sent since its last commit: the sends to acknowledge, the input
    offsets they reach, and how many records they were."""

    sent: list[asyncio.Future[Any]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    records: int = 0


class Router(Role):
    """Forwards the input partitions it is assigned; its own rebalance listener."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState,
                 metrics: Metrics) -> None:
        super().__init__(config, clients, state, metrics)
        self.sequenced = sequenced_topic(config)
        self.intake = Intake(config)  # reads the records it forwards (formats, validation)
        self.consumer: AIOKafkaConsumer | None = None
        self._commits = BackgroundCommit("a router commit failed; the input partitions'"
                                         " next holder forwards those records again")
        self._interval = CommitInterval(config.kafka.commit_interval_seconds)
        self._forwarded = Forwarded()
        # the batch loop and a revocation (the group's task) may both commit: one at a time
        self._committing = asyncio.Lock()

    def register(self, app: faust.App) -> None:
        """The router's timer: a fresh lag sample for every scrape."""
        app.timer(LAG_INTERVAL)(self.sample_consumer_lag)

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.consumer = self.clients.consumer(role="router",
                                                         fetch_max_wait_ms=_FETCH_WAIT_MS)
        watch = RebalanceWatch("router", self, self.metrics.observe_rebalance)
        consumer.subscribe([self.config.kafka.input_topic, self.config.kafka.forget_topic],
                           listener=watch)
        self._interval.restart()
        await read_until(stopping, consumer, self._forward, max_records=BATCH,
                         watch=watch,
                         finish=self._final_commit)

    async def _forward(self, batches: Batches) -> None:
        """Forward a batch (an empty one: a quiet stream) and commit what was forwarded
        when the interval is up. A refused record raises here, a batch later."""
        await self._commits.check()
        if batches:
            self.metrics.observe_hop("input", batches)
            await self._send(batches)
        if self._forwarded.sent and self._interval.due():
            await self._commit_forwarded()

    async def _send(self, batches: Batches) -> None:
        send = (await self.clients.producer()).send
        futures: list[asyncio.Future[Any]] = []
        forwarded = 0
        for tp, records in batches.items():
            if tp.topic == self.config.kafka.forget_topic:
                # forget requests join the stream where they arrive (FORGET_KEY): the owner,
                # and any replay of the sequenced topic, applies them at that place
                for r in records:
                    futures.append(await send(self.sequenced, value=r.value, key=FORGET_KEY))
                forwarded += len(records)
                continue
            for key, value in bundles(tp.topic, tp.partition, records, self.intake):
                futures.append(await send(self.sequenced, value=value, key=key))
            forwarded += len(records)
            self.metrics.observe_routed(records, self.intake)
        # only now, with no await in between: a commit taken meanwhile (a revocation)
        # covers whole batches, each with the acknowledgements of all its records
        pending = self._forwarded
        pending.sent.extend(futures)
        pending.records += forwarded
        pending.offsets.update((tp, records[-1].offset + 1)
                               for tp, records in batches.items() if records)

    async def _commit_forwarded(self) -> None:
        """Commit, in a task of its own, what was forwarded since the last commit: the
        next batches are read and sent meanwhile (commits stay in order, one at a time)."""
        async with self._committing:
            await self._commits.settled()
            if self._forwarded.sent:  # else a revocation committed it while this waited
                self._start_commit()

    def _start_commit(self) -> None:
        self._interval.restart()
        forwarded, self._forwarded = self._forwarded, Forwarded()
        self._commits.start(self._commit(forwarded))

    async def _commit(self, forwarded: Forwarded) -> None:
        consumer = self.consumer
        assert consumer is not None  # the consumer that read the batch
        await asyncio.gather(*forwarded.sent)
        self.state.routed += forwarded.records
        # a rebalance while the batch was sent took some partitions: their next holder
        # forwards those records again, and the identity stage drops them by their offsets
        held = consumer.assignment()
        mine = {tp: offset for tp, offset in forwarded.offsets.items() if tp in held}
        if not mine:
            return
        try:
            await consumer.commit(mine)  # only once the owner's input holds them
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            worker_log.info("router commit left to the partitions' next holder",
                            extra={"error": repr(exc)})

    async def _final_commit(self) -> None:
        """At revocation and shutdown: what was forwarded is committed (what a failed
        commit covered is forwarded again by the partitions' next holder; the identity
        stage drops it)."""
        async with self._committing:
            await self._commits.settled(quiet=True)
            if self._forwarded.sent and not self._commits.failed:
                self._start_commit()
                await self._commits.settled(quiet=True)

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # what was forwarded is committed while this consumer still holds the partitions:
        # their next holder then forwards none of it again
        await self._final_commit()
        topic = self.config.kafka.input_topic
        self.metrics.forget_partitions(tp.partition for tp in revoked if tp.topic == topic)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # an empty assignment counts too: a worker beyond the partition count is healthy
        self.state.router_assigned = True
        topic = self.config.kafka.input_topic
        self.state.input_partitions = sorted(tp.partition for tp in assigned
                                             if tp.topic == topic)
        worker_log.info("input partitions assigned",
                        extra={"partitions": self.state.input_partitions})

    async def fed_all_input(self, pipeline: IdentityStage) -> bool:
        """Whether ``pipeline`` has fed every input record that exists now."""
        ends = await self._input_ends()
        return bool(ends) and all(pipeline.positions.get(tp, 0) >= end
                                  for tp, end in ends.items())

    async def _input_ends(self) -> dict[tuple[str, int], int]:
        """End offset of every input partition (none before the consumer exists)."""
        consumer = self.consumer
        if consumer is None:
            return {}
        topic = self.config.kafka.input_topic
        partitions = consumer.partitions_for_topic(topic) or set()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        except KafkaError:
            return {}
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def sample_consumer_lag(self) -> None:
        consumer = self.consumer
        if consumer is None or not self.state.router_assigned:
            return  # no assignment yet: the consumer has no positions to compare
        lags = {}
        for tp in consumer.assignment():
            if tp.topic != self.config.kafka.input_topic:
                continue  # the forget requests: no partition of the input
            highwater = consumer.highwater(tp)
            done = self.metrics.next_offset(tp.partition)
            if done is None:  # nothing handled here yet: the fetch position is where we stand
                done = await consumer.position(tp)
            if highwater is not None and done is not None:
                lags[tp.partition] = highwater - done
        self.metrics.observe_consumer_lag(lags)
