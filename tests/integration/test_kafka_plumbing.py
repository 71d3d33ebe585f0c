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
