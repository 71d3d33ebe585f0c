"""Values the format adapters share (workers.core.formats.common)."""

from __future__ import annotations

import orjson
import pytest

from workers.core.formats.common import number


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42), ("-7", -7), ("0.5", 0.5), ("1e3", 1000.0),
    ("18446744073709551615", 18446744073709551615),  # the largest JSON parsers keep whole
    ("18446744073709551616", 1.8446744073709552e19),  # beyond 64 bits: a float, as orjson
    ("1" * 300, float("1" * 300)), ("1" * 400, None),
    ("1e999", None), ("-1e999", None),  # no JSON number is infinite
    ("1" * 5000, None),
    ("12abc", None), ("", None),
])
def test_a_number_in_a_string_reads_as_a_json_parser_reads_it(
        text: str, expected: int | float | None) -> None:
    value = number(text)
    assert value == expected and type(value) is type(expected)
    if value is not None:  # and writes back to JSON as it is
        assert orjson.loads(orjson.dumps(value)) == value
