"""The reorder buffer (workers/core/reorder.py): events come out in (time, id) order, each
once, never before the watermark lets them, whatever order they went in."""

from __future__ import annotations

import heapq
import math

from hypothesis import given
from hypothesis import strategies as st

from workers.core.reorder import ReorderBuffer
from workers.core.touchpoints import Touchpoint


def event(ts: float, event_id: str) -> Touchpoint:
    return Touchpoint({}, event_id, ts, "page_view", {"anonymous_id": "a"})


# few distinct times, so that ties on time (broken by id) are common
arrivals = st.lists(st.tuples(st.integers(0, 20).map(float), st.integers(0, 50)),
                    unique=True, max_size=80)


@given(arrivals, st.lists(st.floats(0, 25), max_size=80))
def test_releases_in_time_then_id_order_up_to_each_watermark(
        keys: list[tuple[float, int]], watermarks: list[float]) -> None:
    """As a heap of (time, id) would: pushes and pops interleaved, every pop the earliest
    event held if the watermark has passed it."""
    buffer, heap = ReorderBuffer(), []
    out, want = [], []
    for n, (ts, number) in enumerate(keys):
        tp = event(ts, f"e-{number:02d}")
        buffer.push(tp)
        heapq.heappush(heap, (ts, tp.event_id))
        until = watermarks[n] if n < len(watermarks) else -1.0
        while (ready := buffer.pop(until)) is not None:
            out.append((ready.ts, ready.event_id))
        while heap and heap[0][0] <= until:
            want.append(heapq.heappop(heap))
        assert out == want and len(buffer) == len(heap)
    while (ready := buffer.pop(math.inf)) is not None:
        out.append((ready.ts, ready.event_id))
    assert out == want + sorted(heap) and len(buffer) == 0


def test_in_order_and_late_events_interleave() -> None:
    buffer = ReorderBuffer()
    for ts, event_id in [(1.0, "a"), (3.0, "b"), (2.0, "late"), (3.0, "a"), (4.0, "c")]:
        buffer.push(event(ts, event_id))
    assert buffer.pop(0.5) is None
    released = []
    while (tp := buffer.pop(3.0)) is not None:
        released.append(tp.event_id)
    assert released == ["a", "late", "a", "b"]
    assert [tp.event_id for tp in buffer] == ["c"]


def test_two_copies_of_one_event_both_come_out() -> None:
    """One id, one time twice (the de-dup window had forgotten the first): neither is lost
    and nothing raises."""
    buffer = ReorderBuffer()
    first, second, late = event(5.0, "x"), event(5.0, "x"), event(1.0, "y")
    for tp in (first, second, late, event(1.0, "y")):
        buffer.push(tp)
    released = [tp for tp in iter(lambda: buffer.pop(10.0), None)]
    assert [tp.event_id for tp in released] == ["y", "y", "x", "x"]
    assert {id(first), id(second)} <= {id(tp) for tp in released}


def test_drop_lets_go_of_the_named_events_in_both_parts() -> None:
    buffer = ReorderBuffer()
    for ts, event_id in [(1.0, "keep-1"), (5.0, "drop-1"), (2.0, "drop-2"), (6.0, "keep-2")]:
        buffer.push(event(ts, event_id))
    assert buffer.drop(lambda tp: tp.event_id.startswith("drop")) == 2
    assert [tp.event_id for tp in iter(lambda: buffer.pop(math.inf), None)] == [
        "keep-1", "keep-2"]
