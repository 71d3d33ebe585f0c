"""Tests of the synthetic touchpoint stream (workers/simulate.py): small streams, fast."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.simulation import generator as sim

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "touchpoint.v1.schema.json"
PROFILES = 400
DAYS = 3  # dense enough that late lines really overtake others
SEED = 11

CHANNELS = {"web", "mobile_app", "email", "social", "sms", "ads", "store", "call_center", "other"}
IDENTITY_KEYS = {"anonymous_id", "device_id", "user_id", "email", "phone", "crm_id"}


def _parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _checker() -> Any:
    """Touchpoint validator: the project's JSON schema when present, else the contract rules."""
    if SCHEMA.exists():
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(json.loads(SCHEMA.read_text()))

        def schema_ok(ev: dict[str, Any]) -> bool:
            return validator.is_valid(ev)

        return schema_ok

    def rules_ok(ev: dict[str, Any]) -> bool:
        eid, typ, ident = ev.get("event_id"), ev.get("type"), ev.get("identity")
        if not (isinstance(eid, str) and 1 <= len(eid) <= 128):
            return False
        if not (isinstance(typ, str) and 1 <= len(typ) <= 64):
            return False
        if not isinstance(ident, dict) or not ident or not set(ident) <= IDENTITY_KEYS:
            return False
        if "channel" in ev and ev["channel"] not in CHANNELS:
            return False
        return isinstance(ev.get("occurred_at"), str)

    return rules_ok


_VALID = _checker()
_CACHE: dict[bytes, dict[str, Any] | None] = {}


def classify(line: bytes) -> dict[str, Any] | None:
    """The event if the line is a valid touchpoint (docs/contracts.md section 1), else None."""
    if line not in _CACHE:
        _CACHE[line] = _classify(line)
    return _CACHE[line]


def _classify(line: bytes) -> dict[str, Any] | None:
    if len(line) > sim.MAX_LINE_BYTES:
        return None
    try:
        line.decode("utf-8")
        ev = orjson.loads(line)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    if not isinstance(ev, dict) or not _VALID(ev):
        return None
    try:
        _parse_time(ev["occurred_at"])
    except (ValueError, TypeError, AttributeError):
        return None
    return ev


@pytest.fixture(scope="module")
def stream() -> tuple[list[bytes], dict[str, Any], sim.SimulationStats]:
    return sim.simulate(PROFILES, SEED, days=DAYS)


