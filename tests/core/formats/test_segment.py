"""Segment Spec / RudderStack adapter: every call type, the batch envelope, the
e-commerce events, the timestamp rules, and a Segment stream giving the same
profiles and segments as its touchpoint equivalent.

The fixtures (tests/fixtures/segment/) are written from the public Segment Spec and
RudderStack event spec pages, with our own values.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import Config, load
from workers.core.formats.segment import (
    InvalidMember,
    SegmentAdapter,
    parse_iso,
    snake_case,
)
from workers.core.pipeline import Pipeline
from workers.core.touchpoints import TYPE_RE, IntakeLimits, TouchpointParser, format_time
from workers.errors import ConfigError, InvalidEvent
from workers.simulation.as_segment import to_segment
from workers.simulation.generator import simulate
from workers.testing import small_stream_config

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "segment"


@cache
def config() -> Config:
    return small_stream_config(load(env={}))


def adapter(**segment: Any) -> SegmentAdapter:
    """The adapter, with ``intake.segment`` keys replaced."""
    cfg = config()
    if segment:
        seg = dataclasses.replace(cfg.intake.segment, **segment)
        cfg = dataclasses.replace(cfg, intake=dataclasses.replace(cfg.intake, segment=seg))
    return SegmentAdapter(cfg)


def records(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()


def adapt(call: dict[str, Any], **segment: Any) -> dict[str, Any]:
    (event,) = adapter(**segment).events(orjson.dumps(call))
    assert isinstance(event, dict)
    return event


@cache
def fixture_events() -> dict[str, dict[str, Any]]:
    """Every event of the fixtures by event_id; each one checked by the intake."""
    parser = TouchpointParser(IntakeLimits.from_config(config()))
    seg = adapter()
    events: dict[str, dict[str, Any]] = {}
    for raw in records("calls.jsonl") + records("batches.jsonl"):
        for event in seg.events(raw):
            assert isinstance(event, dict), event
            parser.check(event)
            events[event["event_id"]] = event
    return events


def by_id(event_id: str) -> dict[str, Any]:
    return fixture_events()[event_id]


# ---- the spec examples ----------------------------------------------------------------

def test_every_valid_spec_example_becomes_a_touchpoint() -> None:
    assert len(fixture_events()) == 21 + 5


@pytest.mark.parametrize(("event_id", "type_"), [
    ("trk-pv-01", "product_view"), ("idn-01", "identify"), ("pg-01", "page_view"),
    ("scr-01", "app_open"), ("als-01", "identify"), ("grp-01", "identify"),
    ("ec-search-01", "search"), ("ec-add-01", "add_to_cart"),
    ("ec-checkout-01", "checkout_started"), ("ec-order-01", "purchase"),
    ("saas-signup-01", "signup"), ("esp-open-01", "email_open"),
    ("esp-click-01", "email_click"), ("custom-video-01", "video_played"),
    ("ec-remove-01", "product_removed"), ("mob-open-01", "app_open"),
    ("rs-click-01", "product_view"), ("rs-coupon-01", "coupon_applied"),
    ("no-type-01", "social_engagement"), ("b2-scr", "app_open"),
])
def test_call_and_event_types(event_id: str, type_: str) -> None:
    assert by_id(event_id)["type"] == type_


def test_track_common_fields() -> None:
    event = by_id("trk-pv-01")
    assert event["identity"] == {"anonymous_id": "a1b2c3d4-0001"}
    assert event["occurred_at"] == "2025-02-03T08:15:30.250Z"
    assert event["channel"] == "web"  # from the library: analytics.js
    assert event["source"] == "analytics.js"
    assert event["context"] == {
        "page_url": "https://shop.example/p/sku-7781", "referrer": "https://search.example/",
        "campaign": {"source": "newsletter", "medium": "email", "name": "spring_sale"},
        # "Germany" is a name, not an ISO 3166-1 alpha-2 code: left out
        "geo": {"region": "Bavaria", "city": "Munich"},
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0", "locale": "de-DE"}
    assert event["properties"]["product_id"] == "SKU-7781"
    assert event["properties"]["position"] == 2  # passed through
    assert b"203.0.113.7" not in orjson.dumps(event)  # context.ip: personal data


def test_identify_numeric_user_id_identifiers_and_traits() -> None:
    event = by_id("idn-01")
    assert event["identity"] == {"user_id": "90210", "anonymous_id": "a1b2c3d4-0001",
                                 "email": "maria.lopez@mail.example",
                                 "phone": "+34 600 111 222"}
    assert event["traits"] == {
        "age": 41, "gender": "female", "job_title": "Head of Purchasing",
        "createdAt": "2024-11-20T10:00:00Z", "city": "Madrid", "region": "Madrid",
        "country": "ES", "company_name": "Tiendas Sol", "company_id": "acct-55",
        "industry": "retail", "company_size": "11-50", "company_plan": "pro"}
    assert "channel" not in event  # analytics-node says nothing about where


def test_page_and_screen() -> None:
    page = by_id("pg-01")
    assert page["context"]["page_url"] == "https://saas.example/pricing"
    assert page["properties"]["name"] == "Pricing"
    assert page["properties"]["content_category"] == "marketing"
    screen = by_id("scr-01")
    assert screen["identity"] == {"device_id": "ANDR-ID-3003",
                                  "anonymous_id": "5e1f-android-0003", "user_id": "u-3003"}
    assert screen["device"] == {"type": "mobile", "os": "Android", "app_version": "7.2.0"}
    assert screen["channel"] == "mobile_app"
    assert screen["context"] == {"geo": {"country": "FR", "city": "Lyon"}, "locale": "fr-FR"}
    assert screen["properties"] == {"items": 3, "name": "Basket"}
    assert adapt({"type": "screen", "userId": "u", "timestamp": "2025-01-01T00:00:00Z"},
                 calls={**config().intake.segment.calls, "screen": "screen_view"}
                 )["type"] == "screen_view"


def test_group_traits_are_firmographics() -> None:
    event = by_id("grp-01")
    assert event["identity"] == {"user_id": "u-4004"}
    assert event["traits"] == {"company_name": "Northwind Labs", "industry": "software",
                               "company_size": "201-1000", "company_plan": "enterprise",
                               "company_total_billed": 1200, "company_id": "org-8841"}


def test_alias_joins_the_two_profiles() -> None:
    assert by_id("als-01")["identity"] == {"user_id": "u-4004",
                                           "anonymous_id": "anon-7c9e-0004"}
    calls = [
        {"type": "page", "anonymousId": "anon-7c9e-0004", "timestamp": "2025-02-03T10:00:00Z"},
        {"type": "track", "event": "Signed Up", "userId": "u-4004",
         "timestamp": "2025-02-03T10:59:00Z"},
        orjson.loads(records("calls.jsonl")[4]),
    ]
    pipeline = Pipeline(config())
    for call in calls:
        for event in adapter().events(orjson.dumps(call)):
            pipeline.feed(orjson.dumps(event))
    pipeline.flush()
    assert pipeline.lookup("anonymous_id:anon-7c9e-0004") is not None
    assert (pipeline.lookup("anonymous_id:anon-7c9e-0004")
            == pipeline.lookup("user_id:u-4004"))
    assert len(pipeline.profiles) == 1


def test_order_completed_revenue_from_revenue_else_total() -> None:
    assert by_id("ec-order-01")["properties"]["revenue"] == 89.9  # without tax, shipping
    assert by_id("ec-order-02")["properties"]["revenue"] == 42.0  # total: all there is
    assert "revenue" not in by_id("ec-add-01")["properties"]
    cfg = config()
    amount = dataclasses.replace(cfg, features=dataclasses.replace(
        cfg.features, revenue_property="amount"))
    raw = records("calls.jsonl")[9]
    (event,) = SegmentAdapter(amount).events(raw)
    assert isinstance(event, dict)
    assert event["properties"]["amount"] == 89.9


def test_email_events_carry_the_email_and_no_channel_from_a_server() -> None:
    event = by_id("esp-open-01")
    assert event["identity"] == {"user_id": "u-6006", "email": "ken@mail.example"}
    assert "channel" not in event  # "server" says nothing about where it happened
    assert "traits" not in event  # the email went to identity, first_name is personal


# ---- time -----------------------------------------------------------------------------

def test_timestamp_rules_on_the_fixtures() -> None:
    # originalTimestamp 10:00:00 on a device 1 min 55 s ahead (sent 10:00:02,
    # received 09:58:07): 09:58:05
    assert by_id("rs-click-01")["occurred_at"] == "2025-02-06T09:58:05.000Z"
    # batch sentAt (09:30:00) corrects each member (received 09:30:05)
    assert by_id("b2-add")["occurred_at"] == "2025-02-07T09:00:05.000Z"
    assert by_id("b2-scr")["occurred_at"] == "2025-02-07T08:59:05.000Z"
    assert by_id("mob-open-01")["occurred_at"] == "2025-02-05T09:00:00.000Z"  # +0000


@pytest.mark.parametrize(("fields", "expected"), [
    ({"timestamp": "2025-03-01T12:00:00Z", "originalTimestamp": "2025-03-01T11:00:00Z"},
     "2025-03-01T12:00:00Z"),  # RFC 3339 already: passed on as it is
    ({"timestamp": "2025-03-01T12:00:00.123456+0100"}, "2025-03-01T11:00:00.123Z"),
    ({"timestamp": "2025-03-01T12:00:00+01"}, "2025-03-01T11:00:00.000Z"),
    ({"timestamp": "2025-03-01T12:00:00"}, "2025-03-01T12:00:00.000Z"),  # UTC, says Segment
    ({"timestamp": "2025-03-01 12:00"}, "2025-03-01T12:00:00.000Z"),
    ({"originalTimestamp": "2025-03-01T12:00:00Z"}, "2025-03-01T12:00:00.000Z"),
    ({"originalTimestamp": "2025-03-01T12:00:00Z", "sentAt": "2025-03-01T12:00:10Z"},
     "2025-03-01T12:00:00.000Z"),  # no receivedAt: nothing to correct by
    ({"originalTimestamp": "2025-03-01T12:00:00Z", "sentAt": "2025-03-01T12:00:10Z",
      "receivedAt": "2025-03-01T13:00:12Z"}, "2025-03-01T13:00:02.000Z"),
    ({"receivedAt": "2025-03-01T12:00:00Z", "sentAt": "2025-03-01T11:00:00Z"},
     "2025-03-01T12:00:00.000Z"),
])
def test_timestamp_rules(fields: dict[str, str], expected: str) -> None:
    assert adapt({"type": "track", "event": "X", "userId": "u", **fields})["occurred_at"] \
        == expected


@pytest.mark.parametrize(("fields", "code"), [
    ({}, "missing_field"),
    ({"timestamp": "yesterday"}, "bad_timestamp"),
    ({"timestamp": 1740830400}, "bad_timestamp"),  # Segment times are ISO 8601 strings
    ({"originalTimestamp": "2025-03-01T12:00:00Z", "sentAt": "soon",
      "receivedAt": "2025-03-01T12:00:00Z"}, "bad_timestamp"),
])
def test_unusable_time_is_a_dead_letter(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        adapt({"type": "track", "event": "X", "userId": "u", **fields})
    assert err.value.code == code


def test_parse_iso_agrees_with_format_time() -> None:
    assert format_time(parse_iso("2025-03-01T12:00:00,5Z")) == "2025-03-01T12:00:00.500Z"
    with pytest.raises(ValueError):
        parse_iso("2025-02-30T00:00:00Z")


# ---- identifiers and ids --------------------------------------------------------------

@pytest.mark.parametrize(("user_id", "expected"), [(42, "42"), (7.0, "7"), ("u-1", "u-1")])
def test_numeric_user_id_becomes_a_string(user_id: Any, expected: str) -> None:
    event = adapt({"type": "identify", "userId": user_id, "anonymousId": "",
                   "timestamp": "2025-01-01T00:00:00Z"})
    assert event["identity"] == {"user_id": expected}  # "" is no id


def test_message_id_absent_gives_a_deterministic_id() -> None:
    first = by_id(next(k for k in fixture_events() if k.startswith("seg-")))
    raw = next(r for r in records("calls.jsonl") if b"Cart Viewed" in r)
    call = orjson.loads(raw)
    again = adapt(call)
    assert again["event_id"] == first["event_id"]
    batch = orjson.dumps({"batch": [{"z": 1, **call}]})
    # key order does not matter; a different call gets a different id
    (in_batch,) = adapter().events(batch)
    assert isinstance(in_batch, dict)
    assert in_batch["event_id"] != first["event_id"]
    reordered = dict(reversed(list(call.items())))
    assert adapt(reordered)["event_id"] == first["event_id"]
    assert TYPE_RE.fullmatch("x") and len(first["event_id"]) <= 128


# ---- batches and unreadable input -----------------------------------------------------

def test_batch_envelope_context_applies_to_members() -> None:
    for event_id in ("b1-idn", "b1-pv", "b1-pg"):
        event = by_id(event_id)
        assert event["context"]["geo"] == {"country": "SG"}
        assert event["source"] == "analytics-python"
    assert by_id("b1-pg")["context"]["page_url"] == "https://books.example/b/4"
    assert by_id("b2-add")["channel"] == "mobile_app"
    assert by_id("b2-add")["device"] == {"type": "mobile", "os": "Android"}


def test_a_broken_member_is_yielded_alone() -> None:
    good = {"type": "track", "event": "Product Viewed", "userId": "u",
            "timestamp": "2025-01-01T00:00:00Z"}
    raw = orjson.dumps({"batch": [good, 42, {"type": "track", "userId": "u"},
                                  {**good, "messageId": "last"}]})
    items = list(adapter().events(raw))
    assert [type(i).__name__ for i in items] == ["dict", "InvalidMember", "InvalidMember",
                                                 "dict"]
    bad_type, no_event = items[1], items[2]
    assert isinstance(bad_type, InvalidMember) and isinstance(no_event, InvalidMember)
    assert (bad_type.code, bad_type.index, bad_type.raw) == ("not_object", 1, b"42")
    assert (no_event.code, no_event.index) == ("missing_field", 2)
    assert no_event.detail.startswith("batch[2]: ")
    assert orjson.loads(no_event.raw) == {"type": "track", "userId": "u"}


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "empty"), (b"{nope", "not_json"), (b"[1, 2]", "not_object"),
    (b'{"batch": {"type": "track"}}', "wrong_type"),
    (b'{"type": "reset", "userId": "u", "timestamp": "2025-01-01T00:00:00Z"}', "bad_value"),
    (b'{"userId": "u", "timestamp": "2025-01-01T00:00:00Z"}', "missing_field"),
    (b'{"type": "track", "event": "!!!", "userId": "u", "timestamp": "2025-01-01T00:00:00Z"}',
     "bad_value"),
])
def test_unreadable_record_raises(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        list(adapter().events(raw))
    assert err.value.code == code


def test_size_limits_per_call_and_per_batch() -> None:
    padding = "x" * 40_000
    call = {"type": "track", "event": "X", "userId": "u",
            "timestamp": "2025-01-01T00:00:00Z", "properties": {"pad": padding}}
    items = list(adapter().events(orjson.dumps({"batch": [call, call, call]})))
    assert all(isinstance(i, dict) for i in items)  # 120 kB batch, 40 kB calls: fine
    big = {**call, "properties": {"pad": padding * 2}}
    with pytest.raises(InvalidEvent, match="limit is 65536"):
        list(adapter().events(orjson.dumps(big)))
    (too_large,) = adapter().events(orjson.dumps({"batch": [big]}))
    assert isinstance(too_large, InvalidMember) and too_large.code == "too_large"
    with pytest.raises(InvalidEvent) as err:
        list(adapter().events(orjson.dumps({"batch": [call] * 14})))
    assert err.value.code == "too_large"  # over intake.segment.max_batch_bytes


# ---- names, channels, devices, configuration ------------------------------------------

@pytest.mark.parametrize(("name", "type_"), [
    ("Video Played", "video_played"), ("videoPlayed", "video_played"),
    ("order_completed", "purchase"), ("ORDER COMPLETED", "purchase"),
    ("Checkout Step 2 Viewed", "checkout_step_2_viewed"), ("Größe gewählt", "gr_e_gew_hlt"),
    ("page.scroll:50%", "page.scroll:50"), ("a" * 100, "a" * 64),
])
def test_event_names(name: str, type_: str) -> None:
    assert snake_case(name) == type_ or type_ == "purchase"
    event = adapt({"type": "track", "event": name, "userId": "u",
                   "timestamp": "2025-01-01T00:00:00Z"})
    assert event["type"] == type_
    assert TYPE_RE.fullmatch(event["type"])


def test_custom_events_are_read_over_the_defaults() -> None:
    call = {"type": "track", "event": "Trial Started", "userId": "u",
            "timestamp": "2025-01-01T00:00:00Z"}
    assert adapt(call)["type"] == "trial_started"
    assert adapt(call, custom_events={"Trial Started": "signup"})["type"] == "signup"
    assert adapt({**call, "event": "Order Completed"},
                 custom_events={"Trial Started": "signup"})["type"] == "purchase"


@pytest.mark.parametrize(("channel", "library", "expected"), [
    ("browser", None, "web"), ("mobile", None, "mobile_app"), ("server", None, None),
    ("server", "analytics-ios", "mobile_app"), (None, "analytics.js", "web"),
    (None, "analytics-go", None), ("kiosk", None, "kiosk"),  # unknown: the intake decides
])
def test_channel(channel: str | None, library: str | None, expected: str | None) -> None:
    call: dict[str, Any] = {"type": "track", "event": "X", "userId": "u",
                            "timestamp": "2025-01-01T00:00:00Z"}
    if channel:
        call["channel"] = channel
    if library:
        call["context"] = {"library": {"name": library}}
    assert adapt(call).get("channel") == expected


@pytest.mark.parametrize(("dtype", "expected"), [
    ("ios", "mobile"), ("Android", "mobile"), ("tablet", "tablet"), ("ipados", "tablet"),
    ("smart-fridge", "smart-fridge"),  # unknown: the intake decides
])
def test_device_type(dtype: str, expected: str) -> None:
    event = adapt({"type": "track", "event": "X", "userId": "u",
                   "timestamp": "2025-01-01T00:00:00Z",
                   "context": {"device": {"type": dtype}}})
    assert event["device"] == {"type": expected}


def test_config_env_override_and_validation() -> None:
    env = {"PERSONA_STREAM_INTAKE__SEGMENT__ALIAS_PREVIOUS_ID": "crm_id"}
    assert load(env=env).intake.segment.alias_previous_id == "crm_id"
    bad = [({"PERSONA_STREAM_INTAKE__SEGMENT__CALLS": "{page: Page View}"}, "calls.page"),
           ({"PERSONA_STREAM_INTAKE__SEGMENT__CHANNELS": "{pos: shop}"}, "channels.pos"),
           ({"PERSONA_STREAM_INTAKE__SEGMENT__DEVICE_TYPES": "{tv: television}"},
            "device_types.tv"),
           ({"PERSONA_STREAM_INTAKE__SEGMENT__EMPLOYEE_BANDS": "{big: 100, small: 10}"},
            "employee_bands"),
           ({"PERSONA_STREAM_INTAKE__SEGMENT__ALIAS_PREVIOUS_ID": "cookie"},
            "alias_previous_id"),
           ({"PERSONA_STREAM_INTAKE__SEGMENT__ALIAS_PREVIOUS_ID": "user_id"},
            "alias_previous_id")]
    for env, key in bad:
        with pytest.raises(ConfigError, match=f"intake.segment.{key}"):
            load(env=env)


# ---- a Segment stream and its touchpoint equivalent -----------------------------------

@cache
def equivalent_streams() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The valid touchpoints of a simulated stream, the same as Segment calls, and those
    calls adapted back."""
    parser = TouchpointParser(IntakeLimits.from_config(config()))
    # a CRM's id is a trait in Segment: intake.segment.identity_traits says which
    seg = adapter(identity_traits={**config().intake.segment.identity_traits,
                                   "crm_id": "crm_id"})
    touchpoints, calls, adapted = [], [], []
    for line in simulate(300, seed=16, days=7)[0]:
        try:
            tp = parser.parse(line).data
        except InvalidEvent:
            continue  # the simulator's hostile records: not a Segment matter
        touchpoints.append(line)
        calls.append(orjson.dumps(to_segment(tp)))
        (event,) = seg.events(calls[-1])
        assert isinstance(event, dict)
        adapted.append(orjson.dumps(event))
    return touchpoints, calls, adapted


