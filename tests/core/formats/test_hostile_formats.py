"""Every format survives every hostile record, and fixtures with fields of the wrong type.

The hostile corpus (workers/simulation/hostile.py) and each fixture record with
random fields swapped for values of another type, read under each format: no
exception escapes, and every event read is valid, invalid or a duplicate.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.core.pipeline import Pipeline
from workers.simulation.hostile import hostile_records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ODD_VALUES: list[Any] = [None, 1, 1.5, "x", [], {}, True, -1, 1e308, "", [1, 2], {"a": None}]
ODD_CELLS = [b"", b"x", b"-1", b"1e999", b"\xff", b"9999-99-99", b"{", b"null"]


def _swap(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        return {k: rng.choice(ODD_VALUES) if rng.random() < 0.1 else _swap(v, rng)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, rng) for v in value]
    return value


@cache
def mutants() -> list[bytes]:
    """Each fixture record, 20 times with odd values in random places (seeded)."""
    rng = random.Random(7)
    out: list[bytes] = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.suffix not in (".jsonl", ".tsv", ".csv"):
            continue
        for line in path.read_bytes().splitlines():
            if line.startswith(b"{"):
                out += [orjson.dumps(_swap(orjson.loads(line), rng)) for _ in range(20)]
                continue
            sep = b"\t" if b"\t" in line else b";" if b";" in line else b","
            cells = line.split(sep)
            for _ in range(20):
                odd = list(cells)
                odd[rng.randrange(len(odd))] = rng.choice(ODD_CELLS)
                out.append(sep.join(odd))
    return out


@pytest.mark.parametrize("fmt", ["touchpoint", "segment", "snowplow", "ga4", "csv", "auto"])
def test_no_record_escapes_any_format(fmt: str) -> None:
    records: list[bytes | None] = [*hostile_records(kafka=True), *mutants()]
    assert len(records) > 2000
    pipeline = Pipeline(load())
    for record in records:
        pipeline.feed(record, None, fmt)  # type: ignore[arg-type]
    pipeline.flush()
    s = pipeline.stats
    assert s.events_read == s.events_valid + s.events_invalid + s.events_duplicate
    assert "unreadable" not in s.invalid_by_error  # no adapter met a shape it could not read
