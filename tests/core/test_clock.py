"""The stream's clock (workers/core/clock.py): "now" is the second newest event time."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from workers.core.clock import OUTLIERS, StreamClock

TIMES = st.lists(st.sampled_from([1.0, 2.0, 3.0]) | st.floats(0, 1e10), max_size=40)


@given(TIMES)
def test_now_is_the_second_newest_time_and_observe_says_when_it_moved(times: list[float]
                                                                      ) -> None:
    clock = StreamClock(tolerance=60.0)
    for n, ts in enumerate(times):
        before = clock.now
        moved = clock.observe(ts)
        newest = sorted(times[:n + 1], reverse=True)
        expected = newest[OUTLIERS] if len(newest) > OUTLIERS else -math.inf
        assert clock.now == expected
        assert moved == (clock.now > before)
        assert clock.limit == (math.inf if expected == -math.inf else expected + 60.0)
