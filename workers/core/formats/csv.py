"""CSV lines (one event per line, for backfills) read into touchpoints by a column map.

``intake.csv.fields`` names the file's columns in order; ``intake.csv.columns``
says which touchpoint field each one fills. A line equal to ``fields`` is the
header when ``intake.csv.header`` is on: it yields no event and is no dead
letter. Without an ``event_id`` column, the id is derived from the line
(:func:`line_id`), so a line read twice is de-duplicated. Quoted cells may hold
the delimiter but not a line break. Mapping rules: docs/formats/csv.md.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from workers.config import Config, CsvConfig
from workers.core.formats import Adapter
from workers.core.formats.common import (
    Table,
    compact,
    country_code,
    epoch_time,
    required_number,
    table_problems,
    utc_time,
)
from workers.core.touchpoints import IDENTIFIER_TYPES, IntakeLimits, check_size
from workers.errors import InvalidEvent

# units per second of each epoch time_format ("iso" is RFC 3339, or UTC without offset)
EPOCH_UNITS = {"epoch_s": 1, "epoch_ms": 1000, "epoch_us": 1_000_000}
# what a column can fill: top-level fields, members of these objects, or any member
# of properties and traits
_TOP = frozenset(("event_id", "occurred_at", "type", "channel", "source"))
_MEMBERS = {"identity": IDENTIFIER_TYPES, "device": ("type", "os", "app_version"),
            "context": ("session_id", "page_url", "referrer", "user_agent"),
            "context.campaign": ("source", "medium", "name"),
            "context.geo": ("country", "region", "city")}
_FREE = ("properties", "traits")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_Convert = Callable[[str, str], Any]
_NO_NAMES = Table({})


def line_id(line: str) -> str:
    """``csv-`` and 32 hex digits of the SHA-256 of the line (without its line break)."""
    return f"csv-{hashlib.sha256(line.encode()).hexdigest()[:32]}"


def problems(cfg: CsvConfig) -> Iterator[str]:
    """The configuration check of ``intake.csv``."""
    if len(cfg.delimiter) != 1 or cfg.delimiter in "\"\r\n":
        yield (f"intake.csv.delimiter {cfg.delimiter!r} must be one character, not a quote"
               " or a line break")
    if not cfg.fields or len(set(cfg.fields)) != len(cfg.fields):
        yield "intake.csv.fields must name each of the file's columns once, in order"
    for path, column in cfg.columns.items():
        if not _fillable(path):
            yield f"intake.csv.columns: {path!r} is not a touchpoint field a column can fill"
        if column not in cfg.fields:
            yield f"intake.csv.columns.{path}: column {column!r} is not in intake.csv.fields"
    for path in ("occurred_at", "type"):
        if path not in cfg.columns:
            yield f"intake.csv.columns must say which column holds {path}"
    if not any(path.startswith("identity.") for path in cfg.columns):
        yield "intake.csv.columns must map at least one column to identity.<type>"
    for key in ("numbers", "booleans"):
        for path in getattr(cfg, key):
            if path not in cfg.columns:
                yield f"intake.csv.{key}: {path!r} is not a key of intake.csv.columns"
    yield from table_problems("csv", {"event_types": cfg.event_types})


def _fillable(path: str) -> bool:
    head, _, leaf = path.rpartition(".")
    return path in _TOP or (head in _FREE and bool(leaf)) or leaf in _MEMBERS.get(head, ())


class CsvAdapter(Adapter):
    """Reads one CSV line into one touchpoint (or, for the header line, none)."""

    def __init__(self, config: Config) -> None:
        cfg = config.intake.csv
        self.limits = IntakeLimits.from_config(config)
        self.fields = list(cfg.fields)
        self.header = cfg.header
        self.delimiter = cfg.delimiter
        self.types = Table(cfg.event_types)
        self.has_id = "event_id" in cfg.columns
        special: dict[str, _Convert] = {"occurred_at": self._time_reader(cfg.time_format),
                                        "type": lambda cell, _: self.types.event_type([cell], cell),
                                        "context.geo.country": _country}
        special.update({path: required_number for path in cfg.numbers})
        special.update({path: _boolean for path in cfg.booleans})
        self.columns = [(tuple(path.split(".")), self.fields.index(column), column,
                         special.get(path, _as_text))
                        for path, column in cfg.columns.items()]

    def events(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """The line's event; nothing for the header; InvalidEvent when unreadable."""
        try:
            line = check_size(raw, self.limits).decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise InvalidEvent("not_utf8", "line is not valid UTF-8") from None
        try:
            cells = next(csv.reader([line], delimiter=self.delimiter, strict=True), [])
        except csv.Error as exc:
            raise InvalidEvent("bad_csv", f"line is not CSV: {exc}") from None
        if self.header and cells == self.fields:
            return
        if len(cells) != len(self.fields):
            raise InvalidEvent("bad_field_count", f"line has {len(cells)} cells,"
                               f" intake.csv.fields names {len(self.fields)}")
        event: dict[str, Any] = {} if self.has_id else {"event_id": line_id(line)}
        for path, index, column, convert in self.columns:
            if cells[index]:
                _put(event, path, convert(cells[index], f"column {column}"))
        yield compact(event)

    @staticmethod
    def _time_reader(time_format: str) -> _Convert:
        units = EPOCH_UNITS.get(time_format)
        if units is None:
            return utc_time
        return lambda cell, where: epoch_time(cell, units, where)


def _put(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = event
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _as_text(cell: str, where: str) -> str:
    return cell


def _country(cell: str, where: str) -> str | None:
    """ISO 3166-1 alpha-2 in either case; anything else is left out."""
    return country_code(cell.upper(), _NO_NAMES)


def _boolean(cell: str, where: str) -> bool:
    value = _BOOLEANS.get(cell.lower())
    if value is None:
        raise InvalidEvent("bad_value", f"{where} {cell!r} is not true or false")
    return value