def run(lines: list[bytes], fmt: Any = None,
        cfg: Config | None = None) -> tuple[list[Any], list[Any], dict[str, Any]]:
    pipeline = Pipeline(cfg or config())
    outputs = [o for line in lines for o in pipeline.feed(line, None, fmt)] + pipeline.flush()
    summary = {k: v for k, v in pipeline.summary().items()
               if k not in ("seconds", "events_per_second")}
    return outputs, list(pipeline.profile_snapshots()), summary


def test_segment_stream_gives_the_same_profiles_and_segments() -> None:
    touchpoints, calls, adapted = equivalent_streams()
    assert len(touchpoints) > 3000
    outputs, profiles, summary = run(touchpoints)
    assert summary["profiles"] >= 300 and summary["segment_changes"] > 0
    assert run(adapted) == (outputs, profiles, summary)
    # and as the pipeline reads them itself, with intake.format: segment
    crm = small_stream_config(load(env={
        "PERSONA_STREAM_INTAKE__FORMAT": "segment",
        "PERSONA_STREAM_INTAKE__SEGMENT__IDENTITY_TRAITS":
            "{email: email, phone: phone, crm_id: crm_id}"}))
    assert run(calls, cfg=crm) == (outputs, profiles, summary)
    # and event by event, the same touchpoints (an identify's empty properties aside)
    for original, back in zip(touchpoints, adapted, strict=True):
        tp = orjson.loads(original)
        if tp.get("properties") == {}:
            del tp["properties"]
        assert orjson.loads(back) == tp


