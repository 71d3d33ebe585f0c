"""A state commit on the real broker (workers/service/changelog.py): every record of a
commit of many batches lands once, in the partition Kafka's own partitioner gives its
key, and a read_committed reader reads it all once the transaction has committed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import aiokafka
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2

from workers.service.changelog import SEQUENCED_KEY, ChangelogWriter, Kept, untouched
from workers.state.changelog import StateRecord
from workers.state.codec import unpack
from workers.testing import fresh_config

pytestmark = pytest.mark.integration

PARTITIONS = 4


def _read(topic: str, bootstrap: str) -> list[tuple[int, bytes, bytes | None]]:
    """Every committed record of ``topic`` as (partition, key, value)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    try:
        return [(r.partition, r.key, r.value) for r in consumer]
    finally:
        consumer.close()


def test_a_commit_of_many_batches_lands_whole_where_kafka_places_each_key(
        admin, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    config = fresh_config(unique_name, bootstrap=kafka_bootstrap)
    profiles, meta, sequenced = unique_name("profile"), unique_name("meta"), unique_name("seq")
    admin.create_topics([NewTopic(profiles, PARTITIONS, 1), NewTopic(meta, PARTITIONS, 1),
                         NewTopic(sequenced, 1, 1)])
    rnd = random.Random(5)
    # ~600 KB: dozens of 16 KB batches per partition; a few tombstones among them
    records = [StateRecord("profile", f"p_{i:016x}".encode(),
                           None if i % 97 == 0 else rnd.randbytes(rnd.randint(20, 400)))
               for i in range(3000)]

    async def commit() -> int:
        writer = ChangelogWriter(config, {}, role=unique_name("role"),
                                 topics={"profile": profiles, "meta": meta})
        await writer.start()
        try:
            return await writer.commit(records, aiokafka.TopicPartition(sequenced, 0), 1234,
                                       positions={b"other": 7})
        finally:
            await writer.stop()

    written = asyncio.run(asyncio.wait_for(commit(), timeout=120))
    assert written == sum(len(r.key) + len(r.value or b"") for r in records)
    got = _read(profiles, kafka_bootstrap)
    assert sorted((key, value) for _, key, value in got) == sorted(
        (r.key, r.value) for r in records), "every record once, tombstones too"
    for partition, key, _ in got:
        assert partition == (murmur2(key) & 0x7FFFFFFF) % PARTITIONS, key
    offsets = {key: unpack(value) for _, key, value in _read(meta, kafka_bootstrap)}
    assert offsets == {SEQUENCED_KEY: 1234, b"other": 7}


def test_a_state_handed_over_is_kept_only_while_nobody_commits_after_it(
        admin, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """untouched: after the holder's own last commit (its markers land after its
    writes) the state is kept; after a later holder's commit, or its aborted writes, it is
    not, and is restored from the changelogs instead."""
    config = fresh_config(unique_name, bootstrap=kafka_bootstrap)
    profiles, meta, sequenced = unique_name("profile"), unique_name("meta"), unique_name("seq")
    admin.create_topics([NewTopic(profiles, PARTITIONS, 1), NewTopic(meta, PARTITIONS, 1),
                         NewTopic(sequenced, 1, 1)])
    topics, role = {"profile": profiles, "meta": meta}, unique_name("role")
    group = aiokafka.TopicPartition(sequenced, 0)
    state = [StateRecord("profile", f"p{i}".encode(), b"v") for i in range(50)]

    async def holder(records: list[StateRecord], offset: int,
                     abort: bool = False) -> dict[aiokafka.TopicPartition, int]:
        writer = ChangelogWriter(config, {}, role=role, topics=topics)
        await writer.start()  # fences the one before, as a new holder's does
        try:
            if abort:
                await writer.begin()
                await writer.producer.send_and_wait(profiles, key=b"p0", value=b"aborted")
            else:
                await writer.commit(records, group, offset)
        finally:
            await writer.stop()  # an open transaction is aborted
        return writer.written

    async def scenario() -> list[bool]:
        ends = await holder(state, 10)
        # where its writes ended: the profile partitions it wrote and the meta one
        assert sum(ends.values()) == len(state) + 1
        kept = {"at 10": Kept("the state at 10", ends)}
        seen = [await untouched(config, {}, kept)]
        await holder(state[:1], 11)
        seen.append(await untouched(config, {}, kept))
        kept["at 12"] = Kept("the state at 12", await holder(state[:1], 12))
        seen.append(await untouched(config, {}, kept))
        await holder([], 0, abort=True)
        seen.append(await untouched(config, {}, kept))
        return seen

    # asked together, each state on its own; an aborted write after a state counts as
    # touched too: restoring is always safe
    assert asyncio.run(asyncio.wait_for(scenario(), timeout=120)) == [
        {"at 10"}, set(), {"at 12"}, set()]


def test_a_state_taken_back_before_its_commit_markers_land_waits_for_them(
        admin, kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    """The broker answers a commit before writing its markers, so a revocation given
    straight back can ask before they are there: untouched waits for them (the state is
    kept) and, when they never come, counts the state as touched (it is restored)."""
    config = fresh_config(unique_name, bootstrap=kafka_bootstrap)
    topic = unique_name("profile")
    admin.create_topics([NewTopic(topic, 1, 1)])

    async def scenario() -> tuple[set[str], set[str]]:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                             transactional_id=unique_name("holder"))
        await producer.start()

        async def written() -> Kept[str]:
            """One record in an open transaction: where the holder's writes end."""
            await producer.begin_transaction()
            sent = await producer.send_and_wait(topic, key=b"p0", value=b"v")
            return Kept("state", {aiokafka.TopicPartition(topic, 0): sent.offset + 1})

        try:
            asked = asyncio.create_task(untouched(config, {}, {"late": await written()},
                                                  marker_wait=30))
            await asyncio.sleep(1)  # asked while only the writes are there
            assert not asked.done()
            await producer.commit_transaction()
            kept = await asked
            never = await untouched(config, {}, {"never": await written()}, marker_wait=0.5)
            await producer.abort_transaction()
            return kept, never
        finally:
            await producer.stop()

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=120)) == ({"late"}, set())
