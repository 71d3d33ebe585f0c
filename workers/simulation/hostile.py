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
    n = itertools.count()
    records: list[bytes | None] = []
    if kafka:
        records += [None, b"", b"\n", b"\r\n"]
    records += [b" ", b"\t", b"{}", b"[]", b"null", b"true", b"0", b"-1", b'"text"',
                b"{", b"}", b'{"event_id":', b'{"a":1} {"b":2}', b"{'single': 'quotes'}",
                b'{"event_id": "x",}', b"\xef\xbb\xbf" + orjson.dumps(_event(next(n))),
                b"\xff\xfe\x00\x00", bytes(range(14, 32)) + bytes(range(128, 256)),
                b'{"event_id": "\\ud800"}', b"\x00" * 64, b"\x00" + orjson.dumps(_event(next(n)))]
    # huge values: binary, all quotes, control characters, valid JSON just over the limit
    binary = bytes(b for b in range(256) if kafka or b not in (10, 13))
    records += [binary * (900_000 // len(binary)), b'"' * 900_000, b"\x01" * 900_000,
                b"\\" * 900_000, "é".encode() * 450_000,
                orjson.dumps(_event(next(n), properties={"blob": "a" * 65_600})),
                orjson.dumps(_event(next(n), traits={"bio": "\u2028" * 30_000}))]
    # nesting, in every place a record can nest
    for depth in (17, 100, 600, 1100, 5000):
        for field in ("traits", "properties", "context", "unknown_field"):
            records.append(_with(next(n), field, _deep(depth)))
        records.append(_with(next(n), "properties", _deep(depth, b"1", b"[")))
    records.append(_deep(3000))  # the record itself
    # keys: many members where a profile keeps them, and where it does not
    for count in (257, 1000, 10_000):
        records.append(orjson.dumps(_event(next(n), traits={f"t{i}": i for i in range(count)})))
        records.append(orjson.dumps(_event(next(n),
                                           properties={f"p{i}": i for i in range(count)})))
    # numbers where a sum or a feature takes them
    for raw in _numbers():
        records.append(_with(next(n), "properties", b'{"revenue": ' + raw + b"}",
                             type="purchase"))
        records.append(_with(next(n), "traits", b'{"age": ' + raw + b"}"))
    # times
    for when in _times():
        records.append(orjson.dumps(_event(next(n), occurred_at=when)))
    records += [_with(next(n), "occurred_at", raw) for raw in (b"1767607200", b"null", b"[]")]
    # identities
    bad_identities: list[Any] = [{}, [], "u-1", None, {"user_id": ""}, {"user_id": "u" * 257},
                                 {"user_id": 42}, {"user_id": None}, {"user_id": ["a"]},
                                 {"cookie": "c-1"}, {"email": "undefined"},
                                 {"email": "test@test.com", "anonymous_id": "0000"},
                                 {"user_id": "{{user.id}}"}, {"user_id": "null"}]
    records += [orjson.dumps(_event(next(n), identity=ident)) for ident in bad_identities]
    # required fields: missing, wrong types, out of bounds
    for field, values in (("event_id", ["", "e" * 129, 7, None, ["e"]]),
                          ("type", ["", "T" * 65, "Page View", "x" * 64 + "y", 3, None]),
                          ("channel", ["web ", "WEB", "browser", 1, None]),
                          ("device", ["mobile", {"type": "ios"}, {"type": 3}, {"os": 10}]),
                          ("context", ["ctx", {"geo": {"country": "United States"}},
                                       {"geo": {"country": "us"}}, {"campaign": "spring"},
                                       {"session_id": 12}]),
                          ("traits", ["t", {"age": "34"}, {"interests": "golf"},
                                      {"newsletter_opt_in": "yes"}, {"gender": 1}]),
                          ("properties", ["p", [1, 2], 3]),
                          ("source", [1, {"name": "sdk"}])):
        for value in values:
            records.append(orjson.dumps(_event(next(n), **{field: value})))
    for missing in ("event_id", "occurred_at", "type", "identity"):
        body = _event(next(n))
        del body[missing]
        records.append(orjson.dumps(body))
    # unicode where identifiers and names go
    for text in ("\u202eevil", "e\u0301", "\U0001f600", "\u200b", "a\x00b", "\ufeff",
                 "x" * 256, "\ud7ff"):
        records.append(orjson.dumps(_event(next(n), identity={"user_id": text},
                                           traits={"job_title": text})))
    # unknown fields are kept and ignored: hostile values there are fine within bounds
    for value in ([0] * 10_000, "z" * 60_000, {"a": {"b": {"c": {"d": [1, [2, [3]]]}}}},
                  None, True, -0.0, 1e308, "\u0000", [[]] * 100, {"": ""}):
        records.append(orjson.dumps(_event(next(n), extra=value)))
    # the same hostile numbers in fields no sum uses
    for raw in (b"1e308", b"-1e308", b"123456789012345678901234567890", b"1e-320"):
        records.append(_with(next(n), "properties", b'{"price": ' + raw + b', "quantity": '
                             + raw + b"}", type="add_to_cart"))
    # a valid event and its exact copy: the copy is a duplicate, not an error
    twin = orjson.dumps(_event(next(n), type="signup", identity={"user_id": "hostile-twin"}))
    records += [twin, twin]
    if kafka:
        return records
    return [r for r in records if r is not None and r.strip() and b"\n" not in r
            and b"\r" not in r]
