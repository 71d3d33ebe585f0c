"""Snowplow enriched events (TSV and SDK JSON) into touchpoints: every fixture, each
mapping rule, the unreadable lines, and the same profiles as the touchpoint stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import Config, load
from workers.core.formats.snowplow import FIELDS, SnowplowAdapter
from workers.core.pipeline import Pipeline
from workers.core.touchpoints import Touchpoint
from workers.errors import ConfigError, InvalidEvent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "snowplow"
TSV = (FIXTURES / "enriched.tsv").read_bytes().splitlines()
TOUCHPOINTS = (FIXTURES / "touchpoints.jsonl").read_bytes().splitlines()
EXPECTED = [orjson.loads(line) for line in TOUCHPOINTS]
BASE = {"event": "page_view", "event_id": "e-1", "collector_tstamp": "2024-05-06 10:00:00.000",
        "domain_userid": "cookie-1"}


def tsv(**fields: str) -> bytes:
    """One enriched line: BASE with ``fields`` over it, every other field empty."""
    merged = {**BASE, **fields}
    return "\t".join(merged.get(name, "") for name in FIELDS).encode()


def one(adapter: SnowplowAdapter, raw: bytes) -> dict[str, Any]:
    (event,) = adapter.events(raw)
    return event


@pytest.fixture(scope="module")
def adapter(config: Config) -> SnowplowAdapter:
    return SnowplowAdapter(config)


@pytest.mark.parametrize("index", range(len(TSV)))
def test_every_fixture_line_is_its_touchpoint(
        adapter: SnowplowAdapter, config: Config, index: int,
        accept: Callable[[Config, dict[str, Any]], Touchpoint]) -> None:
    event = one(adapter, TSV[index])
    assert event == EXPECTED[index]
    assert accept(config, event).event_id == EXPECTED[index]["event_id"]


@pytest.mark.parametrize(("json_line", "tsv_line"), [(0, 0), (1, 4), (2, 6)])
def test_the_sdk_json_shape_means_the_same(adapter: SnowplowAdapter, json_line: int,
                                           tsv_line: int) -> None:
    raw = (FIXTURES / "enriched.jsonl").read_bytes().splitlines()[json_line]
    assert one(adapter, raw) == EXPECTED[tsv_line]


def test_both_field_counts_are_read(adapter: SnowplowAdapter) -> None:
    line = tsv(page_url="https://a.example/")
    assert line.count(b"\t") == 130
    short = line.rsplit(b"\t", 1)[0]
    assert one(adapter, short) == one(adapter, line)
    assert one(adapter, line + b"\r\n") == one(adapter, line)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"derived_tstamp": "2024-05-06 09:00:00.250", "dvce_created_tstamp": "2024-05-06 08:00:00"},
     "2024-05-06T09:00:00.250Z"),
    ({"dvce_created_tstamp": "2024-05-06 08:00:00"}, "2024-05-06T08:00:00.000Z"),
    ({}, "2024-05-06T10:00:00.000Z"),
])
def test_event_time_prefers_derived_then_device_then_collector(
        adapter: SnowplowAdapter, fields: dict[str, str], expected: str) -> None:
    assert one(adapter, tsv(**fields))["occurred_at"] == expected


@pytest.mark.parametrize(("fields", "expected"), [
    ({"event": "struct", "se_category": "checkout", "se_action": "start"}, "checkout_started"),
    ({"event": "struct", "se_category": "cart", "se_action": "start"}, "funnel_start"),
    ({"event": "struct", "se_action": "Share Page"}, "share_page"),
    ({"event": "struct"}, "struct"),
    ({"event": "transaction"}, "purchase"),
    ({"event": "unstruct", "event_name": "submit_form",
      "unstruct_event": '{"schema":"iglu:c/unstruct_event/jsonschema/1-0-0","data":{"schema":'
                        '"iglu:com.snowplowanalytics.snowplow/submit_form/jsonschema/1-0-0",'
                        '"data":{"formId":"f1"}}}'}, "form_submit"),
])
def test_event_types_come_from_the_table(
        with_format: Callable[..., Config], fields: dict[str, str], expected: str) -> None:
    table = {**load(env={}).intake.snowplow.event_types, "checkout:start": "checkout_started",
             "start": "funnel_start"}
    adapter = SnowplowAdapter(with_format("snowplow", event_types=table))
    assert one(adapter, tsv(**fields))["type"] == expected


def test_the_schema_name_is_read_from_the_tsv_column_without_event_name(
        adapter: SnowplowAdapter) -> None:
    column = ('{"schema":"iglu:c/unstruct_event/jsonschema/1-0-0","data":{"schema":'
              '"iglu:com.acme/Wish_List/jsonschema/2-0-1","data":{"sku":"s-9"}}}')
    event = one(adapter, tsv(event="unstruct", unstruct_event=column))
    assert (event["type"], event["properties"]["sku"]) == ("wish_list", "s-9")


def test_identity_follows_the_table_first_field_winning(
        adapter: SnowplowAdapter, with_format: Callable[..., Config]) -> None:
    line = tsv(user_id="u-1", network_userid="net-1")
    assert one(adapter, line)["identity"] == {"user_id": "u-1", "anonymous_id": "cookie-1",
                                              "device_id": "net-1"}
    cookies_only = SnowplowAdapter(with_format("snowplow", identity={
        "domain_userid": "anonymous_id", "network_userid": "anonymous_id"}))
    assert one(cookies_only, line)["identity"] == {"anonymous_id": "cookie-1"}
    assert one(cookies_only, tsv(domain_userid="", network_userid="net-1"))["identity"] == {
        "anonymous_id": "net-1"}


@pytest.mark.parametrize(("fields", "expected"), [
    ({"dvce_type": "Computer"}, "desktop"),
    ({"dvce_type": "Game console"}, "other"),
    ({"br_type": "Browser (mobile)"}, "mobile"),
    ({"dvce_ismobile": "1"}, "mobile"),
    ({"dvce_type": "Unknown"}, None),
])
def test_device_type_from_dvce_type_then_br_type_then_dvce_ismobile(
        adapter: SnowplowAdapter, fields: dict[str, str], expected: str | None) -> None:
    assert one(adapter, tsv(**fields)).get("device", {}).get("type") == expected


@pytest.mark.parametrize(("platform", "channel"), [("web", "web"), ("mob", "mobile_app"),
                                                   ("srv", "other"), ("", None), ("xyz", None)])
def test_channel_from_platform(adapter: SnowplowAdapter, platform: str,
                               channel: str | None) -> None:
    assert one(adapter, tsv(platform=platform)).get("channel") == channel


def test_a_country_that_is_not_alpha_2_is_left_out(adapter: SnowplowAdapter) -> None:
    event = one(adapter, tsv(geo_country="Germany", geo_city="Bonn", geo_region="NW"))
    assert event["context"]["geo"] == {"region": "NW", "city": "Bonn"}


def test_revenue_and_product_follow_the_feature_properties() -> None:
    config = load(env={"PERSONA_STREAM_FEATURES__REVENUE_PROPERTY": "amount",
                       "PERSONA_STREAM_FEATURES__PRODUCT_PROPERTY": "sku"})
    adapter = SnowplowAdapter(config)
    assert one(adapter, tsv(event="transaction", tr_total="10"))["properties"]["amount"] == 10
    assert one(adapter, tsv(event="transaction_item", ti_sku="s1"))["properties"]["sku"] == "s1"


def test_se_value_is_a_number_and_other_columns_are_not_read_as_properties(
        adapter: SnowplowAdapter) -> None:
    event = one(adapter, tsv(event="struct", se_action="a", se_value="3", tr_total="5"))
    assert event["properties"] == {"se_action": "a", "value": 3}


INVALID = {  # invalid.tsv, line by line
    0: "bad_field_count", 1: "bad_field_count", 2: "bad_self_describing",
    3: "bad_self_describing", 4: "bad_value", 5: "bad_timestamp",
}


@pytest.mark.parametrize(("index", "code"), sorted(INVALID.items()))
def test_unreadable_lines_are_dead_letters_with_their_reason(
        adapter: SnowplowAdapter, index: int, code: str) -> None:
    raw = (FIXTURES / "invalid.tsv").read_bytes().splitlines()[index]
    with pytest.raises(InvalidEvent) as caught:
        one(adapter, raw)
    assert caught.value.code == code
    assert caught.value.detail


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "empty"), (b"\xff" + b"\t" * 130, "not_utf8"), (b"{not json", "not_json"),
    (b"x" * 70_000, "too_large"), (b"just one field", "bad_field_count"),
])
def test_records_of_neither_shape(adapter: SnowplowAdapter, raw: bytes, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        one(adapter, raw)
    assert caught.value.code == code


def test_missing_required_fields_are_left_to_the_touchpoint_check(
        adapter: SnowplowAdapter, config: Config,
        accept: Callable[[Config, dict[str, Any]], Touchpoint]) -> None:
    event = one(adapter, tsv(event_id="", collector_tstamp=""))
    with pytest.raises(InvalidEvent, match="event_id is required"):
        accept(config, event)


def test_a_table_value_the_touchpoint_cannot_hold_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("intake:\n  snowplow:\n    channels: {web: browser}\n")
    with pytest.raises(ConfigError, match=r"intake\.snowplow\.channels\.web: 'browser'"):
        load(path, env={})


def run(config: Config, records: list[bytes]) -> tuple[list[Any], list[Any], dict[str, Any]]:
    pipeline = Pipeline(config)
    outputs = [out for raw in records for out in pipeline.feed(raw)] + pipeline.flush()
    return ([out.record for out in outputs], list(pipeline.profile_snapshots()),
            pipeline.summary())


def test_the_stream_gives_the_profiles_and_segments_of_its_touchpoint_equivalent() -> None:
    """The adapter's events, fed as touchpoints, change nothing against the hand-written
    touchpoints: profiles, segments and every output record are identical."""
    config = load(env={"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "2",
                       "PERSONA_STREAM_SEGMENTATION__WARMUP_PROFILES": "2",
                       "PERSONA_STREAM_SEGMENTATION__MIN_EVENTS": "1",
                       "PERSONA_STREAM_SEGMENTATION__LEARN_MIN_EVENTS": "1"})
    adapter = SnowplowAdapter(config)
    adapted = [orjson.dumps(event) for line in TSV for event in adapter.events(line)]
    records, profiles, summary = run(config, adapted)
    assert (records, profiles, summary) == run(config, TOUCHPOINTS)
    assert summary["events_valid"] == len(TSV) and summary["profiles"] == 3
    assert summary["segment_changes"] > 0
