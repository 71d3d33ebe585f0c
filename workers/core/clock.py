"""The stream's event-time clock: where "now" is, robust to a few outliers.

The reorder buffer's watermark, de-duplication expiry and the far-future check
all hang on it. Taking the newest event time seen would let one record dated
9999 move "now" for good (the buffer would release everything, de-duplication
would forget everything, no tick would run again); the second newest cannot be
moved by one record. Two is enough: a tracker with a broken clock sends all its
events wrong, not one, and a third witness would cost small inputs (a handful
of sample events of mixed dates) their later events. Until two events have been
seen the stream has no clock yet (``now`` is -inf). Events dated beyond ``now`` plus the tolerance
are not seen by the clock: they wait in :class:`FarFuture` until other events
confirm the jump, or the stream is flushed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from workers.core.records import Origin
from workers.core.touchpoints import Touchpoint

OUTLIERS = 1  # records that cannot move the clock, however far ahead they are dated


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
        # in place, the oldest out (compiled, comparisons of C doubles): insort, then
        # del top[0], without moving the list's items twice
        n = len(top)
        i = 1
        while i < n and top[i] <= ts:
            top[i - 1] = top[i]
            i += 1
        top[i - 1] = ts
        if top[0] == before:  # still -inf: fewer events than the clock needs
            return False
        self.limit = top[0] + self.tolerance
        return True


class FarFuture:
    """Events dated beyond the clock's limit, waiting to see whether the stream follows.

    One record dated decades ahead must not move the clock, and neither may several
    such records scattered over months; but a stream that really jumps ahead (a
    quiet weekend, a backfill of a later month) must not lose its first events. So
    a far-future event waits here, unseen by the clock: once ``CONFIRM`` waiting
    events lie within the tolerance of one another, the stream is there, and they
    are released (in event-time order) and move the clock as any event does; the
    others are released once the clock reaches them. One still waiting when the
    stream is flushed becomes a dead letter. At most ``MAX_HELD`` wait; past that
    the furthest ahead goes first.
    """

    MAX_HELD = 1000
    CONFIRM = 2

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

    def confirmed(self, ts: float, tolerance: float) -> list[Touchpoint]:
        """The waiting events within ``tolerance`` of ``ts``, released, when there are at
        least ``CONFIRM`` of them (the stream moved there); else none."""
        near = [tp for tp, _ in self._held.values() if abs(tp.ts - ts) <= tolerance]
        if len(near) < self.CONFIRM:
            return []
        near.sort(key=lambda tp: (tp.ts, tp.event_id))
        for tp in near:
            del self._held[tp.event_id]
        return near

    def release(self, limit: float) -> list[Touchpoint]:
        """The events now within ``limit``, in event-time order."""
        ready = sorted((tp for tp, _ in self._held.values() if tp.ts <= limit),
                       key=lambda tp: (tp.ts, tp.event_id))
        for tp in ready:
            del self._held[tp.event_id]
        return ready

    def drop(self, forgotten: Callable[[Touchpoint], bool]) -> int:
        """Let go of the waiting events ``forgotten`` names (a person forgotten); how many."""
        gone = [event_id for event_id, (tp, _) in self._held.items() if forgotten(tp)]
        for event_id in gone:
            del self._held[event_id]
        return len(gone)

    def waiting(self) -> list[tuple[Touchpoint, Origin | None]]:
        """Every event waiting, without releasing it (saved state)."""
        return list(self._held.values())

    def drain(self) -> list[tuple[Touchpoint, Origin | None]]:
        """Every event still waiting, in event-time order (the stream is being flushed)."""
        held = sorted(self._held.values(), key=lambda held: (held[0].ts, held[0].event_id))
        self._held.clear()
        return held
