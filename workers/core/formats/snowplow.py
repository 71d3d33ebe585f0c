"""Snowplow enriched events, as the enriched TSV line or the analytics-SDK JSON object.

A record starting with ``{`` is the JSON shape (field names as keys, the
unstructured event as ``unstruct_event_<vendor>_<name>_<model>``); anything else
is one TSV line in the canonical field order (:data:`FIELDS`). The mapping table
is in docs/formats/snowplow.md; the configurable parts are ``intake.snowplow``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from workers.config import Config, SnowplowConfig
from workers.core.formats import Adapter
from workers.core.formats.common import (
    Table,
    compact,
    country_code,
    required_number,
    table_problems,
    text,
    utc_time,
)
from workers.core.touchpoints import IntakeLimits, check_size, decode_object
from workers.errors import InvalidEvent

# The enriched event's fields in TSV order (docs.snowplow.io, "Enriched stream TSV
# file format"); field 121 is spelled refr_dvce_tstamp in some SDKs, unused here.
FIELDS: tuple[str, ...] = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event",
    "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id",
    "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx",
    "network_userid", "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude",
    "geo_longitude", "geo_region_name", "ip_isp", "ip_organization", "ip_domain",
    "ip_netspeed", "page_url", "page_title", "page_referrer", "page_urlscheme",
    "page_urlhost", "page_urlport", "page_urlpath", "page_urlquery", "page_urlfragment",
    "refr_urlscheme", "refr_urlhost", "refr_urlport", "refr_urlpath", "refr_urlquery",
    "refr_urlfragment", "refr_medium", "refr_source", "refr_term", "mkt_medium",
    "mkt_source", "mkt_term", "mkt_content", "mkt_campaign", "contexts", "se_category",
    "se_action", "se_label", "se_property", "se_value", "unstruct_event", "tr_orderid",
    "tr_affiliation", "tr_total", "tr_tax", "tr_shipping", "tr_city", "tr_state",
    "tr_country", "ti_orderid", "ti_sku", "ti_name", "ti_category", "ti_price",
    "ti_quantity", "pp_xoffset_min", "pp_xoffset_max", "pp_yoffset_min", "pp_yoffset_max",
    "useragent", "br_name", "br_family", "br_version", "br_type", "br_renderengine",
    "br_lang", "br_features_pdf", "br_features_flash", "br_features_java",
    "br_features_director", "br_features_quicktime", "br_features_realplayer",
    "br_features_windowsmedia", "br_features_gears", "br_features_silverlight",
    "br_cookies", "br_colordepth", "br_viewwidth", "br_viewheight", "os_name", "os_family",
    "os_manufacturer", "os_timezone", "dvce_type", "dvce_ismobile", "dvce_screenwidth",
    "dvce_screenheight", "doc_charset", "doc_width", "doc_height", "tr_currency",
    "tr_total_base", "tr_tax_base", "tr_shipping_base", "ti_currency", "ti_price_base",
    "base_currency", "geo_timezone", "mkt_clickid", "mkt_network", "etl_tags",
    "dvce_sent_tstamp", "refr_domain_userid", "refr_device_tstamp", "derived_contexts",
    "domain_sessionid", "derived_tstamp", "event_vendor", "event_name", "event_format",
    "event_version", "event_fingerprint", "true_tstamp",
)
# 131: the current format; 130: enrich before true_tstamp was added (R71 to R72).
# Both are prefixes of FIELDS. Older lines lack event_name and derived_tstamp.
FIELD_COUNTS = (131, 130)
_COUNTS_TEXT = " or ".join(map(str, FIELD_COUNTS))
# event time, best first: derived_tstamp corrects the device clock's skew
TIME_FIELDS = ("derived_tstamp", "dvce_created_tstamp", "collector_tstamp")

_SCHEMA_RE = re.compile(r"iglu:[^/]+/([^/]+)/[^/]+/\d+-\d+-\d+")
_REVENUE, _PRODUCT = "<revenue>", "<product>"  # features.revenue_property, .product_property
# enriched field -> property, per event; numbers are read as numbers
_PROPERTIES = {
    "struct": {"se_category": "se_category", "se_action": "se_action",
               "se_label": "se_label", "se_property": "se_property", "se_value": "value"},
    "transaction": {"tr_orderid": "order_id", "tr_total": _REVENUE, "tr_tax": "tax",
                    "tr_shipping": "shipping", "tr_currency": "currency",
                    "tr_affiliation": "affiliation"},
    "transaction_item": {"ti_orderid": "order_id", "ti_sku": _PRODUCT, "ti_name": "name",
                         "ti_category": "category", "ti_price": "price",
                         "ti_quantity": "quantity", "ti_currency": "currency"},
}
_NUMERIC = frozenset(("se_value", "tr_total", "tr_tax", "tr_shipping", "ti_price",
                      "ti_quantity"))
_Unstruct = tuple[str, dict[str, Any]] | None


def problems(cfg: SnowplowConfig) -> Iterator[str]:
    """The configuration check of ``intake.snowplow``."""
    return table_problems("snowplow", {"event_types": cfg.event_types,
                                       "identity": cfg.identity, "channels": cfg.channels,
                                       "devices": cfg.devices})


class SnowplowAdapter(Adapter):
    """Reads one enriched event (TSV line or SDK JSON) into one touchpoint."""

    def __init__(self, config: Config) -> None:
        cfg = config.intake.snowplow
        self.limits = IntakeLimits.from_config(config)
        self.types = Table(cfg.event_types)
        self.channels = Table(cfg.channels)
        self.devices = Table(cfg.devices)
        self.identity = tuple(cfg.identity.items())
        names = {_REVENUE: config.features.revenue_property,
                 _PRODUCT: config.features.product_property}
        self.properties = {event: {field: names.get(prop, prop) for field, prop in table.items()}
                           for event, table in _PROPERTIES.items()}

    def events(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """The record's one event; InvalidEvent when it is neither shape."""
        raw = check_size(raw, self.limits)
        if raw.lstrip()[:1] == b"{":
            fields, unstruct = self._from_json(raw)
        else:
            fields, unstruct = self._from_tsv(raw)
        yield self._touchpoint(fields, unstruct)

    def _from_json(self, raw: bytes) -> tuple[dict[str, Any], _Unstruct]:
        """The SDK shape: the unstructured event is the one ``unstruct_event_*`` object."""
        fields = decode_object(raw, self.limits)
        for key, value in fields.items():
            if key.startswith("unstruct_event_") and type(value) is dict:
                name = text(fields.get("event_name")) or key[len("unstruct_event_"):]
                return fields, (name, value)
        return fields, None

    def _from_tsv(self, raw: bytes) -> tuple[dict[str, Any], _Unstruct]:
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise InvalidEvent("not_utf8", "event is not valid UTF-8") from None
        cells = line.split("\t")
        if len(cells) not in FIELD_COUNTS:
            raise InvalidEvent("bad_field_count", f"a Snowplow enriched TSV line has"
                               f" {_COUNTS_TEXT} tab-separated fields, this one has {len(cells)}")
        fields = {name: cell for name, cell in zip(FIELDS, cells, strict=False) if cell}
        column = fields.get("unstruct_event")
        return fields, None if column is None else self._self_describing(column)

    def _self_describing(self, column: str) -> tuple[str, dict[str, Any]]:
        """unstruct_event: ``{"schema", "data": {"schema": iglu:vendor/name/..., "data"}}``."""
        try:
            outer = decode_object(column.encode(), self.limits)
        except InvalidEvent as exc:
            raise InvalidEvent("bad_self_describing", f"unstruct_event: {exc.detail}") from None
        inner = outer.get("data")
        schema = inner.get("schema") if type(inner) is dict else None
        match = _SCHEMA_RE.fullmatch(schema) if type(schema) is str else None
        data = inner.get("data") if type(inner) is dict else None
        if match is None or type(data) is not dict:
            raise InvalidEvent("bad_self_describing", "unstruct_event is not a self-describing"
                               " event (data.schema an Iglu URI, data.data an object)")
        return match.group(1), data

    def _touchpoint(self, f: dict[str, Any], unstruct: _Unstruct) -> dict[str, Any]:
        identity: dict[str, str] = {}
        for field, kind in self.identity:
            value = text(f.get(field))
            if value is not None:
                identity.setdefault(kind, value)
        return compact({
            "event_id": f.get("event_id"),
            "occurred_at": self._time(f),
            "type": self._type(f, unstruct),
            "identity": identity,
            "channel": self.channels.get(f.get("platform")),
            "device": {"type": self._device(f),
                       "os": text(f.get("os_family")) or text(f.get("os_name"))},
            "context": {
                "session_id": text(f.get("domain_sessionid")),
                "page_url": text(f.get("page_url")),
                "referrer": text(f.get("page_referrer")),
                "user_agent": text(f.get("useragent")),
                "campaign": {"source": text(f.get("mkt_source")),
                             "medium": text(f.get("mkt_medium")),
                             "name": text(f.get("mkt_campaign"))},
                "geo": {"country": country_code(f.get("geo_country"), _NO_NAMES),
                        "region": text(f.get("geo_region_name")) or text(f.get("geo_region")),
                        "city": text(f.get("geo_city"))},
            },
            "properties": self._properties(f, unstruct),
            "source": "snowplow",
        })

    @staticmethod
    def _time(f: dict[str, Any]) -> str | None:
        for field in TIME_FIELDS:
            value = text(f.get(field))
            if value is not None:
                return utc_time(value, field)
        return None  # the touchpoint check says occurred_at is missing

    def _type(self, f: dict[str, Any], unstruct: _Unstruct) -> str:
        """Structured: by category:action, then action; unstructured: by schema name
        (``name:data.type`` first, for events such as the e-commerce plugin's)."""
        event = text(f.get("event")) or ""
        if event == "struct":
            action = text(f.get("se_action")) or "struct"
            keys = [f"{text(f.get('se_category')) or ''}:{action}", action]
        elif unstruct is not None:
            name, data = unstruct
            kind = data.get("type")
            keys = [f"{name}:{kind}", name] if type(kind) is str else [name]
        else:
            keys = [text(f.get("event_name")) or event]
        return self.types.event_type(keys, keys[-1])

    def _device(self, f: dict[str, Any]) -> str | None:
        found = self.devices.get(f.get("dvce_type")) or self.devices.get(f.get("br_type"))
        if found is None and f.get("dvce_ismobile") in ("1", True):
            return "mobile"
        return found

    def _properties(self, f: dict[str, Any], unstruct: _Unstruct) -> dict[str, Any]:
        """The unstructured event's own fields, then the event's columns (they win)."""
        props: dict[str, Any] = {}
        if unstruct is not None:
            props.update(unstruct[1])
        for field, prop in self.properties.get(text(f.get("event")) or "", {}).items():
            value = f.get(field)
            if value is not None and value != "":
                props[prop] = required_number(value, field) if field in _NUMERIC else value
        props["page_title"] = text(f.get("page_title"))
        props["app_id"] = text(f.get("app_id"))
        return props


_NO_NAMES = Table({})  # geo_country is alpha-2 already: anything else is left out
