"""Touchpoint intake: bytes in, a validated :class:`Touchpoint` or an :class:`InvalidEvent`.

Hand-written checks instead of a generic JSON Schema validator because this runs
for every event; ``tests/test_touchpoints.py`` proves them equal to
``schemas/touchpoint.v1.schema.json`` on generated events.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from orjson import JSONDecodeError, dumps, loads

from workers.config import Config
from workers.core.repair import OptionalFields
from workers.errors import InvalidEvent

IDENTIFIER_TYPES = ("user_id", "crm_id", "email", "phone", "device_id", "anonymous_id")
# what every identity key is checked against: one hash look-up, not a scan of the names
_IDENTIFIER_KEYS = frozenset(IDENTIFIER_TYPES)

TYPE_RE = re.compile(r"[a-z0-9_.:-]{1,64}")  # what a touchpoint type may be
# the same grammar as schemas/touchpoint.v1.schema.json ($defs/timestamp)
_TIME_RE = re.compile(r"(?!0000)(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]))[Tt ]"
                      r"((?:[01]\d|2[0-3]):[0-5]\d):([0-5]\d|60)(\.\d+)?"
                      r"([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
# offsets as many trackers write them (ISO 8601 basic "+0000", or hours only "+00")
_LOOSE_OFFSET = re.compile(r"(.*[0-9])([+-](?:[01]\d|2[0-3]))([0-5]\d)?")


class Touchpoint:
    """A validated event. ``ts`` is event time in epoch seconds."""

    __slots__ = ("data", "event_id", "identity", "raw", "ts", "type")

    def __init__(self, data: dict[str, Any], event_id: str, ts: float, type_: str,
                 identity: dict[str, str], raw: bytes = b"") -> None:
        self.raw = raw
        self.data = data
        self.event_id = event_id
        self.ts = ts
        self.type = type_
        self.identity = identity

    def data_json(self) -> bytes:
        """The event's fields as JSON, to travel between workers. Every value a validated
        event holds is JSON's (``formats.common.number``), so they read back equal."""
        return dumps(self.data)

    def record(self) -> bytes:
        """The event's bytes for a dead letter: as received, or its data as JSON when the
        received bytes were let go (identifiers pseudonymised at intake)."""
        return self.raw or self.data_json()

    def __repr__(self) -> str:
        return f"Touchpoint({self.event_id!r}, {self.type!r}, ts={self.ts})"

    def __lt__(self, other: Touchpoint) -> bool:
        """Never before another: two copies of one event (one id, one time: a duplicate the
        de-dup window no longer knew, the clock having jumped ahead) tie in the event-time
        buffer's heap of late events, (time, id, event), instead of stopping it with a
        TypeError."""
        return False


_DATA = Touchpoint.__dict__["data"]  # the slot, under the property of CarriedTouchpoint


class CarriedTouchpoint(Touchpoint):
    """An event whose fields travel as JSON between workers: the identity stage needs only
    its id, time, type and identifiers, so ``data`` is read from the JSON the first time
    something asks for it, and an event nobody asked passes on as the bytes it came with.
    (A subclass, so that events read in process keep ``data`` a plain slot.)"""

    __slots__ = ("_json",)

    def __init__(self, data_json: bytes, event_id: str, ts: float, type_: str,
                 identity: dict[str, str], raw: bytes = b"") -> None:
        # the slots set directly, not through Touchpoint.__init__: that would set ``data``,
        # which stays unset until read (a call per event less on the stage's hot path)
        self.raw = raw
        self._json = data_json
        self.event_id = event_id
        self.ts = ts
        self.type = type_
        self.identity = identity

    @property
    def data(self) -> dict[str, Any]:
        data = self._read_data()
        if data is None:  # not read yet
            data = loads(self._json)
            _DATA.__set__(self, data)
        return data

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        _DATA.__set__(self, value)

    def data_json(self) -> bytes:
        data = self._read_data()
        return self._json if data is None else dumps(data)

    def _read_data(self) -> dict[str, Any] | None:
        """The slot under the property: unset (Python) or None (a compiled C field) until
        read."""
        try:
            return _DATA.__get__(self)
        except AttributeError:
            return None


