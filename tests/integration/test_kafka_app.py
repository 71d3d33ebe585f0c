"""One worker on the real local broker gives what `run` gives on the same stream: the same
identifier groups, dead letters and merges; its segment changes, audience calls and
lineage are those of the same stages run in this process (``LocalTopology``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from workers.core.partitioned.local import LocalTopology
from workers.io.cloudevents import Published, source
from workers.service.app import build_app, provision_topics
from workers.simulation.generator import simulate
from workers.testing import (
    cloudevents_problems,
    free_port,
    fresh_config,
    pipeline_over,
    produce,
    topic_messages,
    topic_records,
)

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_one_worker_matches_run_and_dead_letters_bad_input(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    lines, _, _ = simulate(300, seed=11, days=3)
    lines = [*lines, b"\xff\xfe not utf-8", b"x" * 70_000]
    config = fresh_config(unique_name, bootstrap=kafka_bootstrap, kafka={"partitions": 1},
                          metrics={"host": "127.0.0.1", "port": free_port()},
                          segmentation={"warmup_profiles": 50}, audiences={"enabled": True})
    provision_topics(config)
    k = config.kafka
    produce(k.input_topic, lines, kafka_bootstrap)

    app = build_app(config)
    groups: dict[str, Any] = {}

    async def work() -> None:
        await app.start()
        try:
            state = app.worker_state
            for _ in range(600):
                stage = state.stage
                if (stage is not None and stage.stats.events_read >= len(lines)
                        and not stage.held and state.tasks_caught_up):
                    break
                await asyncio.sleep(0.2)
            # the identity stage's groups of the profiles the partitions hold (a stopped
            # worker holds none)
            assert stage is not None
            groups.update({pid: stage.graph.identifiers(pid) for task in state.tasks.values()
                           for pid in task.work.profiles})
            await asyncio.sleep(1.0)  # let the last produce requests complete
        finally:
            await app.stop()

    asyncio.run(asyncio.wait_for(work(), timeout=180))

    expected = pipeline_over(lines, config)
    local = LocalTopology(config, k.partitions)
    local.feed_many(lines)
    local_outputs = local.flush()
    assert groups == {pid: expected.graph.identifiers(pid) for pid in expected.profiles}

    topics: dict[Published, str] = {
        "segment_change": k.segment_changes_topic, "identity_merge": k.identity_merges_topic,
        "dead_letter": k.dlq_topic, "audience": k.audiences_topic,
        "persona_card": k.personas_topic}
    for kind, topic in topics.items():
        messages = topic_messages(topic, kafka_bootstrap)
        assert messages, topic
        for record, headers in messages:
            # the personas topic holds the segment lineage records next to the cards
            of = "segment_lineage" if record.get("schema") == "segment_lineage/v1" else kind
            assert cloudevents_problems(of, record, headers, source(config)) == []
    audience = topic_records(k.audiences_topic, kafka_bootstrap)
    assert audience == [o.record for o in local_outputs if o.kind == "audience"]

    dead = topic_records(config.kafka.dlq_topic, kafka_bootstrap)
    assert len(dead) == expected.stats.events_invalid > 2
    assert {d["error"] for d in dead} >= {"not_utf8", "too_large"}
    assert all(d["topic"] == config.kafka.input_topic and d["offset"] >= 0 for d in dead)
    changes = topic_records(config.kafka.segment_changes_topic, kafka_bootstrap)
    merges = topic_records(config.kafka.identity_merges_topic, kafka_bootstrap)
    assert len(changes) == local.stats().segment_changes > 0
    assert len(merges) == expected.stats.identity_merges > 0
    # lineage records share the personas topic with the cards, keyed by their event_id
    lineage = [r for r in topic_records(config.kafka.personas_topic, kafka_bootstrap)
               if r.get("schema") == "segment_lineage/v1"]
    born = {r["segment"]["id"] for r in lineage if r["kind"] in ("birth", "split")}
    assert local.trainer.model.snapshot is not None
    assert {s.id for s in local.trainer.model.snapshot.segments} <= born
    for name, records in (("segment_change", changes), ("identity_merge", merges),
                          ("dead_letter", dead), ("segment_lineage", lineage)):
        schema = orjson.loads((SCHEMAS / f"{name}.v1.schema.json").read_bytes())
        validator = Draft202012Validator(schema)
        for record in records:
            validator.validate(record)

