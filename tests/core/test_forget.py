"""Forgetting a person (GDPR article 17) in the core: what goes, what is kept, and that no
later event or backfill brings the person back (no broker)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from workers.config import Config, Secret, load
from workers.core.forget import ForgetRequest, parse_request, request_hashes
from workers.core.pipeline import Pipeline
from workers.core.records import Output
from workers.errors import InvalidEvent
from workers.state.changelog import StateWriter
from workers.state.saved import dump_state, restore_state
from workers.testing import (
    lines_naming,
    personal_stream,
    segmented_person,
    small_stream_config,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WHEN = "2026-02-01T09:00:00Z"


@cache
def stream() -> list[bytes]:
    return personal_stream(300, seed=11)[0]


def configured(pseudonymise: bool = False) -> Config:
    base = small_stream_config(load(env={}))  # 300 people: a warm-up they reach
    return dataclasses.replace(base, identity=dataclasses.replace(
        base.identity, pseudonymise=pseudonymise,
        pseudonymise_key=Secret("a key for tests") if pseudonymise else None))


def fed(config: Config, lines: list[bytes]) -> tuple[Pipeline, list[Output]]:
    pipeline = Pipeline(config)
    outputs = [out for line in lines for out in pipeline.feed(line)] + pipeline.flush()
    return pipeline, outputs


def request(pipeline: Pipeline, *keys: str, request_id: str = "r-1") -> ForgetRequest:
    return ForgetRequest(request_id, request_hashes(keys, pipeline.config), WHEN,
                         "asked by the person")


@cache
def forgotten_live() -> tuple[Pipeline, str, dict[str, list[str]], list[Output]]:
    """The whole stream, then the forgetting of one segmented person by their email."""
    pipeline, _ = fed(configured(), stream())
    pid, ids = segmented_person(pipeline)
    outputs = pipeline.forget(request(pipeline, f"email:{ids['email'][0]}"))
    return pipeline, pid, ids, outputs


def test_the_whole_person_goes_and_subscribers_are_told() -> None:
    pipeline, pid, ids, outputs = forgotten_live()
    assert pid not in pipeline.profiles
    assert all(pipeline.graph.owner(t, v) is None for t, vs in ids.items() for v in vs)
    # segment sizes follow: each still counts exactly the profiles in it
    held = Counter(s.segment for s in pipeline.profiles.values() if s.segment is not None)
    assert {sid: n for sid, n in pipeline.sizes.items() if n} == dict(held)
    assert [out.kind for out in outputs] == ["forget"]
    record: Any = outputs[0].record
    assert outputs[0].key == pid
    schema = json.loads((SCHEMAS / "forget.v1.schema.json").read_text())
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(
        {**record, "emitted_at": WHEN})
    assert record["previous_segment"] is not None
    assert record["identifiers"] == {t: sorted(hashlib.sha256(v.encode()).hexdigest()
                                               for v in vs) for t, vs in sorted(ids.items())}
    text = orjson.dumps(record).decode()
    assert not [v for vs in ids.values() for v in vs if v in text]  # no raw value
    # every identifier of the group is on the forget list, not only the one asked for
    assert {pipeline.forgotten.hash(t, v) for t, vs in ids.items() for v in vs} <= set(
        pipeline.forgotten.entries)
    assert pipeline.summary()["profiles_forgotten"] == 1


def test_the_same_request_again_forgets_nothing_more() -> None:
    pipeline, _, ids, _ = forgotten_live()
    again = request(pipeline, f"email:{ids['email'][0]}", request_id="r-again")
    profiles = len(pipeline.profiles)
    assert pipeline.forget(again) == [] and len(pipeline.profiles) == profiles


def test_a_backfill_of_the_persons_history_does_not_bring_them_back() -> None:
    pipeline, _, ids, _ = forgotten_live()
    theirs = lines_naming(ids, stream())
    before = pipeline.summary()
    outputs = [out for line in theirs for out in pipeline.feed(line)] + pipeline.flush()
    after = pipeline.summary()
    assert outputs == []  # no profile, no change, and no dead letter holding the raw record
    assert after["events_forgotten"] - before["events_forgotten"] == len(theirs)
    assert after["events_invalid"] == before["events_invalid"]
    assert after["events_read"] == (after["events_valid"] + after["events_invalid"]
                                    + after["events_duplicate"] + after["events_forgotten"])
    assert all(pipeline.graph.owner(t, v) is None for t, vs in ids.items() for v in vs)


def test_a_replay_under_the_forget_list_equals_history_without_the_person() -> None:
    """What ``replay`` does: the forget list first, then the whole history; the outputs
    are those of a history that never held the person's events."""
    live, pid, ids, _ = forgotten_live()
    theirs = set(lines_naming(ids, stream()))
    replay = Pipeline(configured())
    replay.forgotten.add(live.forgotten.entries, WHEN)
    outputs = [out for line in stream() for out in replay.feed(line)] + replay.flush()
    _, without = fed(configured(), [line for line in stream() if line not in theirs])
    assert outputs == without
    assert pid not in replay.profiles
    assert replay.summary()["events_forgotten"] == len(theirs)


