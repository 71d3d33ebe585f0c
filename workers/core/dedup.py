"""Exact de-duplication by ``event_id`` over a sliding window of event time.

Memory is bounded by the ids seen within the window (one dict entry each),
not by the stream's length: ids are filed in buckets of a tenth of the window
and a whole bucket is dropped once the newest event time has left it behind.
A duplicate that arrives more than a window after its original is not caught;
the window (``intake.dedup_window_seconds``, 24 h by default) is chosen far
beyond the retry horizon of tracking SDKs and Kafka producers.
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

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, event_id: str, ts: float) -> bool:
        """True for a repeat within the window; otherwise remembers the id."""
        if event_id in self._ids:
            return True
        bucket = int(ts // self._width)
        if bucket < self._oldest:
            return False  # older than anything still remembered: cannot tell, keep it
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
