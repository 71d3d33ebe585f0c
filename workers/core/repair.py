"""Optional fields: lenient where it is safe, loud always.

One bad optional field must not cost the whole event: a country name where an
ISO code belongs, ``device.type: "ios"``, ``channel: "browser"``. Such a field
is dropped and the drop counted per field; a value whose meaning is not in
doubt is coerced and counted (``"22.50"`` -> 22.5 for the revenue, ``"34"`` ->
34 for an age, ``42`` -> ``"42"`` for an identifier). Nothing is zeroed and
nothing disappears without a count: the summary and the metrics carry
``fields_dropped`` and ``values_coerced`` by field. Required fields stay strict
(:class:`~workers.core.touchpoints.TouchpointParser`).
"""

from __future__ import annotations

import math
import re
from typing import Any

CHANNELS = frozenset(
    ("web", "mobile_app", "email", "social", "sms", "ads", "store", "call_center", "other")
)
DEVICE_TYPES = frozenset(("mobile", "desktop", "tablet", "other"))
STRING_TRAITS = ("gender", "income_band", "country", "region", "city", "industry",
                 "company_size", "job_title")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_ABSENT: Any = object()
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_STRUCT = {"device": ("os", "app_version"),
           "context": ("session_id", "page_url", "referrer", "user_agent"),
           "context.campaign": ("source", "medium", "name"),
           "context.geo": ("country", "region", "city")}


class OptionalFields:
    """Repairs a decoded event's optional fields in place and counts what it did."""

    def __init__(self, amount_key: str = "revenue") -> None:
        self.amount_key = amount_key
        self.dropped: dict[str, int] = {}
        self.coerced: dict[str, int] = {}

    def repair(self, data: dict[str, Any]) -> None:
        """Drop what cannot be used, coerce what is unambiguous; never raises."""
        channel = data.get("channel", _ABSENT)
        if channel is not _ABSENT and (type(channel) is not str or channel not in CHANNELS):
            self._drop(data, "channel", "channel")
        if "source" in data and type(data["source"]) is not str:
            self._drop(data, "source", "source")
        device = self._object(data, "device", "device")
        if device is not None:
            dtype = device.get("type", _ABSENT)
            if dtype is not _ABSENT and (type(dtype) is not str or dtype not in DEVICE_TYPES):
                self._drop(device, "type", "device.type")
            self._strings(device, "device")
        self._context(data)
        properties = self._object(data, "properties", "properties")
        if properties is not None and self.amount_key in properties:
            self._number(properties, self.amount_key, f"properties.{self.amount_key}")
        self._traits(data)

    def _context(self, data: dict[str, Any]) -> None:
        context = self._object(data, "context", "context")
        if context is None:
            return
        self._strings(context, "context")
        campaign = self._object(context, "campaign", "context.campaign")
        if campaign is not None:
            self._strings(campaign, "context.campaign")
        geo = self._object(context, "geo", "context.geo")
        if geo is not None:
            self._strings(geo, "context.geo")
            country = geo.get("country", _ABSENT)
            if country is not _ABSENT and _COUNTRY_RE.fullmatch(country) is None:
                if len(country) == 2 and country.isalpha() and country.isascii():
                    geo["country"] = country.upper()
                    self._count(self.coerced, "context.geo.country")
                else:
                    self._drop(geo, "country", "context.geo.country")

    def _traits(self, data: dict[str, Any]) -> None:
        traits = self._object(data, "traits", "traits")
        if traits is None:
            return
        if "age" in traits:
            self._number(traits, "age", "traits.age")
        for key in STRING_TRAITS:
            if key in traits and type(traits[key]) is not str:
                self._drop(traits, key, f"traits.{key}")
        interests = traits.get("interests", _ABSENT)
        if interests is not _ABSENT and (type(interests) is not list
                                      or any(type(i) is not str for i in interests)):
            self._drop(traits, "interests", "traits.interests")
        opt_in = traits.get("newsletter_opt_in", _ABSENT)
        if opt_in is not _ABSENT and type(opt_in) is not bool:
            if opt_in in ("true", "false"):
                traits["newsletter_opt_in"] = opt_in == "true"
                self._count(self.coerced, "traits.newsletter_opt_in")
            else:
                self._drop(traits, "newsletter_opt_in", "traits.newsletter_opt_in")

    def _object(self, parent: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
        value = parent.get(key, _ABSENT)
        if value is _ABSENT:
            return None
        if type(value) is dict:
            return value
        self._drop(parent, key, name)
        return None

    def _strings(self, obj: dict[str, Any], name: str) -> None:
        for key in _STRUCT[name]:
            if key in obj and type(obj[key]) is not str:
                self._drop(obj, key, f"{name}.{key}")

    def _number(self, obj: dict[str, Any], key: str, name: str) -> None:
        """A number stays; a numeric string becomes one (counted); anything else goes."""
        value = obj[key]
        if type(value) in (int, float):
            return
        if type(value) is str and _NUMBER_RE.fullmatch(value.strip()):
            number = float(value)
            if math.isfinite(number):
                obj[key] = number
                self._count(self.coerced, name)
                return
        self._drop(obj, key, name)

    def _drop(self, obj: dict[str, Any], key: str, name: str) -> None:
        del obj[key]
        self._count(self.dropped, name)

    @staticmethod
    def _count(counts: dict[str, int], name: str) -> None:
        counts[name] = counts.get(name, 0) + 1
