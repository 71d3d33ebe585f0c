"""CSV lines into touchpoints by the configured column map: both fixture files, the
header, times, numbers and booleans, derived ids, and the unreadable lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workers.config import Config, load
from workers.core.formats.csv import CsvAdapter, line_id
from workers.core.touchpoints import Touchpoint
from workers.errors import ConfigError, InvalidEvent

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "csv"
CLICKS = (FIXTURES / "clickstream.csv").read_bytes().splitlines()
PURCHASES = (FIXTURES / "purchases.csv").read_bytes().splitlines()


@pytest.fixture(scope="module")
def adapter(config: Config) -> CsvAdapter:
    return CsvAdapter(config)


@pytest.fixture(scope="module")
def purchases() -> CsvAdapter:
    return CsvAdapter(load(FIXTURES / "purchases.yaml", env={}))


def one(adapter: CsvAdapter, raw: bytes) -> dict[str, Any]:
    (event,) = adapter.events(raw)
    return event


def test_the_header_is_skipped_and_every_line_is_a_touchpoint(
        adapter: CsvAdapter, config: Config,
        accept: Callable[[Config, dict[str, Any]], Touchpoint]) -> None:
    assert list(adapter.events(CLICKS[0])) == []
    events = [event for line in CLICKS for event in adapter.events(line)]
    assert [accept(config, event).event_id for event in events] == [
        f"cs-000{i}" for i in range(1, 7)]


def test_columns_fill_their_touchpoint_fields(adapter: CsvAdapter) -> None:
    assert one(adapter, CLICKS[4]) == {
        "event_id": "cs-0004", "occurred_at": "2024-05-06T08:02:00.000Z", "type": "purchase",
        "identity": {"user_id": "u-71", "anonymous_id": "anon-71", "email": "rosa@shop.test"},
        "channel": "web", "properties": {"product_id": "mug-blue", "revenue": 22.5}}
    assert one(adapter, CLICKS[5])["identity"]["email"] == "kim, j@shop.test"  # quoted cell


@pytest.mark.parametrize(("index", "expected"), [
    (1, "2024-05-06T08:00:00.000Z"), (2, "2024-05-06T08:00:40.250Z"),
    (3, "2024-05-06T08:01:10.000Z"),  # no offset: UTC
    (4, "2024-05-06T08:02:00.000Z"),  # +02:00
])
def test_iso_times(adapter: CsvAdapter, index: int, expected: str) -> None:
    assert one(adapter, CLICKS[index])["occurred_at"] == expected


def test_number_columns_are_numbers_and_empty_cells_are_absent(adapter: CsvAdapter) -> None:
    assert one(adapter, CLICKS[6])["properties"] == {"revenue": -5}
    assert "properties" not in one(adapter, CLICKS[1])


def test_a_purchase_log_in_its_own_layout(
        purchases: CsvAdapter, accept: Callable[[Config, dict[str, Any]], Touchpoint]) -> None:
    config = load(FIXTURES / "purchases.yaml", env={})
    events = [event for line in PURCHASES for event in purchases.events(line)]
    assert [accept(config, event).type for event in events] == ["purchase", "purchase",
                                                                "purchase", "refund"]
    assert events[0] == {
        "event_id": line_id(PURCHASES[0].decode()), "occurred_at": "2024-05-06T08:00:00.000Z",
        "type": "purchase", "identity": {"crm_id": "C-501", "email": "lee@shop.test"},
        "properties": {"order_id": "A-1001", "revenue": 59.9, "payment_method": "card"},
        "context": {"geo": {"country": "SE"}}, "traits": {"newsletter_opt_in": True}}
    assert events[1]["occurred_at"] == "2024-05-06T09:00:00.500Z"
    assert events[1]["traits"] == {"newsletter_opt_in": False}
    assert events[2]["type"] == "purchase"  # "ORDER": the table is case-insensitive


def test_the_derived_id_is_the_lines_and_tells_lines_apart(purchases: CsvAdapter) -> None:
    first = one(purchases, PURCHASES[0])["event_id"]
    assert first.startswith("csv-") and len(first) == 36
    assert one(purchases, PURCHASES[0] + b"\r\n")["event_id"] == first
    assert len({one(purchases, line)["event_id"] for line in PURCHASES}) == len(PURCHASES)


@pytest.mark.parametrize(("time_format", "cell", "expected"), [
    ("epoch_s", "1714982400", "2024-05-06T08:00:00.000Z"),
    ("epoch_s", "1714982400.5", "2024-05-06T08:00:00.500Z"),
    ("epoch_ms", "1714982400123", "2024-05-06T08:00:00.123Z"),
    ("epoch_us", "1714982400123456", "2024-05-06T08:00:00.123Z"),
])
def test_epoch_time_formats(with_format: Callable[..., Config], time_format: str, cell: str,
                            expected: str) -> None:
    adapter = CsvAdapter(with_format("csv", time_format=time_format))
    line = f"e1,{cell},page_view,,a1,,,,".encode()
    assert one(adapter, line)["occurred_at"] == expected


def test_country_is_alpha_2_or_left_out(purchases: CsvAdapter) -> None:
    line = PURCHASES[0].decode()
    assert one(purchases, line.replace(";SE;", ";se;").encode())["context"] == {
        "geo": {"country": "SE"}}
    assert "context" not in one(purchases, line.replace(";SE;", ";Sweden;").encode())


def test_a_header_line_is_data_when_the_file_has_none(
        with_format: Callable[..., Config]) -> None:
    adapter = CsvAdapter(with_format("csv", header=False))
    with pytest.raises(InvalidEvent) as caught:
        one(adapter, CLICKS[0])
    assert caught.value.code == "bad_timestamp"


INVALID = {0: "bad_field_count", 1: "bad_field_count", 2: "bad_timestamp", 3: "bad_value",
           4: "bad_csv"}


@pytest.mark.parametrize(("index", "code"), sorted(INVALID.items()))
def test_unreadable_lines_are_dead_letters_with_their_reason(
        adapter: CsvAdapter, index: int, code: str) -> None:
    raw = (FIXTURES / "invalid.csv").read_bytes().splitlines()[index]
    with pytest.raises(InvalidEvent) as caught:
        one(adapter, raw)
    assert caught.value.code == code


@pytest.mark.parametrize(("raw", "code"), [(b"", "empty"), (b"\xff,x", "not_utf8")])
def test_empty_and_binary_lines(adapter: CsvAdapter, raw: bytes, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        one(adapter, raw)
    assert caught.value.code == code


def test_a_bad_boolean_is_loud(purchases: CsvAdapter) -> None:
    with pytest.raises(InvalidEvent, match="newsletter 'maybe' is not true or false"):
        one(purchases, PURCHASES[0].replace(b";yes", b";maybe"))


@pytest.mark.parametrize(("yaml", "problem"), [
    ("delimiter: ';;'", r"intake\.csv\.delimiter ';;' must be one character"),
    ("fields: [a, a]", r"intake\.csv\.fields must name each"),
    ("columns: {occurred_at: occurred_at, type: type, identity.user_id: nope}",
     r"column 'nope' is not in intake\.csv\.fields"),
    ("columns: {occurred_at: occurred_at, type: type, identity.cookie: user_id}",
     r"'identity\.cookie' is not a touchpoint field"),
    ("columns: {occurred_at: occurred_at, identity.user_id: user_id}",
     r"must say which column holds type"),
    ("columns: {occurred_at: occurred_at, type: type}", r"at least one column to identity"),
    ("numbers: [properties.price]", r"intake\.csv\.numbers: 'properties\.price' is not a key"),
    ("event_types: {Visit: Page View}", r"intake\.csv\.event_types\.Visit: 'Page View'"),
])
def test_a_column_map_that_cannot_work_fails_at_start(tmp_path: Path, yaml: str,
                                                      problem: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"intake:\n  csv:\n    {yaml}\n")
    with pytest.raises(ConfigError, match=problem):
        load(path, env={})
