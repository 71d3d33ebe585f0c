"""Touchpoint intake (docs/contracts.md section 1): error codes, timestamps, and the
hand-written validator proven equal to ``schemas/touchpoint.v1.schema.json``.

Fast: pure functions, no broker.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from workers.core.touchpoints import (
    IDENTIFIER_TYPES,
    CarriedTouchpoint,
    IntakeLimits,
    TimeParser,
    Touchpoint,
    TouchpointParser,
    format_time,
    parse_time,
)
from workers.errors import InvalidEvent

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "touchpoint.v1.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)

CODES = {"too_large", "not_utf8", "not_json", "not_object", "missing_field", "wrong_type",
         "bad_timestamp", "empty_identity", "bad_identifier", "bad_enum", "bad_value"}
# the schema says what shape an event has; the configurable bounds on top of it
# (tests/core/test_bounds.py) are switched off to compare the two
SHAPE_ONLY = IntakeLimits(earliest=-math.inf, latest=math.inf, max_depth=10**6,
                          max_keys=10**6, max_amount=math.inf)


def event(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": "2025-03-01T12:30:00.250Z",
        "type": "page_view",
        "identity": {"anonymous_id": "anon-1"},
    }
    base.update(over)
    return base


def code_of(data: dict[str, Any]) -> str:
    with pytest.raises(InvalidEvent) as info:
        TouchpointParser().check(data)
    assert VALIDATOR.is_valid(data) is False, "the schema must reject it too"
    return info.value.code


def without(key: str) -> dict[str, Any]:
    data = event()
    del data[key]
    return data


# ---- raw-bytes rules ------------------------------------------------------------


def test_too_large_at_default_limit_of_64_kib() -> None:
    parser = TouchpointParser()
    filler = "x" * 65536
    raw = orjson.dumps(event(properties={"blob": filler}))
    with pytest.raises(InvalidEvent) as info:
        parser.parse(raw)
    assert info.value.code == "too_large"
    # exactly at the limit is still fine
    small = orjson.dumps(event(properties={"blob": ""}))
    exact = orjson.dumps(event(properties={"blob": "x" * (65536 - len(small))}))
    assert len(exact) == 65536
    assert parser.parse(exact).event_id == "evt-1"


def test_too_large_uses_configured_limit() -> None:
    raw = orjson.dumps(event())
    assert TouchpointParser(IntakeLimits(max_event_bytes=len(raw))).parse(raw).event_id == "evt-1"
    with pytest.raises(InvalidEvent) as info:
        TouchpointParser(IntakeLimits(max_event_bytes=len(raw) - 1)).parse(raw)
    assert info.value.code == "too_large"


@pytest.mark.parametrize("raw", [
    b'{"event_id": "\xff\xfe", "type": "x"}',
    b"\xff",
    "{\"event_id\": \"caf\u00e9\"}".encode("latin-1"),
], ids=["in-string", "lone-byte", "latin-1"])
def test_not_utf8(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        TouchpointParser().parse(raw)
    assert info.value.code == "not_utf8"


@pytest.mark.parametrize("raw", [b"{nope", b" ", b'{"event_id": "a",}', b"page_view",
                                 b'{"a": 1} {"b": 2}'])
def test_not_json(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        TouchpointParser().parse(raw)
    assert info.value.code == "not_json"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"event"', b"null", b"3", b"true",
                                 b"[" + orjson.dumps(event()) + b"]"])
def test_not_object(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        TouchpointParser().parse(raw)
    assert info.value.code == "not_object"


def test_parse_valid_event_gives_its_fields() -> None:
    raw = orjson.dumps(event(occurred_at="2025-03-01T14:30:00.250+02:00",
                             identity={"user_id": "u1", "email": "a@b.io"}))
    tp = TouchpointParser().parse(raw)
    assert isinstance(tp, Touchpoint)
    assert tp.event_id == "evt-1"
    assert tp.type == "page_view"
    assert tp.identity == {"user_id": "u1", "email": "a@b.io"}
    assert tp.ts == datetime(2025, 3, 1, 12, 30, 0, 250000, tzinfo=UTC).timestamp()
    assert tp.raw == raw


# ---- field rules ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["event_id", "occurred_at", "type", "identity"])
def test_missing_field(key: str) -> None:
    assert code_of(without(key)) == "missing_field"


@pytest.mark.parametrize("data", [
    event(event_id=5),
    event(occurred_at=1740832200),
    event(type=["page_view"]),
    event(identity="anon-1"),
    event(identity=[{"anonymous_id": "a"}]),
], ids=lambda d: next(f"{k}={v!r}" for k, v in d.items() if k != "event_id" or v != "evt-1"))
def test_wrong_type(data: dict[str, Any]) -> None:
    """Required fields stay strict."""
    assert code_of(data) == "wrong_type"


@pytest.mark.parametrize(("data", "field"), [
    (event(device="iphone"), "device"),
    (event(context=[]), "context"),
    (event(context={"page_url": 3}), "context.page_url"),
    (event(context={"campaign": "spring"}), "context.campaign"),
    (event(context={"campaign": {"source": 1}}), "context.campaign.source"),
    (event(context={"geo": "DE"}), "context.geo"),
    (event(context={"geo": {"city": ["Berlin"]}}), "context.geo.city"),
    (event(context={"geo": {"country": "United States"}}), "context.geo.country"),
    (event(device={"os": 17}), "device.os"),
    (event(device={"app_version": 1.2}), "device.app_version"),
    (event(device={"type": "ios"}), "device.type"),
    (event(channel="browser"), "channel"),
    (event(channel=None), "channel"),
    (event(properties=[1, 2]), "properties"),
    (event(properties="x"), "properties"),
    (event(properties={"revenue": "a lot"}), "properties.revenue"),
    (event(traits="vip"), "traits"),
    (event(traits={"age": True}), "traits.age"),
    (event(traits={"age": "thirty"}), "traits.age"),
    (event(traits={"gender": 1}), "traits.gender"),
    (event(traits={"interests": "golf"}), "traits.interests"),
    (event(traits={"interests": ["golf", 3]}), "traits.interests"),
    (event(traits={"newsletter_opt_in": "yes"}), "traits.newsletter_opt_in"),
    (event(traits={"newsletter_opt_in": 1}), "traits.newsletter_opt_in"),
    (event(source=7), "source"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_optional_field_is_dropped_and_counted(data: dict[str, Any], field: str) -> None:
    """The event stays; the field goes, and the drop is counted by field."""
    parser = TouchpointParser()
    tp = parser.check(copy.deepcopy(data))
    assert parser.optional.dropped == {field: 1}
    parent, _, key = field.rpartition(".")
    node = tp.data
    for part in filter(None, parent.split(".")):
        node = node[part]
    assert key not in node
    VALIDATOR.validate(tp.data)  # what remains is a clean touchpoint


@pytest.mark.parametrize(("data", "field", "path", "value"), [
    (event(properties={"revenue": "22.50"}), "properties.revenue", ("properties", "revenue"),
     22.5),
    (event(properties={"revenue": " 1e3 "}), "properties.revenue", ("properties", "revenue"),
     1000.0),
    (event(traits={"age": "34"}), "traits.age", ("traits", "age"), 34.0),
    (event(traits={"newsletter_opt_in": "true"}), "traits.newsletter_opt_in",
     ("traits", "newsletter_opt_in"), True),
    (event(context={"geo": {"country": "de"}}), "context.geo.country",
     ("context", "geo", "country"), "DE"),
])
def test_an_unambiguous_value_is_coerced_and_counted(data: dict[str, Any], field: str,
                                                     path: tuple[str, ...], value: Any) -> None:
    parser = TouchpointParser()
    node: Any = parser.check(copy.deepcopy(data)).data
    for part in path:
        node = node[part]
    assert node == value and type(node) is type(value)
    assert parser.optional.coerced == {field: 1} and parser.optional.dropped == {}


@pytest.mark.parametrize("value", [
    "2025-03-01", "2025-03-01T12:30:00", "2025-13-01T12:30:00Z", "2025-03-32T12:30:00Z",
    "2025-03-01T25:30:00Z", "2025-03-01T12:30:00+01:0", "yesterday", "1740832200",
    "2025-03-01T12:30Z",
])
def test_bad_timestamp(value: str) -> None:
    assert code_of(event(occurred_at=value)) == "bad_timestamp"


def test_empty_identity() -> None:
    assert code_of(event(identity={})) == "empty_identity"


@pytest.mark.parametrize("identity", [
    {"cookie": "c1"},
    {"anonymous_id": "a", "customer_number": "7"},
    {"user_id": ""},
    {"user_id": 42},
    {"email": None},
    {"device_id": "d" * 257},
])
def test_bad_identifier(identity: dict[str, Any]) -> None:
    assert code_of(event(identity=identity)) == "bad_identifier"


def test_identifier_length_bounds() -> None:
    assert TouchpointParser().check(event(identity={"device_id": "d" * 256}))
    assert TouchpointParser().check(event(identity={"device_id": "d"}))


@pytest.mark.parametrize("data", [
    event(channel="webb"), event(channel="Web"), event(channel=1),
    event(device={"type": "phone"}), event(device={"type": "Mobile"}),
    event(device={"type": None}),
])
def test_a_value_outside_an_enum_is_dropped_not_the_event(data: dict[str, Any]) -> None:
    parser = TouchpointParser()
    parser.check(copy.deepcopy(data))
    assert sum(parser.optional.dropped.values()) == 1


@pytest.mark.parametrize("data", [
    event(event_id=""), event(event_id="e" * 129), event(type=""), event(type="Page View"),
    event(type="page view"), event(type="x" * 65), event(type="página"),
], ids=["empty-id", "long-id", "empty-type", "caps-type", "space-type", "long-type",
        "accent-type"])
def test_bad_value(data: dict[str, Any]) -> None:
    assert code_of(data) == "bad_value"


def test_valid_events_with_every_optional_field_and_unknown_fields() -> None:
    data = event(
        type="checkout:v2.step-1",
        identity={t: f"{t}-1" for t in IDENTIFIER_TYPES},
        channel="mobile_app",
        device={"type": "tablet", "os": "iOS 17", "app_version": "5.2.1", "model": "iPad"},
        context={"session_id": "s", "page_url": "https://x.io/a", "referrer": "",
                 "user_agent": "ua", "campaign": {"source": "g", "medium": "cpc",
                                                  "name": "spring", "term": "x"},
                 "geo": {"country": "DE", "region": "BE", "city": "Berlin", "lat": 52.5},
                 "locale": "de-DE"},
        properties={"price": 9.5, "anything": [1, {"nested": None}]},
        traits={"age": 41.5, "gender": "female", "interests": [], "newsletter_opt_in": False,
                "favourite_color": 3},
        source="crm",
        sdk_version={"major": 3},
        unknown_null=None,
        _debug=True,
    )
    assert VALIDATOR.is_valid(data)
    tp = TouchpointParser().check(data)
    assert tp.type == "checkout:v2.step-1"
    assert tp.data["sdk_version"] == {"major": 3}


def test_unknown_top_level_field_alone_passes() -> None:
    data = event(x_custom="anything")
    assert TouchpointParser().check(data).event_id == "evt-1"


def test_type_cache_does_not_let_invalid_types_through() -> None:
    parser = TouchpointParser()
    parser.check(event(type="purchase"))
    assert parser.check(event(type="purchase")).type == "purchase"
    with pytest.raises(InvalidEvent):
        parser.check(event(type="Purchase"))
    with pytest.raises(InvalidEvent):
        parser.check(event(type="Purchase"))


# ---- timestamps -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-03-01T12:30:00Z", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
    ("2025-03-01T12:30:00.250Z", datetime(2025, 3, 1, 12, 30, 0, 250000, tzinfo=UTC)),
    ("2025-03-01T12:30:00.5+01:00", datetime(2025, 3, 1, 11, 30, 0, 500000, tzinfo=UTC)),
    ("2025-03-01T01:30:00-05:30", datetime(2025, 3, 1, 7, 0, tzinfo=UTC)),
    ("2025-03-01 12:30:00+00:00", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
    ("2025-03-01t12:30:00Z", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
    ("2024-02-29T23:59:59.999999Z", datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)),
])
def test_parse_time_accepts(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected.timestamp()


@pytest.mark.parametrize("text", [
    "2025-03-01", "2025-03-01T12:30:00", "2025-03-01T12:30:00.250", "2025-13-01T12:30:00Z",
    "2025-00-10T12:30:00Z", "2025-02-30T12:30:00Z", "2025-03-01T12:30:00+24:00",
    "2025-03-01T12:30:00 Z", "", "2025-03-01T12:30:00.Z", "20250301T123000Z",
])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


_SECOND_TAILS = st.one_of(
    st.sampled_from(["00", "07", "59", "60", "61", "5", "5a", "٣٣"]),
    st.from_regex(r"[0-6][0-9]", fullmatch=True))
_FRACTIONS = st.one_of(st.just(""), st.sampled_from([".", ".5", ".25", ".999", ".1234567",
                                                     ".٣٣٣", ". 12"]),
                       st.from_regex(r"\.[0-9]{1,9}", fullmatch=True))
_ZONES = st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-11:45", "+23:59",
                          "+24:00", "+05:75", "", " Z", "+0530", "ZZ"])


def _stamp(day: datetime, separator: str, second: str, fraction: str, zone: str) -> str:
    return f"{day:%Y-%m-%d}{separator}{day:%H:%M}:{second}{fraction}{zone}"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["T", "t", " ", "x"]), _SECOND_TAILS, _FRACTIONS, _ZONES),
    min_size=1, max_size=8))
def test_the_stream_time_parser_is_parse_time_exactly(
        stamps: list[tuple[datetime, str, str, str, str]]) -> None:
    """The same float to the last bit or the same refusal, for any stamp, after any other
    (its day's epoch remembered from another stamp of the same day)."""
    parser = TimeParser()
    # each day once with a valid stamp first, so the shortcut serves what follows
    texts = [_stamp(day, "T", "00", "", "Z") for day, *_ in stamps]
    texts += [_stamp(*parts) for parts in stamps]
    texts += ["2025-02-30T12:30:00Z", "2025-02-28T12:30:59.999Z", "2025-02-28T12:30:60Z",
              "2025-02-28T12:30:60.5+01:00", "0000-01-01T00:00:00Z"]
    for text in texts:
        try:
            want: float | str = parse_time(text)
        except ValueError:
            want = "refused"
        try:
            got: float | str = parser.read(text)
        except ValueError:
            got = "refused"
        assert got == want, text


def test_format_time_shape() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1740832200.25) == "2025-03-01T12:30:00.250Z"
    assert format_time(1.9996) == "1970-01-01T00:00:02.000Z"
    assert format_time(-0.5) == "1969-12-31T23:59:59.500Z"


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
def test_format_time_round_trip(ts: float) -> None:
    text = format_time(ts)
    assert text.endswith("Z") and len(text) == 24
    back = parse_time(text)
    assert abs(back - ts) <= 0.0005 + 1e-6
    assert format_time(back) == text
    # and what it writes is a valid occurred_at for the schema
    assert VALIDATOR.is_valid(event(occurred_at=text))


