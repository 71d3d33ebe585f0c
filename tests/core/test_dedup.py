"""Exact de-duplication by event_id over a sliding event-time window."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.core.dedup import Deduplicator


def test_repeat_within_window_is_caught() -> None:
    d = Deduplicator(100)
    assert d.seen("a", 1000.0) is False
    assert d.seen("a", 1000.0) is True
    assert d.seen("a", 1099.0) is True  # a retry with another timestamp: still the same event
    assert d.seen("b", 1000.0) is False
    assert len(d) == 2


def test_repeat_survives_expiry_while_inside_window() -> None:
    d = Deduplicator(100)
    d.seen("a", 1000.0)
    d.expire(1100.0)  # exactly one window later
    assert d.seen("a", 1000.0) is True
    d.expire(1099.0)  # going back in time forgets nothing
    assert d.seen("a", 1000.0) is True


def test_ids_older_than_the_window_are_forgotten() -> None:
    d = Deduplicator(100)
    for i in range(50):
        assert d.seen(f"old-{i}", 1000.0 + i / 10) is False
    for i in range(5):
        d.seen(f"new-{i}", 1200.0)
    assert len(d) == 55
    d.expire(1200.0)
    assert len(d) == 5  # memory is bounded by the window, not by the stream
    assert d.seen("new-0", 1200.0) is True
    # once forgotten, the id is new again: it is accepted
    assert d.seen("old-0", 1200.0) is False


def test_id_older_than_the_window_is_accepted_counted_and_remembered_from_now() -> None:
    d = Deduplicator(100)
    d.seen("x", 5000.0)
    d.expire(5000.0)
    assert d.seen("late", 100.0) is False  # far too old to check against its original: kept
    assert d.beyond_window == 1
    # its copy, a few seconds behind it in its partition, is caught however far ahead the
    # stream is: the id is remembered for a window of the clock from its arrival
    assert d.seen("late", 103.0) is True
    d.expire(5099.0)
    assert d.seen("late", 100.0) is True
    d.expire(5200.0)  # a whole window after it arrived: forgotten, memory stays bounded
    assert "late" not in d._ids
    assert d.seen("late", 100.0) is False


def test_a_partition_lagging_a_day_behind_has_its_copies_caught() -> None:
    """Two partitions forwarded at different speeds: one a day of event time ahead of the
    other. The lagging partition's copies (seconds behind their originals) are caught."""
    day = 86_400.0
    d = Deduplicator(day)
    caught = 0
    for i in range(200):
        fast, slow = 2 * day + i * 60.0, i * 60.0  # the fast partition runs 2 days ahead
        d.seen(f"fast-{i}", fast)
        d.expire(fast)
        d.seen(f"slow-{i}", slow)
        caught += d.seen(f"slow-{i - 1}", slow) if i else 0  # the copy of the one before
    assert caught == 199
    assert d.beyond_window == 200  # the originals: a caught copy is a duplicate


def test_memory_stays_bounded_on_a_long_stream() -> None:
    d = Deduplicator(60)
    peak = 0
    for i in range(5000):
        ts = float(i)  # one event per second for ~83 windows
        d.seen(f"e{i}", ts)
        d.expire(ts)
        peak = max(peak, len(d))
    assert peak <= 60 + 6 + 1  # the window plus at most one bucket (a tenth) of slack
    assert len(d) >= 60  # and everything inside the window is still remembered


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 1000, allow_nan=False)),
                max_size=80),
       st.sampled_from([10.0, 37.5, 100.0]))
