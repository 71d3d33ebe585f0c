"""A corpus of hostile but fair input records: what broken or malicious trackers send.

Every class of record that once crashed, hung, bloated or halted a worker, and
their neighbours: tombstones and empty values, huge and binary values, broken
and non-object JSON, deep nesting, too many keys, numbers and times at and past
every edge, identifiers that are junk, too long or of the wrong type. Each
record is distinct. The tests feed the corpus, mixed into an ordinary stream,
through ``run`` and through the Kafka worker, and check that every record has an
outcome and nothing else changes.

``kafka=False`` leaves out what a JSON-lines file cannot carry (a null value,
an empty line, bytes that contain a line break).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson

_T = "2026-01-05T10:00:00Z"


def _event(n: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": f"hostile-{n}", "occurred_at": _T,
                            "type": "page_view", "identity": {"anonymous_id": f"h-anon-{n}"}}
    body.update(over)
    return body


def _deep(depth: int, leaf: bytes = b'"x"', key: bytes = b'{"k":') -> bytes:
    close = b"}" if key.startswith(b"{") else b"]"
    return key * (depth - 1) + leaf + close * (depth - 1)


def _with(n: int, field: str, raw_value: bytes, **over: Any) -> bytes:
    """An event whose ``field`` holds ``raw_value`` spliced in as raw JSON text."""
    return orjson.dumps(_event(n, **{field: "@@"}, **over)).replace(b'"@@"', raw_value)


def _times() -> Iterator[str]:
    yield from ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59",
                "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:60Z", "2025-02-30T12:00:00Z",
                "2026-13-01T00:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T10:00:00",
                "2026-01-05", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
                "2100-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "2200-01-01T00:00:01Z",
                "2026-01-05T10:00:00.1234567890123Z", "2026-01-05T10:00:00+99:00",
                "2026-01-05T10:00:00z", "+2026-01-05T10:00:00Z", "2026-01-05 10:00:00Z",
                "1e10", "", "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z",
                "2026-01-05T10:00:00.000+00:00", "2026-01-05T10:00:00-00:00",
                "2026-01-05T10:00:60Z", "２０２６-01-05T10:00:00Z")


def _numbers() -> Iterator[bytes]:
    yield from (b"1.7e308", b"-1.7e308", b"1e309", b"-1e400", b"1e-400",
                b"123456789012345678901234567890", b"18446744073709551616",
                b"-9223372036854775809", b"1000000000.01",
                b"NaN", b"Infinity", b"-Infinity", b"0x10", b"1_000", b"01", b"\"22.50\"",
                b"null", b"true", b"[1e308, 1e308]", b"{\"amount\": 1e308}")


def hostile_records(kafka: bool = True) -> list[bytes | None]:
    """The corpus, in a fixed order (deterministic); at least 200 distinct records."""
    corpus = _Corpus()
    records: list[bytes | None] = [None, b"", b"\n", b"\r\n"] if kafka else []
    for part in (corpus.broken, corpus.huge, corpus.nested, corpus.many_keys, corpus.numbers,
                 corpus.times, corpus.identities, corpus.fields, corpus.unicode,
                 corpus.unknown_fields, corpus.twins):
        records += part()
    if kafka:
        return records
    return [r for r in records if r is not None and r.strip() and b"\n" not in r
            and b"\r" not in r]


class _Corpus:
    """The classes of hostile records; each event gets an id of its own from one counter."""

    def __init__(self) -> None:
        self._n = itertools.count()

    def _event(self, **over: Any) -> bytes:
        return orjson.dumps(_event(next(self._n), **over))

    def _with(self, field: str, raw_value: bytes, **over: Any) -> bytes:
        return _with(next(self._n), field, raw_value, **over)

    def broken(self) -> list[bytes]:
        """Not JSON, not an object, not UTF-8, or JSON with bytes around it."""
        return [b" ", b"\t", b"{}", b"[]", b"null", b"true", b"0", b"-1", b'"text"',
                b"{", b"}", b'{"event_id":', b'{"a":1} {"b":2}', b"{'single': 'quotes'}",
                b'{"event_id": "x",}', b"\xef\xbb\xbf" + self._event(),
                b"\xff\xfe\x00\x00", bytes(range(14, 32)) + bytes(range(128, 256)),
                b'{"event_id": "\\ud800"}', b"\x00" * 64, b"\x00" + self._event()]

    def huge(self) -> list[bytes]:
        """Binary, all quotes, control characters, valid JSON just over the size limit."""
        binary = bytes(b for b in range(256) if b not in (10, 13))  # one line in a file too
        return [binary * (900_000 // len(binary)), b'"' * 900_000, b"\x01" * 900_000,
                b"\\" * 900_000, "é".encode() * 450_000,
                self._event(properties={"blob": "a" * 65_600}),
                self._event(traits={"bio": "\u2028" * 30_000})]

    def nested(self) -> list[bytes]:
        """Nesting in every place a record can nest, and the record itself."""
        records = []
        for depth in (17, 100, 600, 1100, 5000):
            records += [self._with(field, _deep(depth))
                        for field in ("traits", "properties", "context", "unknown_field")]
            records.append(self._with("properties", _deep(depth, b"1", b"[")))
        return [*records, _deep(3000)]

    def many_keys(self) -> list[bytes]:
        """Many members where a profile keeps them (traits), and where it does not."""
        return [record for count in (257, 1000, 10_000) for record in (
            self._event(traits={f"t{i}": i for i in range(count)}),
            self._event(properties={f"p{i}": i for i in range(count)}))]

    def numbers(self) -> list[bytes]:
        """Numbers where a sum (revenue) or a feature (age) takes them."""
        return [record for raw in _numbers() for record in (
            self._with("properties", b'{"revenue": ' + raw + b"}", type="purchase"),
            self._with("traits", b'{"age": ' + raw + b"}"))]

    def times(self) -> list[bytes]:
        return ([self._event(occurred_at=when) for when in _times()]
                + [self._with("occurred_at", raw) for raw in (b"1767607200", b"null", b"[]")])

    def identities(self) -> list[bytes]:
        bad: list[Any] = [{}, [], "u-1", None, {"user_id": ""}, {"user_id": "u" * 257},
                          {"user_id": 42}, {"user_id": None}, {"user_id": ["a"]},
                          {"cookie": "c-1"}, {"email": "undefined"},
                          {"email": "test@test.com", "anonymous_id": "0000"},
                          {"user_id": "{{user.id}}"}, {"user_id": "null"}]
        return [self._event(identity=ident) for ident in bad]

    def fields(self) -> list[bytes]:
        """Required and optional fields missing, of the wrong type or out of bounds."""
        records = [self._event(**{field: value}) for field, values in _BAD_FIELDS
                   for value in values]
        for missing in ("event_id", "occurred_at", "type", "identity"):
            body = _event(next(self._n))
            del body[missing]
            records.append(orjson.dumps(body))
        return records

    def unicode(self) -> list[bytes]:
        """Odd unicode where identifiers and names go."""
        return [self._event(identity={"user_id": text}, traits={"job_title": text})
                for text in ("\u202eevil", "e\u0301", "\U0001f600", "\u200b", "a\x00b",
                             "\ufeff", "x" * 256, "\ud7ff")]

    def unknown_fields(self) -> list[bytes]:
        """Unknown fields are kept and ignored: hostile values there are fine within bounds;
        and the hostile numbers in fields no sum uses."""
        values: list[Any] = [[0] * 10_000, "z" * 60_000,
                             {"a": {"b": {"c": {"d": [1, [2, [3]]]}}}}, None, True, -0.0,
                             1e308, "\u0000", [[]] * 100, {"": ""}]
        return ([self._event(extra=value) for value in values]
                + [self._with("properties", b'{"price": ' + raw + b', "quantity": ' + raw
                              + b"}", type="add_to_cart")
                   for raw in (b"1e308", b"-1e308", b"123456789012345678901234567890",
                               b"1e-320")])

    def twins(self) -> list[bytes]:
        """A valid event and its exact copy: the copy is a duplicate, not an error."""
        twin = self._event(type="signup", identity={"user_id": "hostile-twin"})
        return [twin, twin]


_BAD_FIELDS: tuple[tuple[str, list[Any]], ...] = (
    ("event_id", ["", "e" * 129, 7, None, ["e"]]),
    ("type", ["", "T" * 65, "Page View", "x" * 64 + "y", 3, None]),
    ("channel", ["web ", "WEB", "browser", 1, None]),
    ("device", ["mobile", {"type": "ios"}, {"type": 3}, {"os": 10}]),
    ("context", ["ctx", {"geo": {"country": "United States"}}, {"geo": {"country": "us"}},
                 {"campaign": "spring"}, {"session_id": 12}]),
    ("traits", ["t", {"age": "34"}, {"interests": "golf"}, {"newsletter_opt_in": "yes"},
                {"gender": 1}]),
    ("properties", ["p", [1, 2], 3]),
    ("source", [1, {"name": "sdk"}]),
)