def _datetime_format(ts: float) -> str:
    """format_time as datetime writes it: what it computes with integers must match."""
    ms = round(ts * 1000)
    t = datetime.fromtimestamp(ms // 1000, UTC)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{ms % 1000:03d}Z")


# the years 1..9999 and a little beyond both ends, where both refuse
_FIRST, _LAST = -62_135_596_800, 253_402_300_800


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(min_value=_FIRST - 1e6, max_value=_LAST + 1e6, allow_nan=False),
                 st.integers(_FIRST - 2, _LAST + 2).map(float),
                 st.integers(-10**9, 10**9).map(lambda n: n / 1000)))
def test_format_time_is_what_datetime_writes(ts: float) -> None:
    try:
        want = _datetime_format(ts)
    except (ValueError, OverflowError, OSError):
        with pytest.raises(ValueError):
            format_time(ts)
        return
    assert format_time(ts) == want


# ---- equivalence with the JSON Schema -----------------------------------------------

# strings without a line break: jsonschema evaluates `pattern` with Python's re.search,
# where `$` also matches before a final "\n" (ECMA-262's `$` does not), so a trailing
# newline would be a disagreement of the library, not of the schema.
_line = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
                max_size=12)
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | _line,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_line, inner, max_size=3),
    max_leaves=6,
)
_not_str = st.sampled_from([None, True, False, 0, 7, 1.5, -2]) \
    | st.builds(list) | st.builds(dict) | st.builds(lambda: ["a"]) | st.builds(lambda: {"a": "b"})
