"""One worker on the real local broker gives what `run` gives on the same stream."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator
from kafka import KafkaConsumer, KafkaProducer

from workers.config import load
from workers.core.pipeline import Pipeline
from workers.service.app import build_app, provision_topics
from workers.simulation.generator import simulate

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drain(bootstrap: str, topic: str) -> list[dict]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, enable_auto_commit=False)
    records = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    return records


def test_one_worker_matches_run_and_dead_letters_bad_input(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    lines, _, _ = simulate(300, seed=11, days=3)
    lines = [*lines, b"\xff\xfe not utf-8", b"x" * 70_000]
    base = load()
    config = dataclasses.replace(
        base,
        kafka=dataclasses.replace(
            base.kafka, bootstrap_servers=kafka_bootstrap, application_id=unique_name("app"),
            input_topic=unique_name("touchpoints"), dlq_topic=unique_name("dlq"),
            segment_changes_topic=unique_name("changes"),
            identity_merges_topic=unique_name("merges"), personas_topic=unique_name("personas"),
            partitions=1),
        metrics=dataclasses.replace(base.metrics, host="127.0.0.1", port=_free_port()),
        segmentation=dataclasses.replace(base.segmentation, warmup_profiles=50))
    provision_topics(config)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=200_000)
    for line in lines:
        producer.send(config.kafka.input_topic, value=line)
    producer.flush()
    producer.close()

    app = build_app(config)

    async def work() -> None:
        await app.start()
        try:
            for _ in range(600):
                pipeline = app.worker_state.pipeline
                if (pipeline is not None and pipeline.stats.events_read >= len(lines)
                        and not pipeline.held):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # let the last produce requests complete
        finally:
            await app.stop()

    asyncio.run(asyncio.wait_for(work(), timeout=180))

    expected = Pipeline(config)
    for line in lines:
        expected.feed(line)
    expected.flush()
    worker = app.worker_state.pipeline
    groups = {pid: worker.graph.identifiers(pid) for pid in worker.profiles}
    assert groups == {pid: expected.graph.identifiers(pid) for pid in expected.profiles}

    dead = _drain(kafka_bootstrap, config.kafka.dlq_topic)
    assert len(dead) == expected.stats.events_invalid > 2
    assert {d["error"] for d in dead} >= {"not_utf8", "too_large"}
    assert all(d["topic"] == config.kafka.input_topic and d["offset"] >= 0 for d in dead)
    changes = _drain(kafka_bootstrap, config.kafka.segment_changes_topic)
    merges = _drain(kafka_bootstrap, config.kafka.identity_merges_topic)
    assert len(changes) == expected.stats.segment_changes > 0
    assert len(merges) == expected.stats.identity_merges > 0
    for name, records in (("segment_change", changes), ("identity_merge", merges),
                          ("dead_letter", dead)):
        schema = orjson.loads((SCHEMAS / f"{name}.v1.schema.json").read_bytes())
        validator = Draft202012Validator(schema)
        for record in records:
            validator.validate(record)
