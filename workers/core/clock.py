"""The stream's event-time clock: where "now" is, robust to a few outliers.

The reorder buffer's watermark, de-duplication expiry and the far-future check
all hang on it. Taking the newest event time seen would let one record dated
9999 move "now" for good (the buffer would release everything, de-duplication
would forget everything, no tick would run again); the third newest cannot be
moved by fewer than three records. Until three events have been seen the stream
has no clock yet (``now`` is -inf).
"""

from __future__ import annotations

import math
from bisect import insort

OUTLIERS = 2  # records that cannot move the clock, however far ahead they are dated


class StreamClock:
    """The (OUTLIERS + 1)-th newest event time observed, and how far ahead of it is too far."""

    __slots__ = ("_top", "limit", "tolerance")

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._top = [-math.inf] * (OUTLIERS + 1)  # ascending: _top[0] is "now"
        self.limit = math.inf  # the newest acceptable event time: any, until the clock starts

    @property
    def now(self) -> float:
        return self._top[0]

    def observe(self, ts: float) -> bool:
        """Take one event time; True when "now" moved forward."""
        top = self._top
        if ts <= top[0]:
            return False
        before = top[0]
        insort(top, ts)
        del top[0]
        if top[0] == before:  # still -inf: fewer events than the clock needs
            return False
        self.limit = top[0] + self.tolerance
        return True