_not_obj = st.sampled_from([None, True, 0, 2.5, "", "x", "{}"]) | st.builds(lambda: ["a"]) \
    | st.builds(list)


def _two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


@st.composite
def _valid_time(draw: st.DrawFn) -> str:
    # years 2..9998: an offset cannot push the time out of the years 1..9999 that UTC
    # can represent (the parser refuses that, the schema cannot see it; test_bounds.py)
    date = (f"{draw(st.integers(2, 9998)):04d}-{draw(_two(1, 12))}-{draw(_two(1, 28))}")
    sep = draw(st.sampled_from("Tt "))
    clock = f"{draw(_two(0, 23))}:{draw(_two(0, 59))}:{draw(_two(0, 59))}"
    frac = draw(st.none() | st.text("0123456789", min_size=1, max_size=9))
    zone = draw(st.just("Z") | st.builds(lambda s, h, m: f"{s}{h}:{m}",
                                          st.sampled_from("+-"), _two(0, 23), _two(0, 59)))
    return f"{date}{sep}{clock}{'' if frac is None else '.' + frac}{zone}"


# timestamps assembled from pieces that are each right or a little wrong; the known
# disagreements (lowercase z, leap second :60, day 29-31 of a short month, offset
# minutes 60-99, year 0000, more than 64 characters) are left out here and pinned by
# the xfail tests at the end of this file
_bad_time = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from(["2025", "1999", "0001", "9999", "202", "20250", "+2025", " 2025"]),
    st.sampled_from(["-03", "-12", "-01", "-13", "-00", "-3", "03", "/03"]),
    st.sampled_from(["-01", "-28", "-15", "-00", "-32", "-1", ""]),
    st.sampled_from(["T", "t", " ", "_", "", "TT"]),
    st.sampled_from(["12", "00", "23", "24", "1", "99"]),
    st.sampled_from([":30", ":00", ":59", ":60", "30", ""]),
    st.sampled_from([":00", ":59", ":61", ":5", ""]),
    st.sampled_from(["", ".250", ".5", ".", ".123456789", ",5", ".x"]),
    st.sampled_from(["Z", "+01:00", "-05:30", "+23:59", "-00:00", "+24:00", "+0100", "+1",
                     "+01", "+01:0", "", " Z", "UTC", "ZZ", "Z "]),
) | _line