def test_forget_list_and_tombstones_survive_the_state() -> None:
    pipeline, _ = fed(configured(), stream())
    writer = StateWriter(pipeline, saved=True)
    pid, ids = segmented_person(pipeline)
    pipeline.forget(request(pipeline, ids["email"][0]))  # a bare value: any type
    records = writer.changes()
    gone = {(r.store, r.key.decode()) for r in records if r.value is None}
    assert {("profile", pid), ("identity", pid)} <= gone
    listed = {r.key.decode() for r in records if r.store == "forgotten"}
    assert listed == set(pipeline.forgotten.entries)
    restored = restore_state(dump_state(pipeline), configured(), "test")
    assert restored.forgotten.entries == pipeline.forgotten.entries
    assert pid not in restored.profiles
    theirs = lines_naming(ids, stream())
    assert [out for line in theirs for out in restored.feed(line)] + restored.flush() == []


def test_events_held_in_the_reorder_window_are_dropped_with_the_person() -> None:
    pipeline = Pipeline(configured())
    event = {"event_id": "e-1", "occurred_at": "2026-01-05T10:00:00Z", "type": "page_view",
             "identity": {"email": "jo@mail.com", "anonymous_id": "a-9"}}
    assert pipeline.feed(orjson.dumps(event)) == [] and pipeline.held == 1
    pipeline.forget(request(pipeline, "email:jo@mail.com"))
    assert pipeline.held == 0 and pipeline.flush() == []
    summary = pipeline.summary()
    assert (summary["events_forgotten"], summary["events_valid"], summary["profiles"]) == (
        1, 0, 0)


def test_pseudonymised_identifiers_are_forgotten_by_their_raw_value() -> None:
    pipeline, _ = fed(configured(pseudonymise=True), stream())
    pid, hashed = segmented_person(pipeline)
    keyed = pipeline.pseudonymiser
    assert keyed is not None
    # the raw email behind the profile's keyed hash
    email = next(v for line in stream() for v in _emails(line)
                 if keyed.value(v) == hashed["email"][0])
    outputs = pipeline.forget(request(pipeline, f"email:{email}"))
    assert [out.key for out in outputs] == [pid]
    # the keyed hash an output showed works as well (nothing left to forget by now)
    assert pipeline.forget(request(pipeline, hashed["email"][0], request_id="r-2")) == []
    theirs = lines_naming({"email": [email]}, stream())
    assert theirs and [o for line in theirs for o in pipeline.feed(line)] == []


def _emails(line: bytes) -> list[str]:
    try:
        email = orjson.loads(line)["identity"]["email"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []
    return [email] if isinstance(email, str) else []


@pytest.mark.parametrize("raw", [
    b"not json", b'{"schema": "forget_request/v1"}',
    b'{"schema": "forget_request/v1", "request_id": "r", "requested_at": "x",'
    b' "identifier_hashes": ["email:jo@mail.com"]}',
])
def test_an_unreadable_request_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_request(raw)
    assert caught.value.code == "bad_forget_request"


def test_a_request_round_trips_and_holds_no_identifier() -> None:
    pipeline = Pipeline(configured())
    sent = request(pipeline, "email:jo@mail.com", "u-7")
    assert parse_request(sent.record()) == sent
    assert b"jo@mail.com" not in sent.record() and b"u-7" not in sent.record()
    assert len(sent.hashes) == 1 + len(pipeline.graph.rules.limits)  # a bare value: every type