def test_same_seed_is_byte_identical_even_in_another_process(tmp_path: Path) -> None:
    a = list(sim.iter_lines(200, 5, days=2))
    b = list(sim.iter_lines(200, 5, days=2))
    assert a == b
    digest = hashlib.sha256(b"\n".join(a) + b"\n").hexdigest()
    out = tmp_path / "s.jsonl"
    code = (
        "import sys; from workers.simulation.generator import write_stream; "
        f"write_stream({str(out)!r}, 200, 5, days=2)"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest


def test_different_seed_differs() -> None:
    a = list(sim.iter_lines(200, 5, days=2))
    c = list(sim.iter_lines(200, 6, days=2))
    assert a != c
    assert len(set(a[:50]) & set(c[:50])) == 0


def test_time_order_and_bounded_lateness(stream: tuple[list[bytes], Any, Any]) -> None:
    lines, _, stats = stream
    running = float("-inf")
    late = 0
    seen: set[str] = set()
    start = _parse_time(sim.DEFAULT_START)
    for line in lines:
        ev = classify(line)
        if ev is None:
            continue
        t = _parse_time(ev["occurred_at"])
        assert start <= t < start + DAYS * 86400
        assert t >= running - sim.MAX_LATE_SECONDS, f"too late: {ev['event_id']}"
        if t < running and ev["event_id"] not in seen:
            late += 1
        seen.add(ev["event_id"])
        running = max(running, t)
    assert late == stats.late
    assert 0.01 * len(lines) < late < 0.03 * len(lines)


def test_lines_are_single_lines_and_valid_or_counted_malformed(
    stream: tuple[list[bytes], Any, sim.SimulationStats],
) -> None:
    lines, _, stats = stream
    assert stats.events == len(lines)
    bad = [line for line in lines if classify(line) is None]
    assert all(b"\n" not in line for line in lines)
    assert len(bad) == stats.malformed
    assert 0.002 * len(lines) < stats.malformed < 0.01 * len(lines)
    # at least one line of each malformation family shows up in a few thousand events
    kinds = Counter()
    for line in bad:
        if len(line) > sim.MAX_LINE_BYTES:
            kinds["oversized"] += 1
            continue
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            kinds["not_json_or_utf8"] += 1
            continue
        kinds["array" if isinstance(ev, list) else "object"] += 1
    assert kinds["oversized"] >= 1 and kinds["not_json_or_utf8"] >= 1 and kinds["object"] >= 1


def test_duplicates_are_identical_lines(stream: tuple[list[bytes], Any, Any]) -> None:
    lines, truth, stats = stream
    by_id: dict[str, list[bytes]] = {}
    for line in lines:
        ev = classify(line)
        if ev is not None:
            by_id.setdefault(ev["event_id"], []).append(line)
    dups = sum(len(v) - 1 for v in by_id.values())
    assert dups == stats.duplicates
    assert all(len(set(v)) == 1 and len(v) <= 2 for v in by_id.values())
    assert 0.004 * len(lines) < dups < 0.02 * len(lines)
    assert len(by_id) == truth["valid_events"] == stats.events - stats.malformed - dups
    assert sum(p["valid_events"] for p in truth["persons"].values()) == len(by_id)


def test_personas_present_and_separable(stream: tuple[list[bytes], Any, Any]) -> None:
    lines, truth, _ = stream
    personas = Counter(p["persona"] for p in truth["persons"].values())
    assert set(personas) == {p.name for p in sim.PERSONAS} == set(truth["personas"])
    assert personas["mobile_bargain_hunter"] > personas["b2b_researcher"]
    owner = {i: p["persona"] for p in truth["persons"].values() for i in p["identifiers"]}
    channels: dict[str, Counter[str]] = {name: Counter() for name in personas}
    revenue: dict[str, list[float]] = {name: [] for name in personas}
    for line in lines:
        ev = classify(line)
        if ev is None:
            continue
        who = {owner[k] for k in (f"{a}:{b}" for a, b in ev["identity"].items()) if k in owner}
        assert len(who) <= 1
        if not who:
            continue
        (name,) = who
        channels[name][ev.get("channel", "")] += 1
        if ev["type"] == "purchase":
            revenue[name].append(ev["properties"]["revenue"])
    top = {name: c.most_common(1)[0][0] for name, c in channels.items()}
    assert top["mobile_bargain_hunter"] == "mobile_app"
    assert top["premium_desktop_shopper"] == "web"
    assert top["social_browser"] in {"social", "ads"}
    assert channels["email_loyalist"]["email"] > 0.3 * sum(channels["email_loyalist"].values())

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    assert median(revenue["mobile_bargain_hunter"]) < 60
    assert median(revenue["premium_desktop_shopper"]) > 200


def test_truth_components_consistent(stream: tuple[list[bytes], Any, Any]) -> None:
    lines, truth, _ = stream
    junk = set(truth["junk_identifiers"])
    shared = set(truth["shared_identifiers"])
    assert shared, "at least one shared household tablet"
    owner: dict[str, str] = {}
    for pid, person in truth["persons"].items():
        flat = [i for comp in person["components"] for i in comp]
        assert sorted(flat) == person["identifiers"]
        for ident in flat:
            assert ident not in junk and ident not in shared
            assert ident not in owner, f"{ident} in {owner.get(ident)} and {pid}"
            owner[ident] = pid
    # rebuild the co-occurrence graph from the stream and compare
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    seen: set[str] = set()
    junk_seen = 0
    for line in lines:
        ev = classify(line)
        if ev is None or ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        ids = [f"{k}:{v}" for k, v in ev["identity"].items()]
        junk_seen += sum(i in junk for i in ids)
        ids = [i for i in ids if i not in junk and i not in shared]
        for i in ids:
            assert i in owner
            find(i)
        for i in ids[1:]:
            parent[find(i)] = find(ids[0])
    groups: dict[str, list[str]] = {}
    for ident in parent:
        groups.setdefault(find(ident), []).append(ident)
    rebuilt = sorted(sorted(g) for g in groups.values())
    expected = sorted(c for p in truth["persons"].values() for c in p["components"])
    assert rebuilt == expected
    assert junk_seen > 0.005 * len(lines)
    # the shared tablets really carry the logins of two different people
    users_on: dict[str, set[str]] = {}
    for line in lines:
        ev = classify(line)
        if ev is None or "user_id" not in ev["identity"]:
            continue
        for k, v in ev["identity"].items():
            if f"{k}:{v}" in shared:
                users_on.setdefault(f"{k}:{v}", set()).add(ev["identity"]["user_id"])
    assert users_on and all(len(u) == 2 for u in users_on.values())
    known = sum(any(i.startswith("user_id:") for i in p["identifiers"])
                for p in truth["persons"].values())
    assert 0.45 < known / len(truth["persons"]) < 0.8
    # somebody is linked across devices through a login
    assert any(sum(i.startswith(("anonymous_id:", "device_id:")) for i in c) >= 2
               for p in truth["persons"].values() for c in p["components"])


def test_gzip_roundtrip_and_truth_file(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl.gz"
    truth_path = tmp_path / "truth.json"
    stats = sim.write_stream(str(out), 200, 3, truth=str(truth_path), days=2)
    with gzip.open(out, "rb") as fh:
        data = fh.read()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    assert lines == list(sim.iter_lines(200, 3, days=2))
    assert stats.events == len(lines) and stats.persons == 200
    truth = sim.load_truth(str(truth_path))
    assert truth["seed"] == 3 and truth["profiles"] == 200 and truth["events"] == len(lines)
    assert len(truth["persons"]) == 200
    out2 = tmp_path / "again.jsonl.gz"
    sim.write_stream(str(out2), 200, 3, days=2)
    assert out2.read_bytes() == out.read_bytes()  # reproducible gzip header too


def test_event_volume_and_heavy_tail() -> None:
    _, truth, stats = sim.simulate(500, 2)
    per_person = stats.events / stats.persons
    assert 10 <= per_person <= 40
    counts = sorted(p["valid_events"] for p in truth["persons"].values())
    assert counts[-1] > 5 * counts[len(counts) // 2]


# ---- variants -----------------------------------------------------------------------------


@cache
def variant(name: str) -> tuple[list[bytes], dict[str, Any]]:
    lines, truth, _ = sim.simulate(600, seed=4, days=10, variant=name)  # type: ignore[arg-type]
    return lines, truth


def _events(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            out.append(ev)
    return out


def test_changers_switch_persona_halfway_and_the_truth_says_when() -> None:
    _, truth = variant("changers")
    changers = [p for p in truth["persons"].values() if "changed_at" in p]
    share = len(changers) / len(truth["persons"])
    assert abs(share - sim.CHANGER_SHARE) < 0.05
    assert all(p["persona_before"] != p["persona"] for p in changers)
    assert {p["changed_at"] for p in changers} == {"2026-01-10T00:00:00.000Z"}  # day 5 of 10
    assert truth["variant"] == "changers"


def test_one_channel_puts_every_event_on_the_web() -> None:
    lines, _ = variant("one_channel")
    channels = {ev.get("channel") for ev in _events(lines)} - {None}
    assert channels == {"web"}


def test_outliers_are_few_bot_like_big_spenders() -> None:
    lines, truth = variant("outliers")
    outliers = [p for p in truth["persons"].values() if p.get("outlier")]
    assert 0 < len(outliers) <= 0.02 * len(truth["persons"])
    normal = [p["valid_events"] for p in truth["persons"].values() if not p.get("outlier")]
    assert min(p["valid_events"] for p in outliers) > sorted(normal)[len(normal) // 2]
    revenue = sorted(ev["properties"]["revenue"] for ev in _events(lines)
                     if ev.get("type") == "purchase" and "revenue" in ev.get("properties", {}))
    assert revenue[-1] > 50 * revenue[len(revenue) // 2]


def test_many_behaviours_has_more_personas_than_the_default_segments() -> None:
    _, truth = variant("many_behaviours")
    assert len(truth["personas"]) == 7 > load().segmentation.n_clusters
    assert {p["persona"] for p in truth["persons"].values()} == set(truth["personas"])


def test_an_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        sim.simulate(10, seed=1, variant="bogus")  # type: ignore[arg-type]