_identifier = st.text(min_size=1, max_size=8) | st.sampled_from(["x" * 256, "é" * 256])
_bad_identifier_value = _not_str | st.just("") | st.sampled_from(["x" * 257, "é" * 300])
_identity_valid = st.dictionaries(st.sampled_from(IDENTIFIER_TYPES), _identifier,
                                  min_size=1, max_size=4)
_identity_any = st.one_of(
    _identity_valid,
    st.dictionaries(st.sampled_from(IDENTIFIER_TYPES), _identifier | _bad_identifier_value,
                    min_size=1, max_size=3),
    st.builds(lambda d, k, v: {**d, k: v}, _identity_valid,
              st.sampled_from(["cookie", "User_id", "userId", "email ", "ip"]), _identifier),
    st.dictionaries(st.sampled_from(IDENTIFIER_TYPES), _identifier, max_size=0),
    _not_obj,
)


def _near(values: list[str]) -> st.SearchStrategy[Any]:
    """An enum value, or one that is off by a little."""
    return st.sampled_from(values) | st.sampled_from(values).flatmap(lambda v: st.sampled_from(
        [v.upper(), v.capitalize(), v + " ", " " + v, v[:-1], v + "s"])) | _not_str


def _obj(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with any subset of ``fields``, sometimes with an unknown member."""
    return st.builds(lambda d, extra: {**extra, **d},
                     st.fixed_dictionaries({}, optional=fields),
                     st.sampled_from([{}, {}, {"x_extra": 1}, {"nested": {"a": [1]}}]))


CHANNEL_VALUES = ["web", "mobile_app", "email", "social", "sms", "ads", "store", "call_center",
                  "other"]
DEVICE_TYPES = ["mobile", "desktop", "tablet", "other"]
STRING_TRAITS = ["gender", "income_band", "country", "region", "city", "industry",
                 "company_size", "job_title"]
_number = st.integers(0, 120) | st.floats(allow_nan=False, allow_infinity=False)

# a valid value for every optional field (each object with unknown members mixed in)
_VALID_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "channel": st.sampled_from(CHANNEL_VALUES),
    "device": _obj({"type": st.sampled_from(DEVICE_TYPES), "os": _line, "app_version": _line}),
    "context": _obj({
        **{k: _line for k in ("session_id", "page_url", "referrer", "user_agent")},
        "campaign": _obj({"source": _line, "medium": _line, "name": _line}),
        "geo": _obj({"country": st.sampled_from(["US", "DE", "FR", "GB"]),
                     "region": _line, "city": _line}),
    }),
    "properties": st.dictionaries(_line, _any_json, max_size=3),
    "traits": _obj({"age": _number, **{k: _line for k in STRING_TRAITS},
                    "interests": st.lists(_line, max_size=3),
                    "newsletter_opt_in": st.booleans()}),
    "source": _line,
}

DELETE = object()
EMPTY = object()
_bad_country = st.sampled_from(["us", "De", "USA", "U", "", "1A", "ÄÖ", "D E"]) | _not_str
_type = st.from_regex(r"[a-z0-9_.:-]{1,64}", fullmatch=True) | st.sampled_from(
    ["Page_view", "page view", "", "x" * 65, "page_view!", "página", "PURCHASE"]) | _not_str
_event_id = st.text(min_size=1, max_size=10) | st.sampled_from(["e" * 128, "e" * 129, ""]) \
    | _not_str

# (path, replacement): one subtle change each, valid or not; DELETE removes the member
MUTATIONS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("event_id",), _event_id),
    (("event_id",), st.just(DELETE)),
    (("occurred_at",), _bad_time),
    (("occurred_at",), _bad_time),
    (("occurred_at",), _bad_time),
    (("occurred_at",), _valid_time() | _not_str | st.just(DELETE)),
    (("type",), _type),
    (("type",), st.just(DELETE)),
    (("identity",), _identity_any),
    (("identity",), st.sampled_from([DELETE, EMPTY])),
    *[(("identity", t), _bad_identifier_value) for t in ("user_id", "anonymous_id")],
    (("identity", "cookie"), _identifier),
    (("channel",), _near(CHANNEL_VALUES)),
    (("device",), _not_obj),
    (("device", "type"), _near(DEVICE_TYPES)),
    (("device", "os"), _not_str),
    (("device", "app_version"), _not_str),
    (("context",), _not_obj),
    *[(("context", k), _not_str) for k in ("session_id", "page_url", "referrer", "user_agent")],
    (("context", "campaign"), _not_obj),
    *[(("context", "campaign", k), _not_str) for k in ("source", "medium", "name")],
    (("context", "geo"), _not_obj),
    (("context", "geo", "country"), _bad_country),
    (("context", "geo", "country"), _bad_country),
    (("context", "geo", "region"), _not_str),
    (("context", "geo", "city"), _not_str),
    (("properties",), _not_obj),
    (("traits",), _not_obj),
    (("traits", "age"), _number | st.sampled_from(["30", True, False, None, [30], {}])),
    *[(("traits", k), _not_str) for k in STRING_TRAITS],
    (("traits", "interests"), st.lists(_line | _not_str, min_size=1, max_size=3) | _not_str),
    (("traits", "newsletter_opt_in"), st.sampled_from(["true", 1, 0, None, "false", 1.0])),
    (("source",), _not_str),
]


def _apply(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if type(node) is not dict:
            return
    if value is DELETE:
        node.pop(path[-1], None)
    elif value is EMPTY:
        node[path[-1]] = {}
    else:
        node[path[-1]] = value


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event (random optional fields, unknown members) with 0..3 subtle changes."""
    data: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=10)),
        "occurred_at": draw(_valid_time()),
        "type": draw(st.sampled_from(["page_view", "purchase", "identify", "a.b:c-d_9"])),
        "identity": draw(_identity_valid),
    }
    data.update(draw(st.fixed_dictionaries({}, optional=_VALID_OPTIONAL)))
    data.update(draw(st.dictionaries(_line.filter(lambda k: k not in SCHEMA["properties"]),
                                     _any_json, max_size=2)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        path, strategy = MUTATIONS[draw(st.integers(0, len(MUTATIONS) - 1))]
        _apply(data, path, draw(strategy))
    return data


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_like())
def test_parser_accepts_what_the_schema_accepts(data: dict[str, Any]) -> None:
    """A schema-valid event is accepted untouched; what the parser accepts after dropping
    or coercing optional fields is schema-valid; what it refuses, the schema refuses."""
    schema_ok = VALIDATOR.is_valid(data)
    parser = TouchpointParser(SHAPE_ONLY)
    kept = copy.deepcopy(data)
    try:
        parser.check(kept)
    except InvalidEvent as exc:
        assert exc.code in CODES, exc.code
        assert not schema_ok, [e.message for e in VALIDATOR.iter_errors(data)]
        return
    repairs = sum(parser.optional.dropped.values()) + sum(parser.optional.coerced.values())
    assert (repairs == 0) == schema_ok, (parser.optional.dropped, parser.optional.coerced)
    VALIDATOR.validate(kept)
    if schema_ok:  # and the bytes path agrees with the dict path
        assert TouchpointParser(SHAPE_ONLY).parse(orjson.dumps(data)).event_id == \
            data["event_id"]


# The parser and the schema disagree on these timestamps. Each is a bug to fix in
# one of the two; the reason says which side is wrong by RFC 3339.
@pytest.mark.parametrize("value", [
    "2025-03-01T12:30:00z",
    "2025-03-01T12:30:00.25+05:75",
    "2016-12-31T23:59:60Z",
    "0000-01-01T00:00:00Z",
    "2025-03-01T12:30:00." + "0" * 42 + "Z",
    "2025-03-01T12:30:00." + "0" * 45 + "Z",
    pytest.param("2025-02-30T12:30:00Z", marks=pytest.mark.xfail(strict=True, reason=(
        "schema gap: the pattern cannot check days per month and Draft202012Validator does "
        "not assert format: date-time, so the schema accepts 30 February; the parser "
        "correctly rejects it"))),
])
def test_parser_and_schema_agree_on_timestamp_edge_cases(value: str) -> None:
    data = event(occurred_at=value)
    try:
        TouchpointParser(SHAPE_ONLY).check(copy.deepcopy(data))
    except InvalidEvent:
        accepted = False
    else:
        accepted = True
    assert accepted == VALIDATOR.is_valid(data)


def test_an_event_carried_as_json_is_passed_on_unread_and_read_when_asked() -> None:
    sent = b'{"type": "page_view",  "properties": {"n": [1, 2.5]}}'  # not orjson's spacing
    tp = CarriedTouchpoint(sent, "e-1", 1.5, "page_view", {"user_id": "u-1"})
    assert isinstance(tp, Touchpoint)
    assert tp.data_json() is sent  # nobody read it: the same bytes go on
    assert tp.data == {"type": "page_view", "properties": {"n": [1, 2.5]}}
    tp.data["properties"]["n"].append(3)  # read, and changed here (as pseudonymising does)
    assert orjson.loads(tp.data_json()) == {"type": "page_view", "properties": {"n": [1, 2.5, 3]}}
    tp.data = {"type": "click"}
    assert tp.data_json() == b'{"type":"click"}'
