"""GA4 BigQuery export rows into touchpoints: every fixture row, each mapping rule,
the derived event id, and the unreadable rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import Config, load
from workers.core.formats.ga4 import Ga4Adapter, event_id, flatten
from workers.core.touchpoints import Touchpoint
from workers.errors import InvalidEvent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ga4"
ROWS = (FIXTURES / "events.jsonl").read_bytes().splitlines()
INVALID = (FIXTURES / "invalid.jsonl").read_bytes().splitlines()


@pytest.fixture(scope="module")
def adapter(config: Config) -> Ga4Adapter:
    return Ga4Adapter(config)


@pytest.fixture(scope="module")
def events(adapter: Ga4Adapter) -> list[dict[str, Any]]:
    return [event for row in ROWS for event in adapter.events(row)]


def row(index: int, **changes: Any) -> bytes:
    """A fixture row with some top-level fields replaced."""
    return orjson.dumps({**orjson.loads(ROWS[index]), **changes})


def one(adapter: Ga4Adapter, raw: bytes) -> dict[str, Any]:
    (event,) = adapter.events(raw)
    return event


def test_every_fixture_row_is_a_touchpoint(
        events: list[dict[str, Any]], config: Config,
        accept: Callable[[Config, dict[str, Any]], Touchpoint]) -> None:
    assert len(events) == len(ROWS)
    assert [accept(config, event).type for event in events] == [
        "page_view", "product_view", "add_to_cart", "checkout_started", "purchase",
        "page_view", "search", "signup", "share-recipe", "purchase"]


def test_time_is_the_microsecond_timestamp_as_string_or_number(
        events: list[dict[str, Any]]) -> None:
    assert events[0]["occurred_at"] == "2024-05-06T10:00:01.123Z"  # "1714989601123456"
    assert events[1]["occurred_at"] == "2024-05-06T10:00:50.000Z"  # 1714989650000001


def test_identity_is_the_pseudo_id_and_the_user_id(events: list[dict[str, Any]]) -> None:
    assert events[0]["identity"] == {"anonymous_id": "1803412345.1714980000"}
    assert events[4]["identity"] == {"anonymous_id": "1803412345.1714980000",
                                     "user_id": "member-501"}


def test_params_and_user_properties_are_flattened(events: list[dict[str, Any]]) -> None:
    assert events[0]["properties"] == {
        "ga_session_id": 1714989600, "ga_session_number": 4, "engaged_session_event": 1,
        "page_location": "https://tea.example.com/?utm_source=google&utm_medium=cpc"
                         "&utm_campaign=spring_tea",
        "page_title": "Tea shop", "page_referrer": "https://www.google.com/"}
    assert events[4]["traits"] == {"age": 41, "plan": "gold"}
    assert events[8]["properties"] == {"recipe": "cold brew", "rating": 4.5}


def test_page_and_session_go_to_the_context(events: list[dict[str, Any]]) -> None:
    context = events[0]["context"]
    assert (context["session_id"], context["page_url"], context["referrer"]) == (
        "1714989600", "https://tea.example.com/?utm_source=google&utm_medium=cpc"
                      "&utm_campaign=spring_tea", "https://www.google.com/")


def test_revenue_from_ecommerce_else_event_value(events: list[dict[str, Any]]) -> None:
    assert events[4]["properties"]["revenue"] == 42.5
    assert events[4]["properties"]["transaction_id"] == "T-77001"
    assert events[9]["properties"] == {"currency": "USD", "revenue": 9.99}
    assert "revenue" not in events[3]["properties"]
    assert "transaction_id" not in events[3]["properties"]  # "(not set)"


def test_items_are_summarised(events: list[dict[str, Any]]) -> None:
    one_item, two_items = events[1]["properties"], events[4]["properties"]
    assert (one_item["item_count"], one_item["quantity"], one_item["product_id"]) == (
        1, 1, "oolong-250")
    assert (two_items["item_count"], two_items["quantity"], two_items["product_ids"]) == (
        2, 3, ["oolong-250", "sencha-100"])
    assert "product_id" not in two_items


def test_device_platform_and_geo(events: list[dict[str, Any]]) -> None:
    assert (events[0]["channel"], events[0]["device"]) == ("web", {"type": "desktop",
                                                                   "os": "Macintosh"})
    assert (events[5]["channel"], events[5]["device"]) == (
        "mobile_app", {"type": "mobile", "os": "Android", "app_version": "5.2.0"})
    assert events[0]["context"]["geo"] == {"country": "US", "region": "Oregon",
                                           "city": "Portland"}
    assert events[6]["context"]["geo"] == {"country": "DE"}  # "(not set)" region and city
    assert events[7]["context"]["geo"] == {"city": "Tarawa"}  # a name the table lacks


def test_campaign_is_the_events_own_then_its_params_then_the_first_touch(
        adapter: Ga4Adapter, events: list[dict[str, Any]]) -> None:
    assert events[0]["context"]["campaign"] == {"source": "google", "medium": "cpc",
                                                "name": "spring_tea"}
    assert "campaign" not in events[1]["context"]  # first touch (direct)/(none): no campaign
    assert events[7]["context"]["campaign"] == {"source": "instagram", "medium": "social",
                                                "name": "launch_week"}
    params = [{"key": "source", "value": {"string_value": "partner"}},
              {"key": "campaign", "value": {"string_value": "co-brand"}}]
    assert one(adapter, row(7, event_params=params))["context"]["campaign"] == {
        "source": "partner", "name": "co-brand"}


def test_event_names_follow_the_table(with_format: Callable[..., Config]) -> None:
    table = {**load(env={}).intake.ga4.event_types, "share-recipe": "social_engagement"}
    adapter = Ga4Adapter(with_format("ga4", event_types=table))
    assert one(adapter, ROWS[8])["type"] == "social_engagement"


def test_the_event_id_is_deterministic_and_tells_rows_apart(adapter: Ga4Adapter) -> None:
    first = one(adapter, ROWS[0])["event_id"]
    assert first.startswith("ga4-") and len(first) == 36
    assert one(adapter, ROWS[0])["event_id"] == first
    same_time_as_number = row(0, event_timestamp=1714989601123456)
    assert one(adapter, same_time_as_number)["event_id"] == first
    assert one(adapter, row(0, batch_event_index=9))["event_id"] != first
    assert one(adapter, row(0, event_params=[]))["event_id"] != first
    assert one(adapter, row(0, user_pseudo_id="other"))["event_id"] != first


def test_event_id_hashes_the_flattened_params_in_key_order() -> None:
    base = {"user_pseudo_id": "p", "event_timestamp": "1", "event_name": "x"}
    assert event_id(base, {"a": 1, "b": 2}) == event_id(base, {"b": 2, "a": 1})


def test_flatten_takes_the_value_that_is_set() -> None:
    rows = [{"key": "s", "value": {"string_value": "x", "int_value": None}},
            {"key": "i", "value": {"string_value": None, "int_value": "7"}},
            {"key": "d", "value": {"double_value": 0.5}},
            {"key": "f", "value": {"float_value": 1.5}},
            {"key": "none", "value": {"string_value": None}},
            {"key": "absent", "value": None}]
    assert flatten(rows, "event_params") == {"s": "x", "i": 7, "d": 0.5, "f": 1.5}


EXPECTED_INVALID = ["missing_field", "missing_field", "bad_timestamp", "wrong_type",
                    "wrong_type", "wrong_type", "wrong_type", "not_object"]


@pytest.mark.parametrize(("index", "code"), list(enumerate(EXPECTED_INVALID)))
def test_unreadable_rows_are_dead_letters_with_their_reason(
        adapter: Ga4Adapter, index: int, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        one(adapter, INVALID[index])
    assert caught.value.code == code


def test_a_row_without_any_id_is_left_to_the_touchpoint_check(
        adapter: Ga4Adapter, config: Config,
        accept: Callable[[Config, dict[str, Any]], Touchpoint]) -> None:
    event = one(adapter, row(8, user_pseudo_id=None))
    with pytest.raises(InvalidEvent, match="identity is required"):
        accept(config, event)