@dataclass(frozen=True)
class IntakeLimits:
    """Bounds a valid event stays within, so no single record can crash, hang or bloat us.

    Each bound has its own dead-letter reason; the defaults match
    ``workers/defaults.yaml``.
    """

    max_event_bytes: int = 65536
    earliest: float = 631152000.0  # 1990-01-01T00:00:00Z
    latest: float = 7258118400.0  # 2200-01-01T00:00:00Z
    max_depth: int = 16  # nesting of objects and arrays, the event itself being 1
    max_keys: int = 256  # members of ``properties`` or of ``traits``
    max_amount: float = 1e9  # |revenue| beyond this is a tracking bug, and sums would overflow
    amount_key: str = "revenue"

    @classmethod
    def from_config(cls, config: Config) -> IntakeLimits:
        """The bounds of ``intake`` (and the revenue property of ``features``)."""
        intake = config.intake
        return cls(max_event_bytes=intake.max_event_bytes,
                   earliest=parse_time(intake.earliest_event_time),
                   latest=parse_time(intake.latest_event_time), max_depth=intake.max_depth,
                   max_keys=intake.max_keys, max_amount=intake.max_amount,
                   amount_key=config.features.revenue_property)


def parse_time(value: str) -> float:
    """RFC 3339 with an offset or Z, to epoch seconds (leap second :60 = next second).

    A time whose UTC equivalent leaves the years 1..9999 still gets its number of
    seconds; the intake's range check (``IntakeLimits``) keeps it out of any output.
    """
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise ValueError(value)
    date, hour_minute, second, fraction, offset = match.groups()
    leap = second == "60"
    text = (f"{date}T{hour_minute}:{'59' if leap else second}{(fraction or '')[:7]}"
            f"{'+00:00' if offset in 'Zz' else offset}")
    ts = datetime.fromisoformat(text).timestamp()  # ValueError for 30 February
    return ts + 1.0 if leap else ts


class TimeParser:
    """:func:`parse_time` for a stream, whose events share days: the first UTC stamp of
    a day is read whole; a later one of it to the second or millisecond (what trackers
    send, ``YYYY-MM-DDThh:mm:ss[.mmm]Z``) looks the day's epoch up and reads its clock
    digits in place; any other form is :func:`parse_time`'s. The same float to the last
    bit (whole microseconds divided once, as ``datetime.timestamp``), the same errors."""

    __slots__ = ("_days", "_last", "_last_day")
    _EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
    _MICROSECOND = timedelta(microseconds=1)
    _KEEP = 4096  # days remembered; a stream moves on through time, so forgetting is cheap

    def __init__(self) -> None:
        # ``YYYY-MM-DD`` -> that day's epoch in microseconds
        self._days: dict[str, int] = {}
        # the day read last: consecutive events mostly share it, and a prefix compared in
        # place costs less than a slice hashed for the lookup
        self._last = "\x00" * 10
        self._last_day = 0

    def read(self, value: str) -> float:
        size = len(value)
        if (size == 24 and value[19] == "." and value[23] in "Zz") or (
                size == 20 and value[19] in "Zz"):  # UTC, milliseconds or none: most events
            if value.startswith(self._last):
                day = self._last_day
            else:
                found = self._days.get(value[:10])
                if found is None:
                    return self._first(value)
                day = self._last_day = found
                self._last = value[:10]
            clock = _clock(value, size)
            if clock >= 0:
                return (day + clock) / 1_000_000
        return parse_time(value)  # another offset or precision, or not a time at all

    def _first(self, value: str) -> float:
        """A day not seen yet: the whole grammar, and the day checked to exist."""
        ts = parse_time(value)
        day = datetime.fromisoformat(f"{value[:10]}T00:00:00+00:00")
        if len(self._days) >= self._KEEP:
            self._days.clear()
        self._days[value[:10]] = (day - self._EPOCH) // self._MICROSECOND
        return ts


def _clock(value: str, size: int) -> int:
    """Microseconds since midnight of a stamp ``YYYY-MM-DDThh:mm:ss[.mmm]...`` with ASCII
    digits in range (``size`` 24: milliseconds), -1 for anything else."""
    if value[10] != "T" or value[13] != ":" or value[16] != ":":
        return -1
    hour = _digits(value, 11, 13)
    minute = _digits(value, 14, 16)
    second = _digits(value, 17, 19)
    millis = _digits(value, 20, 23) if size == 24 else 0
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 60 and millis >= 0):
        return -1
    return ((hour * 60 + minute) * 60 + second) * 1_000_000 + millis * 1000


def _digits(value: str, start: int, end: int) -> int:
    """The number the ASCII digits ``value[start:end]`` spell, -1 when another character
    is among them (read in place: no slice, no int())."""
    number = 0
    for i in range(start, end):
        c = value[i]
        if not "0" <= c <= "9":
            return -1
        number = number * 10 + (ord(c) - 48)
    return number


