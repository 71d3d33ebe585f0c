"""GA4 BigQuery export rows (one JSON object per event, as ``bq extract`` or the
streaming export writes them) read into touchpoints.

A row has no event id, so :func:`event_id` derives one from what makes the row
unique; the same row always gets the same id, so a re-exported day is
de-duplicated. The mapping table is in docs/formats/ga4.md; the configurable
parts are ``intake.ga4``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from workers.config import Config, Ga4Config
from workers.core.formats import Adapter
from workers.core.formats.common import (
    Table,
    compact,
    country_code,
    epoch_time,
    number,
    table_problems,
    text,
)
from workers.core.touchpoints import IntakeLimits, check_size, decode_object
from workers.errors import InvalidEvent

# a repeated key/value struct's value: the first of these that is set
_VALUE_KINDS = ("string_value", "int_value", "double_value", "float_value")
# where an event's campaign comes from, best first: the event's own collected
# source, its UTM parameters, then the user's first-touch traffic_source
_CAMPAIGNS = (("collected_traffic_source", "manual_source", "manual_medium",
               "manual_campaign_name"),
              (None, "source", "medium", "campaign"),
              ("traffic_source", "source", "medium", "name"))
_NOT_SET = frozenset(("(not set)",))
# GA4's stand-ins where there was no campaign: direct traffic names none
_NO_CAMPAIGN = frozenset(("(not set)", "(direct)", "(none)", "(organic)", "(referral)"))


def problems(cfg: Ga4Config) -> Iterator[str]:
    """The configuration check of ``intake.ga4``."""
    return table_problems("ga4", {"event_types": cfg.event_types, "channels": cfg.channels,
                                  "devices": cfg.devices, "countries": cfg.countries})


def flatten(rows: Any, where: str) -> dict[str, Any]:
    """GA4's repeated ``{key, value: {string_value, int_value, ...}}`` as one object.

    ``int_value`` arrives as a string in JSON exports (BigQuery's INT64) and is
    read as a number; a parameter with no value set is left out.
    """
    if rows is None:
        return {}
    if type(rows) is not list:
        raise InvalidEvent("wrong_type", f"{where} must be a list of {{key, value}}")
    flat: dict[str, Any] = {}
    for row in rows:
        key = row.get("key") if type(row) is dict else None
        value = row.get("value") if type(row) is dict else None
        if type(key) is not str or not (value is None or type(value) is dict):
            raise InvalidEvent("wrong_type", f"{where} must be a list of {{key, value}}")
        found = _first_value(value) if value else None
        if found is not None:
            flat[key] = found
    return flat


def _first_value(value: dict[str, Any]) -> Any:
    for kind in _VALUE_KINDS:
        found = value.get(kind)
        if found is not None:
            return found if kind == "string_value" else number(found)
    return None


def event_id(row: dict[str, Any], params: dict[str, Any]) -> str:
    """``ga4-`` and 32 hex digits of the SHA-256 of the row's identifying fields:
    stream_id, user_pseudo_id, event_timestamp, event_name, the batch_* ordering
    fields, and the flattened event_params (sorted by key)."""
    parts = [row.get("stream_id"), row.get("user_pseudo_id"),
             number(row.get("event_timestamp")), row.get("event_name"),
             row.get("batch_event_index"), row.get("batch_page_id"),
             row.get("batch_ordering_id"), params]
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"ga4-{digest[:32]}"


class Ga4Adapter(Adapter):
    """Reads one GA4 export row into one touchpoint."""

    def __init__(self, config: Config) -> None:
        cfg = config.intake.ga4
        self.limits = IntakeLimits.from_config(config)
        self.types = Table(cfg.event_types)
        self.channels = Table(cfg.channels)
        self.devices = Table(cfg.devices)
        self.countries = Table(cfg.countries)
        self.revenue = config.features.revenue_property
        self.product = config.features.product_property

    def events(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """The row's one event; InvalidEvent when it is not a readable row."""
        row = decode_object(check_size(raw, self.limits), self.limits)
        name = text(row.get("event_name"))
        if name is None:
            raise InvalidEvent("missing_field", "event_name is required")
        if row.get("event_timestamp") is None:
            raise InvalidEvent("missing_field", "event_timestamp is required")
        params = flatten(row.get("event_params"), "event_params")
        device, geo = _obj(row, "device"), _obj(row, "geo")
        yield compact({
            "event_id": event_id(row, params),
            "occurred_at": epoch_time(row["event_timestamp"], 1_000_000, "event_timestamp"),
            "type": self.types.event_type([name], name),
            "identity": {"anonymous_id": text(row.get("user_pseudo_id")),
                         "user_id": text(row.get("user_id"))},
            "channel": self.channels.get(row.get("platform")),
            "device": {"type": self.devices.get(device.get("category")),
                       "os": _set(device.get("operating_system")),
                       "app_version": _set(_obj(row, "app_info").get("version"))},
            "context": {
                "session_id": _session(params.get("ga_session_id")),
                "page_url": text(params.get("page_location")),
                "referrer": text(params.get("page_referrer")),
                "campaign": _campaign(row, params),
                "geo": {"country": country_code(geo.get("country"), self.countries),
                        "region": _set(geo.get("region")), "city": _set(geo.get("city"))},
            },
            "properties": self._properties(row, params),
            "traits": flatten(row.get("user_properties"), "user_properties"),
            "source": "ga4",
        })

    def _properties(self, row: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """The event's parameters, its revenue, and a summary of its items."""
        props = dict(params)
        ecommerce = _obj(row, "ecommerce")
        revenue = number(ecommerce.get("purchase_revenue"))
        if revenue is None:
            revenue = number(row.get("event_value_in_usd"))
        if revenue is not None:
            props[self.revenue] = revenue
        props["transaction_id"] = _set(ecommerce.get("transaction_id"))
        items = row.get("items") or []
        if type(items) is not list or any(type(item) is not dict for item in items):
            raise InvalidEvent("wrong_type", "items must be a list of objects")
        if items:
            ids = [i for i in (text(item.get("item_id")) for item in items) if i is not None]
            quantities = [number(item.get("quantity")) or 0 for item in items]
            props.update(item_count=len(items), quantity=sum(quantities), product_ids=ids)
            if len(items) == 1 and ids:
                props[self.product] = ids[0]
        return props


def _obj(row: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested record; absent is empty, anything but an object is unreadable."""
    value = row.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidEvent("wrong_type", f"{key} must be an object")
    return value


def _set(value: Any, placeholders: frozenset[str] = _NOT_SET) -> str | None:
    """A string GA4 really set: not empty and not one of its placeholders."""
    found = text(value)
    return None if found in placeholders else found


def _session(value: Any) -> str | None:
    """ga_session_id is a number (seconds of the session's start); the touchpoint's a string."""
    return str(value) if type(value) is int else text(value)


def _campaign(row: dict[str, Any], params: dict[str, Any]) -> dict[str, str | None]:
    """The first campaign source that names anything (sources are never mixed).

    traffic_source is the user's first touch, not this event's: it is the last resort.
    """
    for record, source, medium, name in _CAMPAIGNS:
        values = params if record is None else _obj(row, record)
        campaign = {"source": _set(values.get(source), _NO_CAMPAIGN),
                    "medium": _set(values.get(medium), _NO_CAMPAIGN),
                    "name": _set(values.get(name), _NO_CAMPAIGN)}
        if any(campaign.values()):
            return campaign
    return {}