def test_the_worked_example_of_the_docs() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "formats" / "segment.md").read_text()
    call, touchpoint = (orjson.loads(block.split("```", 1)[0])
                        for block in doc.split("## Worked example", 1)[1].split("```json")[1:])
    assert adapt(call) == touchpoint


# ---- the intake's shortcut ------------------------------------------------------------

_BASE = {"type": "track", "event": "Product Viewed", "messageId": "m-1",
         "anonymousId": "a-1", "timestamp": "2025-03-01T12:00:00.250Z", "channel": "browser",
         "context": {"library": {"name": "analytics.js"}, "device": {"id": "d-1", "type": "ios"},
                     "os": {"name": "iOS"}, "app": {"version": "1.2"}, "sessionId": "s-1",
                     "page": {"url": "https://a.example/", "referrer": "https://b.example/"},
                     "campaign": {"source": "news", "medium": "email", "name": "spring"},
                     "location": {"country": "de", "region": "Bavaria", "city": "Munich"},
                     "userAgent": "Mozilla/5.0", "locale": "de-DE"},
         "properties": {"product_id": "p-1"}}
_ODD = [None, "", 0, 5, 4.5, True, [], ["x"], {}, {"a": 1}, "x" * 300, "Kiosk"]


def _variants() -> list[dict[str, Any]]:
    """The base call with each field, one at a time, set to values good and bad."""
    out = [_BASE]
    for path in ("channel", "messageId", "anonymousId", "userId", "timestamp",
                 "properties", "context.library.name", "context.device.id",
                 "context.device.type", "context.os.name", "context.app.version",
                 "context.sessionId", "context.page.url", "context.page.referrer",
                 "context.campaign", "context.campaign.source", "context.location",
                 "context.location.country", "context.location.city", "context.userAgent",
                 "context.locale", "context.traits", "context.traits.email",
                 "context.traits.age", "context.traits.gender", "context.traits.interests",
                 "context.traits.newsletter_opt_in", "traits.age", "traits.country"):
        for value in [*_ODD, "2025-02-30T00:00:00Z", "1980-01-01T00:00:00Z",
                      "2025-03-01T12:00:00+01", "2025-03-01T12:00:00." + "1" * 60 + "Z"]:
            call = orjson.loads(orjson.dumps(_BASE))
            *parents, leaf = path.split(".")
            node = call
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
            out.append(call)
    revenue = [{"revenue": v} for v in ("22.50", "x", 1e12, 89.9, None, [1])]
    out += [{**_BASE, "event": "Order Completed", "properties": p} for p in revenue]
    out += [{**_BASE, "properties": {f"k{i}": i for i in range(300)}},
            {**_BASE, "type": "page", "name": "Home", "category": 5},
            {**_BASE, "type": "identify", "traits": {"email": "e@x.example", "age": "34"}},
            {**_BASE, "type": "alias", "previousId": 7},
            {**_BASE, "type": "group", "groupId": "g-1", "traits": {"employees": 40}}]
    return out


