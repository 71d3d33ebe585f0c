"""Exact de-duplication by ``event_id`` over a sliding window of event time.

Memory is bounded by the ids seen within the window (one dict entry each),
not by the stream's length: ids are filed in buckets of a tenth of the window
and a whole bucket is dropped once the newest event time has left it behind.
The window is measured against the stream's clock (the second newest event
time), not against the order records arrive in, so de-duplication is exact for
any backlog whose events are less than a window behind the stream, however
long the backlog took to arrive. An event further behind than that cannot be
checked here (its original may have been forgotten): it is counted in
:attr:`Deduplicator.beyond_window` and the pipeline checks it against its
profile's ring of recent event ids instead. The window
(``intake.dedup_window_seconds``, 24 h by default) is the memory knob: about
166 bytes per event id inside it (UUID ids; `bench.py dedup`, BENCHMARKS.md).
"""

from __future__ import annotations

import math

_BUCKETS = 10


class Deduplicator:
    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._width = window_seconds / _BUCKETS
        self._ids: dict[str, int] = {}
        self._buckets: dict[int, list[str]] = {}
        self._oldest = -math.inf
        self.beyond_window = 0  # events too old to check against the window

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, event_id: str, ts: float) -> bool:
        """True for a repeat within the window; otherwise remembers the id."""
        if event_id in self._ids:
            return True
        bucket = int(ts // self._width)
        if bucket < self._oldest:
            self.beyond_window += 1  # older than anything remembered: cannot tell, keep it
            return False
        self._ids[event_id] = bucket
        members = self._buckets.get(bucket)
        if members is None:
            self._buckets[bucket] = [event_id]
        else:
            members.append(event_id)
        return False

    def expire(self, newest_ts: float) -> None:
        """Forget ids whose bucket lies a whole window behind ``newest_ts``."""
        horizon = int((newest_ts - self.window) // self._width)
        if horizon <= self._oldest:
            return
        self._oldest = horizon
        for bucket in [b for b in self._buckets if b < horizon]:
            for event_id in self._buckets.pop(bucket):
                del self._ids[event_id]
