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
COUNTRY_RE = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2
_ABSENT: Any = object()
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_STRUCT = {"device": ("os", "app_version"),
           "context": ("session_id", "page_url", "referrer", "user_agent"),
           "context.campaign": ("source", "medium", "name"),
           "context.geo": ("country", "region", "city")}
_STRING_FIELDS = {name: frozenset(keys) for name, keys in _STRUCT.items()}


def _is_country(value: str) -> bool:
    """``COUNTRY_RE.fullmatch(value)``, spelled out: most events carry a country, and two
    comparisons cost less than a regular expression's call."""
    return len(value) == 2 and "A" <= value[0] <= "Z" and "A" <= value[1] <= "Z"


class OptionalFields:
    """Repairs a decoded event's optional fields in place and counts what it did."""

    def __init__(self, amount_key: str = "revenue") -> None:
        self.amount_key = amount_key
        self.dropped: dict[str, int] = {}
        self.coerced: dict[str, int] = {}

    def repair(self, data: dict[str, Any]) -> None:
        """Drop what cannot be used, coerce what is unambiguous; never raises.

        Written for the usual case, a valid event: one look per field, no call
        unless something is wrong.
        """
        channel = data.get("channel", _ABSENT)
        if channel is not _ABSENT and (type(channel) is not str or channel not in CHANNELS):
            self._drop(data, "channel", "channel")
        source = data.get("source", _ABSENT)
        if source is not _ABSENT and type(source) is not str:
            self._drop(data, "source", "source")
        device = data.get("device", _ABSENT)
        if type(device) is dict:
            self._device(device)
        elif device is not _ABSENT:
            self._drop(data, "device", "device")
        context = data.get("context", _ABSENT)
        if type(context) is dict:
            self._context(context)
        elif context is not _ABSENT:
            self._drop(data, "context", "context")
        properties = data.get("properties", _ABSENT)
        if type(properties) is dict:
            self._amount(properties)
        elif properties is not _ABSENT:
            self._drop(data, "properties", "properties")
        traits = data.get("traits", _ABSENT)
        if type(traits) is dict:
            self._traits(traits)
        elif traits is not _ABSENT:
            self._drop(data, "traits", "traits")

    def _context(self, context: dict[str, Any]) -> None:
        self._strings(context, "context")
        campaign = context.get("campaign", _ABSENT)
        if type(campaign) is dict:
            self._strings(campaign, "context.campaign")
        elif campaign is not _ABSENT:
            self._drop(context, "campaign", "context.campaign")
        geo = context.get("geo", _ABSENT)
        if type(geo) is dict:
            self._geo(geo)
        elif geo is not _ABSENT:
            self._drop(context, "geo", "context.geo")

    # one method per object the event may carry: each reads its object as a typed dict
    # where compiled (a lookup in C, not a call of its get method)

    def _device(self, device: dict[str, Any]) -> None:
        dtype = device.get("type", _ABSENT)
        if dtype is not _ABSENT and (type(dtype) is not str or dtype not in DEVICE_TYPES):
            self._drop(device, "type", "device.type")
        self._strings(device, "device")

    def _amount(self, properties: dict[str, Any]) -> None:
        amount = properties.get(self.amount_key, _ABSENT)
        if amount is not _ABSENT and type(amount) is not int and type(amount) is not float:
            self._number(properties, self.amount_key, f"properties.{self.amount_key}")

    def _geo(self, geo: dict[str, Any]) -> None:
        self._strings(geo, "context.geo")
        country = geo.get("country", _ABSENT)
        if country is not _ABSENT and not _is_country(country):
            if len(country) == 2 and country.isalpha() and country.isascii():
                geo["country"] = country.upper()
                self._count(self.coerced, "context.geo.country")
            else:
                self._drop(geo, "country", "context.geo.country")

    def _traits(self, traits: dict[str, Any]) -> None:
        age = traits.get("age", _ABSENT)
        if age is not _ABSENT and type(age) is not int and type(age) is not float:
            self._number(traits, "age", "traits.age")
        for key in STRING_TRAITS:
            value = traits.get(key, _ABSENT)
            if value is not _ABSENT and type(value) is not str:
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

    @classmethod
    def leaves_traits(cls, traits: dict[str, Any]) -> bool:
        """Whether :meth:`repair` would leave ``traits`` as they are (drop or coerce
        nothing): the repair itself, run on a copy by a counter of its own, so that the
        rule is written once and nothing is counted."""
        probe = cls()
        probe._traits(dict(traits))  # shallow: it only sets or deletes traits' own keys
        return not probe.dropped and not probe.coerced

    def _strings(self, obj: dict[str, Any], name: str) -> None:
        # one pass over the object's values first: most are strings, and the others are
        # nested objects or numbers under keys that are not string fields
        fields = _STRING_FIELDS[name]
        for key, value in obj.items():
            if type(value) is not str and key in fields:
                break
        else:
            return
        for key in _STRUCT[name]:  # in this order, as counted
            value = obj.get(key, _ABSENT)
            if value is not _ABSENT and type(value) is not str:
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
