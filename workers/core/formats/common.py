"""What the Snowplow, GA4 and CSV adapters share: table look-ups, times, numbers, tidying.

Every adapter builds its touchpoint from these, so a mapping table, a time or a
numeric string means the same thing in each format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from workers.core.repair import CHANNELS, COUNTRY_RE, DEVICE_TYPES
from workers.core.touchpoints import IDENTIFIER_TYPES, TYPE_RE, format_time, parse_time
from workers.errors import InvalidEvent

_NAIVE_RE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?")
_NUMBER_RE = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_NOT_TYPE_RE = re.compile(r"[^a-z0-9_.:-]+")

# what a table's values may be, by the kind of table (for the configuration check)
VALUE_RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "event_types": (lambda v: TYPE_RE.fullmatch(v) is not None,
                    "a type of 1..64 characters of [a-z0-9_.:-]"),
    "channels": (CHANNELS.__contains__, f"one of {', '.join(sorted(CHANNELS))}"),
    "devices": (DEVICE_TYPES.__contains__, f"one of {', '.join(sorted(DEVICE_TYPES))}"),
    "identity": (IDENTIFIER_TYPES.__contains__, f"one of {', '.join(IDENTIFIER_TYPES)}"),
    "countries": (lambda v: COUNTRY_RE.fullmatch(v) is not None, "ISO 3166-1 alpha-2"),
}


class Table:
    """A configured mapping, looked up case-insensitively (``Mobile`` finds ``mobile``)."""

    __slots__ = ("_map",)

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._map = {key.lower(): value for key, value in mapping.items()}

    def get(self, key: Any) -> str | None:
        """The mapped value; None for an unknown key or a key that is not a string."""
        return self._map.get(key.lower()) if type(key) is str else None

    def event_type(self, keys: Iterable[str], fallback: str) -> str:
        """The first key the table maps; otherwise ``fallback`` in the type grammar.

        An unmapped name is kept (any type is allowed) rather than lost: lower-cased,
        with characters outside ``[a-z0-9_.:-]`` replaced by ``_``.
        """
        for key in keys:
            value = self._map.get(key.lower())
            if value is not None:
                return value
        return _NOT_TYPE_RE.sub("_", fallback.lower()).strip("_")[:64] or fallback


def table_problems(section: str, tables: Mapping[str, Mapping[str, str]]) -> Iterator[str]:
    """Every value of every named table is one the touchpoint accepts."""
    for name, table in tables.items():
        ok, what = VALUE_RULES[name]
        for key, value in table.items():
            if not ok(value):
                yield f"intake.{section}.{name}.{key}: {value!r} must be {what}"


def text(value: Any) -> str | None:
    """A non-empty string, else None: trackers send "" for "not set"."""
    return value if type(value) is str and value else None


def number(value: Any) -> int | float | None:
    """A JSON number, or a string that is exactly a decimal number; else None.

    A string is read as a JSON parser reads the number: an integer beyond 64 bits as a
    float, and one beyond a float's range is no number (JSON has no infinity), so every
    value an event holds writes back to JSON as it is (``Touchpoint.data_json``).
    """
    if type(value) is int or type(value) is float:
        return value
    if type(value) is str and _NUMBER_RE.fullmatch(value):
        if len(value) <= 20 and not any(c in value for c in ".eE"):
            whole = int(value)
            if -2**63 <= whole < 2**64:
                return whole
        real = float(value)
        return real if math.isfinite(real) else None
    return None


def required_number(value: Any, where: str) -> int | float:
    """A number the format promises; a record that breaks the promise is loud, not zero."""
    result = number(value)
    if result is None:
        raise InvalidEvent("bad_value", f"{where} {value!r} is not a number")
    return result


def utc_time(value: str, where: str) -> str:
    """RFC 3339, or a time without offset (taken as UTC), to the touchpoint's form."""
    candidate = value + "Z" if _NAIVE_RE.fullmatch(value) else value
    try:
        return format_time(parse_time(candidate))
    except ValueError:
        raise InvalidEvent("bad_timestamp", f"{where} {value!r} is not a time") from None


def epoch_time(value: Any, per_second: int, where: str) -> str:
    """Seconds, milliseconds or microseconds since the epoch (``per_second`` units)."""
    count = number(value)
    if count is None:
        raise InvalidEvent("bad_timestamp", f"{where} {value!r} is not a count of"
                           f" 1/{per_second} s since the epoch")
    try:
        return format_time(count / per_second)
    except (ValueError, OverflowError, OSError):
        raise InvalidEvent("bad_timestamp", f"{where} {value!r} is out of range") from None


def country_code(value: Any, names: Table) -> str | None:
    """ISO 3166-1 alpha-2 as is, a known country name via ``names``; else None (left out)."""
    if type(value) is not str:
        return None
    return value if COUNTRY_RE.fullmatch(value) else names.get(value)


def compact(data: dict[str, Any], depth: int = 2) -> dict[str, Any]:
    """The event without its None members and empty objects, ``depth`` levels down.

    Adapters fill every slot they know and leave the absent ones None; the
    touchpoint then carries only what the source really said. Two levels reach
    ``context.geo``; what a source nests deeper inside ``properties`` is kept as is.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if depth and type(value) is dict:
            value = compact(value, depth - 1)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out
