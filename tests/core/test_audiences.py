"""Audience calls: what Segment, RudderStack and the tools behind them take, with a key
that outlives the segment's generated name."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from workers.config import load
from workers.core.audiences import ENTERED, EXITED, AudienceKeys, audience_calls, slug
from workers.core.pipeline import Pipeline
from workers.core.records import AudienceCall, Output, SegmentChange
from workers.errors import ConfigError
from workers.simulation.generator import simulate
from workers.testing import config_from, small_stream_config

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@cache
def validator() -> Draft202012Validator:
    schema = json.loads((SCHEMAS / "audience_call.v1.schema.json").read_text())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def segment_spec_problems(call: dict[str, Any]) -> list[str]:
    """The Segment spec's common fields, track and identify, checked on their own terms
    (the schema says the same; this reads as the spec does)."""
    problems = []
    if call.get("type") not in ("track", "identify"):
        problems.append("type")
    if not (call.get("userId") or call.get("anonymousId")):
        problems.append("userId or anonymousId")
    for field in ("messageId", "timestamp"):
        if not isinstance(call.get(field), str):
            problems.append(field)
    if not isinstance(call.get("context"), dict):
        problems.append("context")
    if call.get("type") == "track" and not (isinstance(call.get("event"), str)
                                            and isinstance(call.get("properties"), dict)):
        problems.append("track: event and properties")
    if call.get("type") == "identify" and not isinstance(call.get("traits"), dict):
        problems.append("identify: traits")
    return problems


def ref(segment: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if segment is None else {"id": segment[0], "name": segment[1]}


def change(previous: tuple[int, str] | None, segment: tuple[int, str] | None,
           reason: str = "assignment", **identifiers: list[str]) -> SegmentChange:
    return cast(SegmentChange, {
        "schema": "segment_change/v1", "event_id": f"ev-{reason}-{segment}",
        "profile_id": "p-1", "previous_segment": ref(previous), "segment": ref(segment),
        "reason": reason, "model_version": 2, "score": 0.5, "explanation": [],
        "identifiers": identifiers, "trigger_event_id": None if reason == "model_update"
        else "t-1", "occurred_at": "2026-03-01T10:00:00Z"})


def calls_for(records: list[SegmentChange],
              chosen: dict[int, str] | None = None) -> list[list[AudienceCall]]:
    keys = AudienceKeys()
    out = []
    for record in records:
        for seg in (record["segment"], record["previous_segment"]):
            if seg is not None:
                keys.see(seg, chosen or {})
        out.append(audience_calls(record, keys.resolved(chosen or {})))
    return out


def test_enter_exit_merge_and_model_update_are_segment_spec_calls() -> None:
    records = [
        change(None, (1, "Deal Hunters"), user_id=["u-1"], email=["a@example.com"]),
        change((1, "Deal Hunters"), (2, "Loyal Buyers"), "assignment", user_id=["u-1"]),
        change((2, "Loyal Buyers"), (2, "Loyal Buyers"), "merge", user_id=["u-1"]),
        change((2, "Loyal Buyers"), (1, "Bargain Mobile"), "model_update"),
    ]
    first, moved, merged, updated = calls_for(records)
    for call in first + moved + merged + updated:
        validator().validate(call)
        assert segment_spec_problems(cast(dict[str, Any], call)) == []
    assert [c.get("event", c["type"]) for c in first] == [ENTERED, "identify"]
    assert [c.get("event", c["type"]) for c in moved] == [EXITED, ENTERED, "identify"]
    assert [c["type"] for c in merged] == ["identify"]  # same segment: membership unchanged
    assert [c.get("event", c["type"]) for c in updated] == [EXITED, ENTERED, "identify"]

    entered = first[0]
    assert entered["userId"] == "u-1" and "anonymousId" not in entered
    assert entered["context"]["traits"] == {"email": "a@example.com"}
    assert entered["properties"]["audience_key"] == "deal_hunters"
    assert entered["properties"]["deal_hunters"] is True
    exited = moved[0]
    assert exited["properties"]["audience_key"] == "deal_hunters"
    assert exited["properties"]["deal_hunters"] is False
    # one boolean trait per audience; only the current one true
    assert moved[-1]["traits"] == {"deal_hunters": False, "loyal_buyers": True}
    assert first[-1]["traits"] == {"deal_hunters": True, "email": "a@example.com"}
    # no userId known: the profile id is the anonymousId
    assert updated[0]["anonymousId"] == "p-1" and "userId" not in updated[0]
    # message ids are distinct and deterministic
    ids = [c["messageId"] for c in first + moved + merged + updated]
    assert len(ids) == len(set(ids))
    assert calls_for(records)[1] == moved


def test_the_key_survives_renames_and_the_marketer_can_set_it() -> None:
    renamed = [change(None, (1, "Deal Hunters")),
               change((1, "Deal Hunters"), (1, "Weekend Browsers"), "merge"),
               change((3, "Weekend Browsers"), (1, "Weekend Browsers"), "model_update")]
    calls = calls_for(renamed)
    assert calls[2][1]["properties"]["audience_key"] == "deal_hunters"  # the birth name
    assert calls[2][1]["properties"]["audience_name"] == "Weekend Browsers"  # today's name
    # segment 3 was born under a name whose slug was free: it has it
    assert calls[2][0]["properties"]["audience_key"] == "weekend_browsers"
    chosen = calls_for(renamed, chosen={1: "vip_shoppers"})
    assert chosen[2][1]["properties"]["audience_key"] == "vip_shoppers"
    assert set(chosen[2][-1]["traits"]) == {"vip_shoppers", "weekend_browsers"}


def test_a_taken_slug_gets_the_segment_id_and_keys_are_plain_data() -> None:
    keys = AudienceKeys()
    keys.see({"id": 1, "name": "Deal Hunters"}, {})
    keys.see({"id": 4, "name": "Deal hunters!"}, {})
    keys.see({"id": 5, "name": "vip"}, {9: "vip"})
    assert keys.born == {1: "deal_hunters", 4: "deal_hunters_4", 5: "vip_5"}
    assert {type(k) for k in keys.born} == {int} and {type(v) for v in keys.born.values()} == {str}
    assert pickle.loads(pickle.dumps(keys)).born == keys.born
    assert slug("42 Crème brûlée") == "segment_42_cr_me_br_l_e"
    assert slug("") == "segment"


def test_forget_exits_the_audience() -> None:
    calls = calls_for([change(None, (1, "A")), change((1, "A"), None, "forget")])[1]
    assert [c.get("event", c["type"]) for c in calls] == [EXITED, "identify"]
    assert calls[-1]["traits"] == {"a": False}


def test_hashed_identifiers_are_what_the_calls_carry() -> None:
    digest = "a" * 64
    (entered, identify), = calls_for([change(None, (1, "A"), user_id=[digest],
                                             email=["b" * 64])])
    assert entered["userId"] == digest and identify["traits"]["email"] == "b" * 64


@cache
def pipeline_outputs() -> list[Output]:
    config = small_stream_config(config_from(
        {"audiences": {"enabled": True, "keys": {"0": "first_audience"}}}))
    pipeline = Pipeline(config)
    outputs: list[Output] = []
    for line in simulate(600, seed=5, days=7)[0]:
        outputs.extend(pipeline.feed(line))
    return outputs + pipeline.flush()


def test_the_pipeline_follows_every_segment_change_with_its_calls() -> None:
    outputs = pipeline_outputs()
    reasons: Counter[str] = Counter()
    for i, out in enumerate(outputs):
        if out.kind != "segment_change":
            continue
        record = cast(SegmentChange, out.record)
        reasons[record["reason"]] += 1
        following = []
        for after in outputs[i + 1:]:
            if after.kind != "audience":
                break
            following.append(cast(AudienceCall, after.record))
        assert following and following[-1]["type"] == "identify"
        assert all(c["messageId"].startswith(record["event_id"]) for c in following)
        assert {o.key for o in outputs[i + 1:i + 1 + len(following)]} == {out.key}
        entered = [c for c in following if c.get("event") == ENTERED]
        if entered:
            key = entered[0]["properties"]["audience_key"]
            assert following[-1]["traits"][key] is True
            if record["segment"]["id"] == 0:
                assert key == "first_audience"
        for call in following:
            validator().validate(call)
    assert {"assignment", "merge", "model_update"} <= set(reasons)


def test_audience_calls_are_off_by_default() -> None:
    pipeline = Pipeline(load())
    outputs = [o for line in simulate(600, seed=5, days=7)[0] for o in pipeline.feed(line)]
    kinds = {o.kind for o in outputs + pipeline.flush()}
    assert "segment_change" in kinds and "audience" not in kinds
    # keys are born all the same, so turning audiences on later keeps the first names
    assert set(pipeline.audience_keys.born) == set(pipeline.sizes)


@pytest.mark.parametrize(("keys", "message"), [
    ({"one": "vip"}, "audiences.keys: 'one' is not a segment id"),
    ({"1": "VIP shoppers"}, "audiences.keys.1: 'VIP shoppers' is not an audience key"),
    ({"1": "vip", "2": "vip"}, "audiences.keys.2: 'vip' is already the key of segment 1"),
])
def test_bad_audience_keys_are_one_clear_line(keys: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from({"audiences": {"keys": keys}})


def test_a_dry_run_counts_the_audience_calls_it_would_send() -> None:
    from workers.io.sinks import DryRun, EndOfRun

    dry = DryRun()
    dry.write(pipeline_outputs())
    dry.close(EndOfRun({"events_replayed": 1, "seconds": 0.1}, [], []))
    calls = Counter(cast(AudienceCall, o.record).get("event", "identify")
                    for o in pipeline_outputs() if o.kind == "audience")
    assert dry.audience_calls == calls and calls[ENTERED] > 0
    assert f"audience calls: {sum(calls.values()):,}" in dry.report(None, None)


def test_keys_travel_with_the_saved_state_as_plain_data() -> None:
    """A state saved and loaded (a replay's --state-out, a worker's changelog) continues
    with the keys its segments were born with: the same calls as one pass."""
    from workers.state.saved import dump_state, restore_state

    config = config_from({"audiences": {"enabled": True}})
    lines = simulate(600, seed=5, days=7)[0]
    half = len(lines) * 2 // 3
    first = Pipeline(config)
    for line in lines[:half]:
        first.feed(line)
    assert first.audience_keys.born
    second = restore_state(dump_state(first), config, "test")
    assert second.audience_keys.born == first.audience_keys.born
    rest = [o for line in lines[half:] for o in second.feed(line)] + second.flush()
    whole = Pipeline(config)
    for line in lines[:half]:
        whole.feed(line)
    assert rest == [o for line in lines[half:] for o in whole.feed(line)] + whole.flush()
