"""The owner's batch step without a broker: fake sequenced records in, outputs out."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import orjson
import pytest

from workers.config import Config, load
from workers.core.forget import ForgetRequest, request_hashes
from workers.core.intake import Intake
from workers.core.pipeline import Pipeline
from workers.core.records import Origin, Output
from workers.service.batch import (
    BUNDLE_BYTES,
    BUNDLE_PREFIX,
    FLUSH_KEY,
    FORGET_KEY,
    bundles,
    origin_of,
    process_batch,
)
from workers.simulation.generator import simulate
from workers.state.codec import pack, unpack

INPUT = "touchpoints"
INTAKE = Intake(load())


@dataclasses.dataclass(frozen=True)
class Record:
    """A sequenced record as the owner reads it."""

    key: bytes | None
    value: bytes
    offset: int


def forwarded(lines: list[bytes], first_input: int = 0, first_offset: int = 0,
              partition: int = 0) -> list[Record]:
    """``lines`` as routers forwarded them before bundles, a record each: input position in
    the key, new sequenced offsets."""
    return [Record(f"{INPUT}:{partition}:{first_input + i}".encode(), line, first_offset + i)
            for i, line in enumerate(lines)]


@dataclasses.dataclass(frozen=True)
class Input:
    value: bytes | None
    offset: int


def bundled(lines: list[bytes | None], first_input: int = 0, first_offset: int = 0,
            partition: int = 0, per_batch: int = 7) -> list[Record]:
    """``lines`` as a router forwards them: the records of each batch it reads (of
    ``per_batch`` here), read, as bundles, new sequenced offsets."""
    records = [Input(line, first_input + i) for i, line in enumerate(lines)]
    out: list[Record] = []
    for start in range(0, len(records), per_batch):
        for key, value in bundles(INPUT, partition, records[start:start + per_batch], INTAKE):
            out.append(Record(key, value, first_offset + len(out)))
    return out


def unread_bundles(lines: list[bytes], first_input: int = 0) -> list[Record]:
    """``lines`` as routers of an earlier release forwarded them: bundles of their bytes."""
    key = BUNDLE_PREFIX + f"{INPUT}:0".encode()
    return [Record(key, msgpack.packb([list(range(first_input + start, first_input + start
                                                  + len(lines[start:start + 7]))),
                                       lines[start:start + 7]]), start // 7)
            for start in range(0, len(lines), 7)]


def flush_marker(offset: int) -> Record:
    return Record(FLUSH_KEY, b"", offset)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return simulate(150, seed=5, days=2)[0]


@pytest.fixture(scope="module")
def config() -> Config:
    base = load()  # a model early on, so the stream has segment changes to compare
    return dataclasses.replace(base, segmentation=dataclasses.replace(
        base.segmentation, warmup_profiles=50))


@pytest.mark.parametrize("forward", [bundled, unread_bundles, forwarded])
def test_outputs_equal_feeding_the_pipeline_directly(lines: list[bytes], config: Config,
                                                     forward: Any) -> None:
    expected = Pipeline(config)
    want: list[Output] = []
    for i, line in enumerate(lines):
        want.extend(expected.feed(line, Origin(INPUT, 0, i)))
    want.extend(expected.flush())

    pipeline = Pipeline(config)
    sequenced = forward(lines)
    records = [*sequenced, flush_marker(len(sequenced))]
    got: list[Output] = []
    for start in range(0, len(records), 97):  # batch edges fall anywhere
        got.extend(process_batch(pipeline, records[start:start + 97]).outputs)

    assert got == want
    assert pipeline.summary() == expected.summary()
    assert any(o.kind == "segment_change" for o in got)


def test_a_flush_marker_flushes_the_held_events(lines: list[bytes], config: Config) -> None:
    head = lines[:400]  # its held events include a merge: the flush has an output to show
    pipeline = Pipeline(config)
    first = process_batch(pipeline, forwarded(head))
    assert pipeline.held > 0  # inside the reorder window: waiting for later events
    twin = Pipeline(config)
    for record in forwarded(head):
        twin.feed(record.value, origin_of(record.key))

    done = process_batch(pipeline, [flush_marker(len(head))])

    assert pipeline.held == 0
    assert done.outputs == twin.flush() != []
    assert done.fed == 0  # a marker is not an event
    assert first.fed == len(head)


def test_the_next_offset_is_the_last_offset_plus_one(lines: list[bytes]) -> None:
    pipeline = Pipeline(load())
    assert process_batch(pipeline, forwarded(lines[:10], first_offset=500)).next_offset == 510
    assert process_batch(pipeline, [flush_marker(510)]).next_offset == 511
    # getmany's grouping (one list per partition) flattened: still the last record
    grouped = {("sequenced", 0): forwarded(lines[10:13], 10, 511)}
    done = process_batch(pipeline, (r for rs in grouped.values() for r in rs))
    assert done.next_offset == 514
    with pytest.raises(ValueError):
        process_batch(pipeline, [])


def test_records_forwarded_twice_from_an_input_partition_are_dropped(
        lines: list[bytes]) -> None:
    pipeline = Pipeline(load())
    process_batch(pipeline, forwarded(lines[:40]))
    stats = dataclasses.replace(pipeline.stats)
    # after a rebalance a router re-forwards what it had not committed: same input
    # offsets, new sequenced offsets
    again = process_batch(pipeline, forwarded(lines[30:40], first_input=30, first_offset=40))
    assert again.outputs == []
    assert again.next_offset == 50
    assert pipeline.stats.events_duplicate == stats.events_duplicate + 10
    assert pipeline.stats.events_valid == stats.events_valid
    # the same bytes from another input partition are new records there (de-dup by
    # event id then decides), so a partition's position never hides another's
    other = process_batch(pipeline, forwarded(lines[40:45], first_input=30, first_offset=50,
                                              partition=1))
    assert pipeline.stats.events_read == stats.events_read + 15
    assert other.fed == 5
    assert pipeline.positions == {(INPUT, 0): 40, (INPUT, 1): 35}


def test_a_bundle_forwarded_twice_is_dropped_record_by_record(lines: list[bytes]) -> None:
    pipeline = Pipeline(load())
    process_batch(pipeline, bundled(lines[:40]))
    stats = dataclasses.replace(pipeline.stats)
    # re-forwarded after a rebalance, cut into other bundles: 10 again, 5 new
    again = process_batch(pipeline, bundled(lines[30:45], first_input=30, first_offset=40,
                                            per_batch=4))
    assert again.fed == 15 and again.next_offset == 44
    assert pipeline.stats.events_duplicate == stats.events_duplicate + 10
    assert pipeline.stats.events_read == stats.events_read + 15
    assert pipeline.positions == {(INPUT, 0): 45}


def test_a_bundle_is_cut_before_it_grows_large() -> None:
    big = [b"x" * 50_000] * 7
    values = list(bundles(INPUT, 0, [Input(line, i) for i, line in enumerate(big)], INTAKE))
    assert len(values) == 3
    assert all(len(value) < BUNDLE_BYTES + 100_100 for _, value in values)
    offsets = [o for _, value in values for o in unpack(value)[0]]
    assert offsets == list(range(7))


def test_a_damaged_bundle_is_a_dead_letter_and_the_stream_goes_on(lines: list[bytes]) -> None:
    pipeline = Pipeline(load())
    key = bundled(lines[:1])[0].key
    done = process_batch(pipeline, [Record(key, b"\x92\x91\x01", 0),  # 1 offset, no record
                                    Record(key, pack([[0], [[["an event of one field"]]]]), 1),
                                    Record(b"\x00in:nopartition", msgpack.packb([[], []]), 2),
                                    *bundled(lines[:3], first_offset=3)])
    assert [o.kind for o in done.outputs][:3] == ["dead_letter"] * 3
    assert done.fed == 3 and done.next_offset == 4


def test_a_dead_letter_names_its_input_position_from_the_key() -> None:
    pipeline = Pipeline(load())
    done = process_batch(pipeline, [Record(b"in:put:3:41", b"\xff not utf-8", 7),
                                    Record(None, b"{", 8)])
    letters = [o.record for o in done.outputs]
    assert [o.kind for o in done.outputs] == ["dead_letter", "dead_letter"]
    assert (letters[0]["topic"], letters[0]["partition"], letters[0]["offset"]) == (
        "in:put", 3, 41)  # a topic name may hold a colon: the key is split from the right
    assert "topic" not in letters[1]  # no key, no origin
    assert origin_of(b"") is None
    [letter] = process_batch(pipeline, bundled([b"{", None], first_input=41,
                                               partition=3)).outputs[1:]
    assert (letter.record["topic"], letter.record["partition"], letter.record["offset"]) == (
        INPUT, 3, 42)  # the tombstone, second of its bundle



def forget_marker(offset: int, *keys: str, request_id: str = "r-1") -> Record:
    """A forget request as a router forwards it from ``kafka.forget_topic``."""
    request = ForgetRequest(request_id, request_hashes(keys, load()), "2026-02-01T00:00:00Z",
                            "test")
    return Record(FORGET_KEY, request.record(), offset)


def test_a_forget_request_applies_at_its_place_in_the_sequence(lines: list[bytes],
                                                               config: Config) -> None:
    """The owner and a replay of the sequenced topic forget at the same place: events
    before the marker were processed, the person's after it are dropped."""
    email = next(orjson.loads(line)["identity"]["email"] for line in lines[:300]
                 if b'"email"' in line)
    records = [*forwarded(lines[:300]), forget_marker(300, f"email:{email}"),
               *forwarded(lines[300:], first_input=300, first_offset=301)]
    runs = []
    for size in (len(records), 53):  # one batch, and batch edges anywhere
        pipeline = Pipeline(config)
        outputs = [out for start in range(0, len(records), size)
                   for out in process_batch(pipeline, records[start:start + size]).outputs]
        runs.append((outputs, pipeline.summary()))
    (outputs, summary), (again, again_summary) = runs
    assert outputs == again and summary == again_summary
    forgets = [out for out in outputs if out.kind == "forget"]
    assert len(forgets) == 1 and summary["profiles_forgotten"] == 1
    after = [out for out in outputs[outputs.index(forgets[0]) + 1:]
             if out.key == forgets[0].key]
    assert after == []  # nothing about the person follows the forget
    done = process_batch(Pipeline(config), [forget_marker(0, "nobody@example.com"),
                                            Record(FORGET_KEY, b"{", 1)])
    assert [o.record.get("error") for o in done.outputs] == ["bad_forget_request"]
    assert done.fed == 0  # markers are not events
