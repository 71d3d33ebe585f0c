"""The worker's Kafka clients: one shared producer and a consumer per role.

Every client gets the configured security. Consumers commit explicitly (after
their outputs are acknowledged), never automatically. With ``kafka.instance_id``
set (for example the pod name), each group member keeps a static id
(``<instance>-router``, ``<instance>-owner``), so a quick restart does not
rebalance the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.structs import ConsumerRecord

from workers.config import Config
from workers.io.kafka import aiokafka_security
from workers.service.rebalances import RebalanceWatch
from workers.state.wire import BUNDLE_BYTES

GroupRole = Literal["router", "owner", "profiles", "trainer"]  # consumer group <app>.<role>
# the groups whose partitions carry state: assigned sticky (see assignors)
_STATEFUL: frozenset[GroupRole] = frozenset({"owner", "profiles", "trainer"})
Batches = dict[TopicPartition, list[ConsumerRecord]]  # what getmany returns

BATCH = 5000  # records per getmany: amortises the event loop; ~0.2 s of pipeline work
BATCH_WAIT_MS = 200  # a partial batch waits this long before it is processed anyway
# how long a fetch waits for new records on a partition (aiokafka's default: 500 ms): short
# where a role answers another one (the router for the owner, a profile partition and the
# trainer for each other), so a round trip is not half a second of waiting
QUICK_FETCH_MS = 20


class Clients:
    """Creates the clients the roles share, and stops the shared ones."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.security = aiokafka_security(config)
        self._producer: AIOKafkaProducer | None = None

    async def producer(self) -> AIOKafkaProducer:
        """The one producer of this process, started on first use."""
        if self._producer is None:
            # acks=all + idempotence: an acknowledged output is durable and never doubled
            # by a producer retry; ordering per partition is kept. No linger: the roles
            # send a batch's records in one go (and internal records as bundles), so they
            # are batched anyway, while a partition waiting for a moved state or a model
            # version waited the linger at every hop (bench spread, 2 workers: 4,566 ->
            # 6,454 events/s with linger 0 instead of 5 ms; 1 worker: the same).
            # Batches that hold two bundles, not aiokafka's 16 KiB: a bundle filled a batch
            # alone, and with one request per broker in flight the next bundle to that
            # partition waited a produce round trip inside ``send`` (a router's four
            # bundles per read took three; bench.py latency at 5,000/s, router hop p99
            # 201 -> 92 ms)
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.config.kafka.bootstrap_servers, acks="all",
                enable_idempotence=True, linger_ms=0, max_request_size=1_048_576,
                max_batch_size=2 * BUNDLE_BYTES,
                **self.security)
            await self._producer.start()
        return self._producer

    def consumer(self, *topics: str, role: GroupRole | None = None,
                 **options: Any) -> AIOKafkaConsumer:
        """A consumer from the earliest offset: in the role's group, or in none (``role=None``)."""
        k = self.config.kafka
        group: dict[str, Any] = {"group_id": None}
        if role is not None:
            group = {"group_id": f"{k.application_id}.{role}",
                     "group_instance_id": f"{k.instance_id}-{role}" if k.instance_id else None,
                     "partition_assignment_strategy": (
                         assignors() if role in _STATEFUL else (RoundRobinPartitionAssignor,))}
        return AIOKafkaConsumer(*topics, bootstrap_servers=k.bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **group, **options, **self.security)

    async def stop(self) -> None:
        """Stops the producer; each role stops its own consumer when its loop ends."""
        if self._producer is not None:
            await self._producer.stop()


def assignors() -> tuple[type[Any], ...]:
    """A stateful role's group: sticky, so a worker that joins or leaves moves only the
    partitions it must (a joining worker would otherwise take the sequenced stream, the
    whole state, from its holder whenever its member id sorts first). The routers hold
    no state and their group reads the forget topic too: sticky balances the count of
    partitions over both topics, and left a worker the forget topic's one partition and
    no input, so they keep round robin, which deals out each topic's partitions in turn.

    One assignor only: aiokafka sends one JoinGroup per assignor it is given, each with
    a longer protocol list (aio-libs/aiokafka#1168); the broker took the second for
    changed metadata and began another rebalance, so static members rebalanced against
    each other, for minutes in the worker tests (the broker's log: "Updating metadata
    for member ... during CompletingRebalance" at every generation).

    aiokafka's sticky assignor keeps its member's last assignment on the class
    (aiokafka#1175): a subclass per consumer, so the roles' consumers in one process do
    not announce each other's partitions as their own.
    """
    own = type("StickyPartitionAssignor", (StickyPartitionAssignor,),
               {"member_assignment": None,
                "generation": StickyPartitionAssignor.DEFAULT_GENERATION_ID})
    return (own,)


async def read_until(stopping: asyncio.Event, consumer: AIOKafkaConsumer,
                     handle: Callable[[Batches], Awaitable[None]],
                     max_records: int | None = None, started: bool = False,
                     finish: Callable[[], Awaitable[None]] | None = None,
                     watch: RebalanceWatch | None = None) -> None:
    """Start ``consumer`` (unless ``started``), hand each ``getmany`` result to ``handle``
    until ``stopping`` is set (within one wait), then ``finish`` (a commit under way) and
    stop it: the read loop of every role. A rebalance callback that failed (``watch``,
    the consumer's listener) raises here, before the role is handed a record."""
    if not started:
        await consumer.start()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=BATCH_WAIT_MS,
                                             max_records=max_records)
            if watch is not None:
                watch.check()
            await handle(batches)
    finally:
        try:
            if finish is not None:
                await finish()
        finally:
            await consumer.stop()