def test_an_event_the_adapter_vouches_for_is_what_the_intake_would_make_of_it() -> None:
    """The intake skips its checks for an event the adapter vouches for (its time): that
    must never let through, or change, what the checks would have refused or repaired."""
    limits = IntakeLimits.from_config(config())
    seg = adapter()
    raws = [orjson.dumps(call) for call in _variants()]
    raws += records("calls.jsonl") + records("batches.jsonl") + equivalent_streams()[1]
    vouched = 0
    for raw in raws:
        try:
            events = list(seg.events(raw))
        except InvalidEvent:
            continue
        for event in events:
            if isinstance(event, InvalidMember):
                continue
            ts = seg.vouch(event)
            if ts is None:
                continue
            vouched += 1
            parser = TouchpointParser(limits)
            checked = parser.check(orjson.loads(orjson.dumps(event)))
            assert (checked.data, checked.ts) == (event, ts), raw
            assert not parser.optional.dropped and not parser.optional.coerced, raw
            assert parser.check(event, raw, ts).data is event
    # the usual call is vouched for: what makes the Segment intake cheap
    assert vouched >= 0.9 * len(equivalent_streams()[1])
    assert seg.vouch(orjson.loads(orjson.dumps(_BASE))) is None  # not one of its events


def test_traits_the_intake_would_leave_as_they_are_are_vouched_for() -> None:
    seg = adapter()
    good = {"age": 34, "gender": "female", "interests": ["golf"], "newsletter_opt_in": True,
            "country": "DE", "email": "e@x.example"}
    for traits, vouched in ((good, True), ({**good, "age": "34"}, False),
                            ({**good, "interests": ["golf", 3]}, False),
                            ({**good, "newsletter_opt_in": "yes"}, False),
                            ({f"k{i}": i for i in range(300)}, False)):
        raw = orjson.dumps({**_BASE, "type": "identify", "traits": traits})
        (event,) = seg.events(raw)
        assert (seg.vouch(event) is not None) is vouched, traits
        # what the intake would repair is left to it, to repair and count
        assert event["traits"] == {k: v for k, v in traits.items() if k != "email"}
