"""The plumbing every worker relies on, against the real local broker:
kafka-python admin and producer, aiokafka consumer, a faust agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from kafka.admin import NewTopic

from workers.testing import Record, produce

pytestmark = pytest.mark.integration

MESSAGES = 40


def _produce(bootstrap: str, topic: str) -> None:
    produce(topic, [Record(f"v{i}".encode(), f"k{i % 7}".encode()) for i in range(MESSAGES)],
            bootstrap)


def test_admin_creates_partitioned_topic_and_aiokafka_reads_what_kafka_python_wrote(
        admin, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = unique_name("plumbing")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    described = admin.describe_topics([topic])[0]
    assert len(described["partitions"]) == 3
    _produce(kafka_bootstrap, topic)

    async def consume() -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                    group_id=unique_name("g"), auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < MESSAGES:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend(r.value for r in records)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(asyncio.wait_for(consume(), timeout=60))
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(MESSAGES))


def test_faust_agent_reads_the_topic(admin, kafka_bootstrap: str,
                                     unique_name: Callable[[str], str]) -> None:
    import faust

    topic_name = unique_name("faust-plumbing")
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
    _produce(kafka_bootstrap, topic_name)
    app = faust.App(unique_name("faust-app"), broker=f"kafka://{kafka_bootstrap}",
                    store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest")
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    seen: list[bytes] = []

    @app.agent(topic)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            seen.append(value)

    async def run() -> None:
        await app.start()
        try:
            for _ in range(240):
                if len(seen) >= MESSAGES:
                    break
                await asyncio.sleep(0.25)
        finally:
            await app.stop()

    asyncio.run(run())
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(MESSAGES))


def test_three_workers_joining_a_role_group_together_rebalance_once(
        admin, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """The stateful role groups' consumers, three static members started at once, settle
    within three generations and stay there: with round robin offered as a second protocol,
    aiokafka's second JoinGroup per join looked like changed metadata to the broker and
    the members rebalanced against each other for minutes (hundreds of generations)."""
    import dataclasses

    from aiokafka.abc import ConsumerRebalanceListener

    from workers.config import load_config
    from workers.service.clients import Clients

    topic, application = unique_name("role-group"), unique_name("app")
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    base = load_config(None)

    class Held(ConsumerRebalanceListener):
        def __init__(self) -> None:
            self.partitions: set[int] = set()
            self.revocations = 0

        async def on_partitions_revoked(self, revoked: object) -> None:
            self.revocations += 1

        async def on_partitions_assigned(self, assigned: set) -> None:  # type: ignore[type-arg]
            self.partitions = {tp.partition for tp in assigned}

    async def join() -> tuple[list[int], list[int]]:
        consumers, held = [], []
        for i in range(3):
            kafka = dataclasses.replace(base.kafka, bootstrap_servers=kafka_bootstrap,
                                        application_id=application, instance_id=f"w{i}")
            consumer = Clients(dataclasses.replace(base, kafka=kafka)).consumer(role="profiles")
            listener = Held()
            consumer.subscribe([topic], listener=listener)
            consumers.append(consumer)
            held.append(listener)
        await asyncio.gather(*(c.start() for c in consumers))
        try:
            while sorted(p for h in held for p in h.partitions) != list(range(6)):
                await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))
            for _ in range(60):  # six seconds more: no further rebalance
                await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))
            # the generation the broker gave: one per completed rebalance
            return ([c._coordinator.generation for c in consumers],
                    [h.revocations for h in held])
        finally:
            await asyncio.gather(*(c.stop() for c in consumers))

    generations, revocations = asyncio.run(asyncio.wait_for(join(), timeout=60))
    assert max(generations) <= 3 and max(revocations) <= 3, (generations, revocations)