def is_rfc3339(value: str) -> bool:
    """Whether ``value`` has the RFC 3339 form the intake reads as it is (not that the day
    exists: ``parse_time`` says that)."""
    return _TIME_RE.fullmatch(value) is not None


def format_time(ts: float) -> str:
    """Epoch seconds to RFC 3339 UTC with milliseconds, the form every output uses: the
    string ``datetime`` gives, worked out with integers (it runs for every output).
    ValueError beyond the years 1..9999, as ``datetime`` says."""
    ms = round(ts * 1000)
    if not _FIRST_MS <= ms < _END_MS:
        raise ValueError(f"{ts!r} is outside the years 1..9999")
    days, in_day = divmod(ms, 86_400_000)
    year, month, day = _civil(days)
    seconds, millis = divmod(in_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    # by hand: strftime's %Y gives "1" for the year 1, which is not RFC 3339
    return (f"{_PAD2[year // 100]}{_PAD2[year % 100]}-{_PAD2[month]}-{_PAD2[day]}"
            f"T{_PAD2[hour]}:{_PAD2[minute]}:{_PAD2[second]}.{_PAD3[millis]}Z")


_FIRST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_END_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
# numbers as format_time writes them: looked up, not formatted, per output
_PAD2 = tuple(f"{n:02d}" for n in range(100))
_PAD3 = tuple(f"{n:03d}" for n in range(1000))


def _civil(days: int) -> tuple[int, int, int]:
    """The proleptic Gregorian (year, month, day) ``days`` after 1970-01-01 (Howard
    Hinnant's ``civil_from_days``: whole 400-year eras, then the year of the era counted
    from 1 March, so that the leap day falls last)."""
    z = days + 719_468  # days since 0000-03-01
    era = z // 146_097
    of_era = z - era * 146_097
    year_of_era = (of_era - of_era // 1460 + of_era // 36_524 - of_era // 146_096) // 365
    of_year = of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted = (5 * of_year + 2) // 153  # the month counted from March
    day = of_year - (153 * shifted + 2) // 5 + 1
    month = shifted + 3 if shifted < 10 else shifted - 9
    return year_of_era + era * 400 + (1 if month <= 2 else 0), month, day


class TouchpointParser:
    """Validates raw records against touchpoint v1 (docs/contracts.md section 1)."""

    def __init__(self, limits: IntakeLimits = IntakeLimits()) -> None:
        self.limits = limits
        # the bounds every event is checked against, as C fields where compiled (a
        # dataclass's attribute is a dict lookup at each read)
        self._earliest = limits.earliest
        self._latest = limits.latest
        self._max_keys = limits.max_keys
        self._max_amount = limits.max_amount
        self._amount_key = limits.amount_key
        self.optional = OptionalFields(limits.amount_key)
        self._known_types: set[str] = set()
        self._time = TimeParser()

    def parse(self, raw: bytes | None) -> Touchpoint:
        """``None`` is a Kafka record without a value (a tombstone): a dead letter too."""
        return self.check(decode_object(check_size(raw, self.limits), self.limits), raw or b"")

    def check(self, data: dict[str, Any], raw: bytes = b"",
              vouched: float | None = None) -> Touchpoint:
        """The event, validated; InvalidEvent when it is refused. ``vouched``: its time,
        from the adapter that built ``data`` and vouches that there is nothing to check
        in it (``formats.Adapter.vouch``)."""
        if vouched is not None:
            return Touchpoint(data, data["event_id"], vouched, data["type"], data["identity"],
                              raw)
        event_id = _required_str(data, "event_id", 128)
        occurred_at = _required_str(data, "occurred_at", 64)
        try:
            ts = self._time.read(occurred_at)
        except ValueError:
            ts = self._loose_time(data, occurred_at)
        if not self._earliest <= ts <= self._latest:
            raise InvalidEvent("time_out_of_range",
                               f"occurred_at {occurred_at!r} is outside intake.earliest_event_time"
                               "..intake.latest_event_time")
        type_ = _required_str(data, "type", 64)
        if type_ not in self._known_types:
            if TYPE_RE.fullmatch(type_) is None:
                raise InvalidEvent("bad_value", f"type {type_!r} must match [a-z0-9_.:-]{{1,64}}")
            if len(self._known_types) < 10_000:  # bounded: types are a small vocabulary
                self._known_types.add(type_)
        identity = data.get("identity")
        if identity is None:
            raise InvalidEvent("missing_field", "identity is required")
        if type(identity) is not dict:
            raise InvalidEvent("wrong_type", "identity must be an object")
        if not identity:
            raise InvalidEvent("empty_identity", "identity must name at least one identifier")
        for key, value in identity.items():
            if key not in _IDENTIFIER_KEYS:
                raise InvalidEvent("bad_identifier", f"identity.{key} is not an identifier type")
            if type(value) is not str or not 1 <= len(value) <= 256:
                raise InvalidEvent("bad_identifier",
                                   f"identity.{key} must be a string of 1..256 characters")
        if len(data) > 4:  # only the four required fields: nothing optional to check
            self.optional.repair(data)
            self._check_bounds(data)
        return Touchpoint(data, event_id, ts, type_, identity, raw)

    def _loose_time(self, data: dict[str, Any], occurred_at: str) -> float:
        """``+0000`` and ``+00`` offsets: read, written back as RFC 3339, counted."""
        match = _LOOSE_OFFSET.fullmatch(occurred_at)
        try:
            if match is None:
                raise ValueError(occurred_at)
            head, hours, minutes = match.groups()
            ts = parse_time(f"{head}{hours}:{minutes or '00'}")
        except ValueError:
            raise InvalidEvent("bad_timestamp",
                               f"occurred_at {occurred_at!r} is not an RFC 3339 timestamp"
                               " with offset") from None
        data["occurred_at"] = format_time(ts)
        self.optional.coerced["occurred_at"] = self.optional.coerced.get("occurred_at", 0) + 1
        return ts

    def _check_bounds(self, data: dict[str, Any]) -> None:
        """What every type check passes but would grow a profile or overflow a sum."""
        for key in ("properties", "traits"):
            members = data.get(key)
            if members is not None and len(members) > self._max_keys:
                raise InvalidEvent("too_many_keys", f"{key} has {len(members)} members,"
                                   f" limit is {self._max_keys}")
        properties = data.get("properties")
        if properties is not None:
            amount = properties.get(self._amount_key)
            if (type(amount) in (int, float)
                    and not (math.isfinite(amount) and abs(amount) <= self._max_amount)):
                raise InvalidEvent("out_of_range", f"properties.{self._amount_key} {amount!r}"
                                   f" is beyond intake.max_amount ({self._max_amount:g})")


def check_size(raw: bytes | None, limits: IntakeLimits) -> bytes:
    """A record of any format is not empty and not over ``max_event_bytes``."""
    if not raw:
        raise InvalidEvent("empty", "the record has no value (a tombstone or an empty"
                           " message)")
    if len(raw) > limits.max_event_bytes:
        raise InvalidEvent("too_large",
                           f"event is {len(raw)} bytes, limit is {limits.max_event_bytes}")
    return raw


def decode_object(raw: bytes, limits: IntakeLimits) -> dict[str, Any]:
    """One JSON object, within the nesting limit: what every JSON format starts from."""
    try:
        data = loads(raw)
    except JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("not_utf8", "event is not valid UTF-8") from None
        raise InvalidEvent("not_json", f"event is not JSON: {exc}") from None
    if type(data) is not dict:
        kind = type(data).__name__
        raise InvalidEvent("not_object", f"event is a JSON {kind}, not an object")
    if not _nests_within(data, limits.max_depth):
        raise InvalidEvent("too_deep", f"event nests objects and arrays deeper than"
                           f" {limits.max_depth} levels")
    return data


def _required_str(data: dict[str, Any], key: str, max_len: int) -> str:
    value = data.get(key)
    if value is None:
        raise InvalidEvent("missing_field", f"{key} is required")
    if type(value) is not str:
        raise InvalidEvent("wrong_type", f"{key} must be a string")
    if not 1 <= len(value) <= max_len:
        raise InvalidEvent("bad_value", f"{key} must have 1..{max_len} characters")
    return value


def _nests_within(node: dict[str, Any] | list[Any], levels: int) -> bool:
    """Whether the objects and arrays of ``node`` (itself one level) nest ``levels`` deep
    at most: a walk of the decoded containers (compiled, a C loop over each of the few an
    event holds), not a count of the record's brackets, which reads and copies every byte."""
    if levels < 1:
        return False
    if type(node) is dict:
        for child in node.values():
            if (type(child) is dict or type(child) is list) and not _nests_within(
                    child, levels - 1):
                return False
    else:
        for child in node:
            if (type(child) is dict or type(child) is list) and not _nests_within(
                    child, levels - 1):
                return False
    return True