def test_model(events: list[tuple[int, float]], window: float) -> None:
    """Driven like the pipeline: seen() then expire(newest). Compared with a plain model: an
    id is remembered for a window from its event time or the clock's, whichever is later."""
    d = Deduplicator(window)
    stored: dict[str, float] = {}  # first accepted time of each id the model remembers
    newest = float("-inf")
    for n, ts in events:
        eid = f"e{n}"
        repeat = d.seen(eid, ts)
        if eid in stored and stored[eid] >= newest - window:
            assert repeat, f"{eid} first seen at {stored[eid]}, again at {ts}, newest {newest}"
        if repeat:
            assert eid in stored  # never reports an id it was not given
        elif eid not in stored or stored[eid] < newest - window:
            stored[eid] = max(ts, newest)  # an event behind the clock: remembered from now
        if ts > newest:
            newest = ts
            d.expire(ts)
        # bounded: nothing remembered lies more than a window and a bucket behind
        live = {e for e, t in stored.items() if t > newest - window - window / 10 - 1e-9}
        assert len(d) <= len(live)


def test_buckets_follow_pythons_floor_division_compiled_too() -> None:
    """An event time's bucket is ``ts // width`` as Python's floats divide: 0.5 // 0.1 is
    4.0, where C's floor(0.5 / 0.1) is 5 (typing the width as a C double would change the
    buckets, and so the state, of the compiled build only)."""
    dedup = Deduplicator(1.0)  # buckets of 0.1 s
    assert not dedup.seen("e-1", 0.5)
    assert dedup.take_chunks() == [("4:0", ["e-1"])]


Filed = list[tuple[bool, dict[int, list[str]]]]


def _filed(window: float, steps: list[tuple[str, float]]) -> Filed:
    """What a window does with ``steps`` (each: an id seen, then the clock at its time):
    every answer, and the ids it holds by bucket (as its state's chunks name them)."""
    d = Deduplicator(window)
    out = []
    for event_id, ts in steps:
        answer = d.seen(event_id, ts)
        d.expire(ts)
        chunks = d.take_chunks(everything=True)
        out.append((answer, {int(key.split(":")[0]): ids or [] for key, ids in chunks}))
    return out


def _reference(window: float, steps: list[tuple[str, float]]) -> Filed:
    """The same by the plain formulas: a float floor division for every event."""
    width = window / 10
    buckets: dict[int, list[str]] = {}
    oldest = -math.inf
    out = []
    for event_id, ts in steps:
        answer = any(event_id in ids for ids in buckets.values())
        if not answer:
            bucket = int(ts // width)
            if bucket < oldest + 10:
                bucket = int(oldest + 10)
            buckets.setdefault(bucket, []).append(event_id)
        horizon = int((ts - window) // width)
        if horizon > oldest:
            oldest = horizon
            buckets = {b: ids for b, ids in buckets.items() if b >= horizon}
        out.append((answer, {b: list(ids) for b, ids in buckets.items()}))
    return out


NEAR_BORDERS = st.integers(-3, 40).flatmap(lambda k: st.sampled_from([
    k * 8.64, math.nextafter(k * 8.64, math.inf), math.nextafter(k * 8.64, -math.inf),
    k * 8.64 + 1e-9, k * 8.64 - 1e-9]))


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), NEAR_BORDERS | st.floats(-30, 400)),
                max_size=60))
def test_event_times_on_and_beside_bucket_borders_are_filed_as_the_plain_formula_says(
        steps: list[tuple[str, float]]) -> None:
    """The window places an event without a division when its time is certainly inside the
    last bucket, and skips expiring until the clock can reach the next one: both give
    the answers and buckets of a division for every event."""
    assert _filed(86.4, steps) == _reference(86.4, steps)


def test_each_pair_of_times_around_a_border_is_filed_as_the_plain_formula_says() -> None:
    """Every ordered pair of times on, one ulp beside and 1e-9 beside two neighbouring
    borders (8.64-wide buckets: no border is a double), the first filing a bucket the
    second may or may not share."""
    for k in range(-3, 40):
        near = [t for border in (k * 8.64, (k + 1) * 8.64) for t in (
            border, math.nextafter(border, math.inf), math.nextafter(border, -math.inf),
            border + 1e-9, border - 1e-9, border + 4.32)]
        for first, second in itertools.product(near, repeat=2):
            steps = [("a", first), ("b", second)]
            assert _filed(86.4, steps) == _reference(86.4, steps), steps

