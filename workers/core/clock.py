"""The stream's event-time clock: where "now" is, robust to a few outliers.

The reorder buffer's watermark, de-duplication expiry and the far-future check
all hang on it. Taking the newest event time seen would let one record dated
9999 move "now" for good (the buffer would release everything, de-duplication
would forget everything, no tick would run again); the third newest cannot be
moved by fewer than three records. Until three events have been seen the stream
has no clock yet (``now`` is -inf). Events dated beyond ``now`` plus the tolerance
wait in :class:`FarFuture` until the stream confirms the jump or is flushed.
"""

from __future__ import annotations

import math
from bisect import insort

from workers.core.records import Origin
from workers.core.touchpoints import Touchpoint

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


class FarFuture:
    """Events dated beyond the clock's limit, waiting to see whether the stream follows.

    One record dated decades ahead must not move the clock; but a stream that really
    jumps ahead (a quiet weekend, a backfill of a later month) must not lose its first
    events either. So a far-future event waits here: once enough events confirm the
    jump, the clock moves and it is released, in event-time order, as if it had just
    arrived; if the stream is flushed first, it becomes a dead letter. At most
    ``MAX_HELD`` wait; past that the furthest ahead goes first.
    """

    MAX_HELD = 1000

    def __init__(self) -> None:
        self._held: dict[str, tuple[Touchpoint, Origin | None]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._held

    def hold(self, tp: Touchpoint,
             origin: Origin | None) -> tuple[Touchpoint, Origin | None] | None:
        """Keep ``tp``; returns the event pushed out when more than ``MAX_HELD`` wait."""
        self._held[tp.event_id] = (tp, origin)
        if len(self._held) <= self.MAX_HELD:
            return None
        furthest = max(self._held.values(), key=lambda held: (held[0].ts, held[0].event_id))
        return self._held.pop(furthest[0].event_id)

    def release(self, limit: float) -> list[Touchpoint]:
        """The events now within ``limit``, in event-time order."""
        ready = sorted((tp for tp, _ in self._held.values() if tp.ts <= limit),
                       key=lambda tp: (tp.ts, tp.event_id))
        for tp in ready:
            del self._held[tp.event_id]
        return ready

    def drain(self) -> list[tuple[Touchpoint, Origin | None]]:
        """Every event still waiting, in event-time order (the stream is being flushed)."""
        held = sorted(self._held.values(), key=lambda held: (held[0].ts, held[0].event_id))
        self._held.clear()
        return held
