"""Identifiers kept in: pseudonymised at intake, redacted from dead letters (no broker)."""

from __future__ import annotations

import dataclasses
from functools import cache

import orjson
import pytest

from workers.config import Config, Secret, load
from workers.core.pipeline import Pipeline
from workers.core.privacy import redact
from workers.core.records import Output
from workers.errors import StateError
from workers.state.saved import dump_state, restore_state
from workers.testing import personal_stream

KEY = "a pseudonymisation key for tests"


@cache
def stream() -> tuple[list[bytes], frozenset[str]]:
    lines, values = personal_stream(150, seed=7)
    return lines, frozenset(values)


def configured(pseudonymise: bool = False, key: str = KEY, dead_letter_raw: str = "keep"
               ) -> Config:
    base = load(env={})
    return dataclasses.replace(
        base, identity=dataclasses.replace(base.identity, pseudonymise=pseudonymise,
                                           pseudonymise_key=Secret(key)),
        intake=dataclasses.replace(base.intake, dead_letter_raw=dead_letter_raw))


@cache
def run(pseudonymise: bool) -> tuple[Pipeline, list[Output]]:
    """The stream as is with raw dead letters kept, or pseudonymised with them redacted."""
    pipeline = Pipeline(configured(pseudonymise, dead_letter_raw="redact" if pseudonymise
                                   else "keep"))
    outputs = [out for line in stream()[0] for out in pipeline.feed(line)] + pipeline.flush()
    return pipeline, outputs


def groups(pipeline: Pipeline, rename: dict[str, str] | None = None) -> set[frozenset[str]]:
    """Each profile's identifiers as ``type:value``, values renamed by ``rename``."""
    rename = rename or {}
    return {frozenset(f"{t}:{rename.get(v, v)}" for t, values in
                      pipeline.graph.identifiers(pid).items() for v in values)
            for pid in pipeline.profiles}


def leaks(text: str) -> set[str]:
    return {value for value in stream()[1] if value in text}


@pytest.mark.parametrize(("raw", "kept", "gone"), [
    (b'{"event_id": "e1", "occurred_at": "bad", "identity": {"email": "jo@mail.com",'
     b' "user_id": "u-1", "anonymous_id": "a-1"}, "context": {"page_url": "/x"}}',
     [b'"event_id": "e1"', b'"occurred_at": "bad"', b'"page_url": "/x"',
      b'"email": "[redacted]"', b'"user_id": "[redacted]"', b'"anonymous_id": "[redacted]"'],
     [b"jo@mail.com", b"u-1", b"a-1"]),
    # Segment: userId, anonymousId and an email trait
    (b'{"type": "identify", "userId": "42", "anonymousId": "x\\"y", "traits":'
     b' {"Email": "Jo@Mail.com", "plan": "pro"}}',
     [b'"userId": "[redacted]"', b'"anonymousId": "[redacted]"', b'"plan": "pro"'],
     [b"42", b"Jo@Mail.com", b'x\\"y']),
    # not JSON, cut, or a TSV line: emails and international phone numbers by their form
    (b"web\t2026-01-05 10:00:00+01:00\tjo%40mail.com\t+44 (0)20 7946 0958\t+01:00 \xff",
     [b"2026-01-05 10:00:00+01:00", b"\t+01:00 \xff"], [b"jo%40mail.com", b"7946 0958"]),
])
def test_redact_replaces_identifier_values_and_keeps_the_rest(
        raw: bytes, kept: list[bytes], gone: list[bytes]) -> None:
    redacted = redact(raw)
    assert all(part in redacted for part in kept), redacted
    assert not [part for part in gone if part in redacted], redacted


@pytest.mark.parametrize("mode", ["keep", "redact"])
def test_dead_letters_keep_or_redact_the_raw_record(mode: str) -> None:
    _, outputs = run(pseudonymise=mode == "redact")
    dead = [o.record for o in outputs if o.kind == "dead_letter"]
    raws = "\n".join(str(d.get("raw", "")) for d in dead)
    assert {d["error"] for d in dead} >= {"bad_timestamp", "not_json", "missing_field"}
    if mode == "keep":
        assert {"lost.person@mailbox.org", "+31612345678", "u-lost-42"} <= leaks(raws)
    else:
        assert leaks(raws) == set()
        assert raws.count("[redacted]") >= 4


def test_pseudonymised_stitching_makes_the_same_groups_and_holds_no_raw_value() -> None:
    plain, _ = run(pseudonymise=False)
    hashed, outputs = run(pseudonymise=True)
    assert hashed.pseudonymiser is not None
    to_hash = {value: hashed.pseudonymiser.value(value) for value in stream()[1]}
    assert groups(hashed) == groups(plain, to_hash)
    assert hashed.stats.identity_merges == plain.stats.identity_merges
    assert hashed.stats.merges_refused == plain.stats.merges_refused
    everything = [o.record for o in outputs]
    everything += [hashed.profile_snapshot(pid) for pid in hashed.profiles]
    assert leaks(orjson.dumps(everything).decode()) == set()
    # the state (identity maps, profiles, held events) holds neither a value nor the key
    state = dump_state(hashed)
    assert leaks(state.decode("utf-8", "replace")) == set()
    assert KEY.encode() not in state


def test_a_pseudonymised_profile_is_found_by_its_raw_or_its_hashed_identifier() -> None:
    hashed, _ = run(pseudonymise=True)
    assert hashed.pseudonymiser is not None
    email = next(v for v in sorted(stream()[1]) if "@" in v and hashed.lookup(v))
    pid = hashed.lookup(f"email:{email}")
    assert pid is not None and hashed.lookup(hashed.pseudonymiser.value(email)) == pid


def test_a_state_made_under_another_key_is_refused() -> None:
    pipeline = Pipeline(configured(pseudonymise=True))
    for line in stream()[0][:50]:
        pipeline.feed(line)
    state = dump_state(pipeline)
    restore_state(state, configured(pseudonymise=True), "state")  # the same key: fine
    with pytest.raises(StateError, match=r"identity\.pseudonymise_key: 'sha256:[0-9a-f]+'"
                                         r" in the state, 'sha256:[0-9a-f]+' now"):
        restore_state(state, configured(pseudonymise=True, key="another key of 16+"), "state")



def test_the_admin_listener_settings_do_not_tie_a_state_to_them() -> None:
    """A checkpoint made before the admin port or token changed still restores."""
    pipeline = Pipeline(configured())
    state = dump_state(pipeline)
    base = configured()
    moved = dataclasses.replace(base, admin=dataclasses.replace(
        base.admin, host="0.0.0.0", port=19465, token=Secret("a token of 16+ chars")))
    restore_state(state, moved, "state")
    assert b"a token of 16+ chars" not in dump_state(Pipeline(moved))
