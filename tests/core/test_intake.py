"""Reading where records enter (workers.core.intake): what routers do in parallel gives the
identity stage exactly what reading the bytes itself would."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from workers.config import load
from workers.core.intake import Intake, Rejected
from workers.core.pipeline import Pipeline
from workers.core.records import Origin
from workers.core.touchpoints import CarriedTouchpoint, Touchpoint
from workers.simulation.generator import simulate
from workers.simulation.hostile import hostile_records

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_a_record_reads_as_one_item_per_event() -> None:
    intake = Intake(load())
    [tp] = intake.read(simulate(1, seed=3, days=1)[0][0])
    assert isinstance(tp, Touchpoint) and tp.raw
    [rejected] = intake.read(b'{"type": "page_view"}')
    assert isinstance(rejected, Rejected) and rejected.code == "missing_field"
    [tombstone] = intake.read(None)  # a Kafka record without a value
    assert isinstance(tombstone, Rejected) and tombstone.code == "empty"


def test_a_batch_envelope_reads_as_its_members_an_unreadable_one_refused_alone() -> None:
    config = load(env={"PERSONA_STREAM_INTAKE__FORMAT": "segment"})
    intake = Intake(config)
    batch = orjson.dumps({"batch": [
        {"type": "track", "event": "Order Completed", "anonymousId": "a-1",
         "messageId": "m-1", "timestamp": "2026-03-01T10:00:00Z"},
        "not a call",
        {"type": "page", "anonymousId": "a-1", "messageId": "m-2",
         "timestamp": "2026-03-01T10:01:00Z"}]})
    items = intake.read(batch)
    assert [type(item).__name__ for item in items] == ["Touchpoint", "Rejected", "Touchpoint"]
    # each member's own bytes, for its dead letter, not the whole batch's
    assert all(len(item.raw or b"") < len(batch) for item in items)


@pytest.mark.parametrize("fmt", ["touchpoint", "segment", "snowplow", "auto"])
def test_feeding_what_was_read_gives_the_outputs_and_counts_of_feeding_the_bytes(
        fmt: str) -> None:
    env = {"PERSONA_STREAM_INTAKE__FORMAT": fmt}
    config = load(env=env)
    lines: list[bytes | None] = [*simulate(120, seed=9, days=2)[0][:1500],
                                 *hostile_records()]
    for name in ("segment/calls.jsonl", "segment/batches.jsonl",
                 "snowplow/enriched.jsonl", "snowplow/enriched.tsv"):
        lines.extend((FIXTURES / name).read_bytes().splitlines())
    raw, read = Pipeline(config), Pipeline(config)
    router = Intake(config)  # another intake than the stage's: as a router's is
    want, got = [], []
    for offset, line in enumerate(lines):
        origin = Origin("touchpoints", 0, offset)
        want.extend(raw.feed(line, origin))
        got.extend(read.feed_read(router.read(line, "touchpoints"), origin))
    want.extend(raw.flush())
    got.extend(read.flush())
    assert got == want
    assert read.summary() == raw.summary() | {
        "fields_dropped": {}, "values_coerced": {}}  # counted by the reader instead
    assert dict(router.parser.optional.dropped) == raw.summary()["fields_dropped"]
    assert dict(router.parser.optional.coerced) == raw.summary()["values_coerced"]
    assert any(o.kind == "dead_letter" for o in got)


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, a tuple no list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())  # type: ignore[attr-defined]
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))  # type: ignore[arg-type]
    return a == b


@pytest.mark.parametrize(("fmt", "config_file", "fixtures"), [
    ("touchpoint", None, ["snowplow/touchpoints.jsonl"]),
    ("segment", None, ["segment/calls.jsonl", "segment/batches.jsonl"]),
    ("snowplow", None, ["snowplow/enriched.jsonl", "snowplow/enriched.tsv"]),
    ("ga4", None, ["ga4/events.jsonl"]),
    ("csv", "csv/purchases.yaml", ["csv/purchases.csv"]),
    ("auto", None, ["segment/calls.jsonl", "snowplow/enriched.tsv", "ga4/events.jsonl"]),
])
def test_every_event_read_travels_as_json_and_reads_back_the_same(
        fmt: str, config_file: str | None, fixtures: list[str]) -> None:
    """Between workers an event's fields go as JSON (``Touchpoint.data_json``): whatever a
    format or a repair put in them, they come back equal, types and all."""
    config = load(None if config_file is None else FIXTURES / config_file,
                  env={"PERSONA_STREAM_INTAKE__FORMAT": fmt})
    intake = Intake(config)
    lines: list[bytes | None] = [*simulate(60, seed=4, days=2)[0][:600], *hostile_records()]
    for name in fixtures:
        lines.extend((FIXTURES / name).read_bytes().splitlines())
    events = [item for line in lines for item in intake.read(line, "touchpoints")
              if isinstance(item, Touchpoint)]
    assert len(events) >= 4
    for tp in events:
        carried = CarriedTouchpoint(tp.data_json(), tp.event_id, tp.ts, tp.type, tp.identity)
        assert carried.data_json() == tp.data_json()  # passed on unread: the same bytes
        assert _same(carried.data, tp.data), tp.event_id
