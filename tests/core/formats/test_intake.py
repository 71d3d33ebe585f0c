"""Formats in the pipeline: the choice of format, ``auto``, and how every event counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import Config, load
from workers.core.formats import sniff
from workers.core.pipeline import Pipeline
from workers.core.records import Origin

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# each fixture file of valid records, and the format it is written in
VALID = {"segment/calls.jsonl": "segment", "segment/batches.jsonl": "segment",
         "snowplow/enriched.tsv": "snowplow", "snowplow/enriched.jsonl": "snowplow",
         "ga4/events.jsonl": "ga4", "snowplow/touchpoints.jsonl": "touchpoint"}


def lines(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


def fed(records: list[bytes | None], config: Config | None = None, fmt: Any = None,
        origin: Origin | None = None) -> Pipeline:
    pipeline = Pipeline(config or load())
    for record in records:
        pipeline.feed(record, origin, fmt)
    pipeline.flush()
    return pipeline


@pytest.mark.parametrize(("name", "fmt"), VALID.items())
def test_auto_tells_each_format_from_its_records(name: str, fmt: str) -> None:
    assert {sniff(line) for line in lines(name)} == {fmt}
    told, auto = fed(lines(name), fmt=fmt), fed(lines(name), fmt="auto")
    assert auto.summary() == told.summary()
    assert told.stats.events_invalid == 0 and told.stats.events_valid > 0


def test_the_configured_format_and_a_format_per_topic() -> None:
    calls = lines("segment/calls.jsonl")
    everywhere = fed(calls, load(env={"PERSONA_STREAM_INTAKE__FORMAT": "segment"}))
    per_topic = fed(calls, load(env={"PERSONA_STREAM_INTAKE__FORMATS": "{web-events: segment}"}),
                    origin=None)
    assert everywhere.stats.events_valid == len(calls)
    assert per_topic.stats.events_invalid == len(calls)  # no topic: the default, touchpoint
    config = load(env={"PERSONA_STREAM_INTAKE__FORMATS": "{web-events: segment}"})
    pipeline = Pipeline(config)
    for offset, call in enumerate(calls):
        pipeline.feed(call, Origin("web-events", 0, offset))
    pipeline.flush()
    assert pipeline.summary() == {**everywhere.summary(),
                                  "events_read": pipeline.stats.events_read}


def test_each_member_of_a_batch_counts_and_a_bad_one_is_its_own_dead_letter() -> None:
    good = orjson.loads(lines("segment/batches.jsonl")[0])["batch"]
    batch = orjson.dumps({"batch": [*good, "not a call", {"type": "track"}]})
    pipeline = Pipeline(load())
    outputs = pipeline.feed(batch, fmt="segment") + pipeline.flush()
    s = pipeline.stats
    assert s.events_read == len(good) + 2
    assert s.events_valid == len(good) and s.events_invalid == 2
    dead = [o.record for o in outputs if o.kind == "dead_letter"]
    assert len(dead) == 2 and all(len(d["raw"]) < len(batch) for d in dead)


def test_a_csv_header_is_no_event_but_is_counted() -> None:
    config = load(FIXTURES / "csv" / "purchases.yaml",
                  env={"PERSONA_STREAM_INTAKE__CSV__HEADER": "true"})
    rows = lines("csv/purchases.csv")
    header = ";".join(config.intake.csv.fields).encode()
    pipeline = fed([header, *rows], config, fmt="csv")
    summary = pipeline.summary()
    assert summary["records_without_events"] == 1
    assert summary["events_read"] == len(rows) == summary["events_valid"] \
        + summary["events_invalid"] + summary["events_duplicate"]


def test_a_revenue_sent_as_a_string_counts_and_says_so() -> None:
    call = {"type": "track", "event": "Order Completed", "messageId": "m-1",
            "userId": "u-1", "timestamp": "2025-02-07T08:00:00+0000",
            "properties": {"revenue": "22.50"}}
    pipeline = fed([orjson.dumps(call)], fmt="segment")
    (state,) = pipeline.profiles.values()
    assert state.revenue == 22.5 and state.orders == 1
    assert pipeline.summary()["values_coerced"] == {"properties.revenue": 1}


def test_an_adapter_that_trips_over_a_record_makes_a_dead_letter_not_a_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.core.formats.segment import SegmentAdapter

    def trips(self: SegmentAdapter, raw: bytes) -> Any:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(SegmentAdapter, "events", trips)
    pipeline = Pipeline(load())
    outputs = pipeline.feed(lines("segment/calls.jsonl")[0], fmt="segment")
    (dead,) = [o.record for o in outputs if o.kind == "dead_letter"]
    assert dead["error"] == "unreadable" and "SegmentAdapter" in dead["detail"]
    assert pipeline.stats.events_read == pipeline.stats.events_invalid == 1
