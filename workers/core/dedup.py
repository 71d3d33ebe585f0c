"""Exact de-duplication by ``event_id`` over a sliding window of event time.

Memory is bounded by the ids seen within the window (one set entry each),
not by the stream's length: ids are filed in buckets of a tenth of the window
and a whole bucket is dropped once the newest event time has left it behind.
The window is measured against the stream's clock (the second newest event
time), not against the order records arrive in, so de-duplication is exact for
any backlog whose events are less than a window behind the stream, however
long the backlog took to arrive. An id is filed under its event's time or the
clock's, whichever is later: an event that arrives behind the stream (a
partition whose backlog lags the others by hours) is remembered for a whole
window of the clock from its arrival, so its copy, a few seconds behind it in
its partition, is caught however far the other partitions have run ahead. An
event further behind than the window when it arrives cannot be checked against
an original the window already forgot: it is counted in
:attr:`Deduplicator.beyond_window` and the pipeline checks it against its
profile's ring of recent event ids too. The window
(``intake.dedup_window_seconds``, 24 h by default) is the memory knob: about
137 bytes per event id inside it (UUID ids; `bench.py dedup`, BENCHMARKS.md): the id
string and a set entry (the window's buckets list the same string objects).
"""

from __future__ import annotations

import math

_BUCKETS = 10
# How far inside a border an event time must lie to be placed without a division: 2 ** -40
# of the time, far wider than the rounding of either side (a float floor division calls
# fmod, hundreds of instructions a time; each event needs one or two)
_MARGIN = 2.0 ** -40


class Deduplicator:
    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._width = window_seconds / _BUCKETS
        self._ids: set[str] = set()  # every id held, for the lookup; by bucket below
        self._buckets: dict[int, list[str]] = {}
        # the bucket an id was last filed under, and the event times certainly in it
        self._bucket = 0
        self._bucket_lo = math.inf
        self._bucket_hi = -math.inf
        self._set_oldest(-math.inf)
        self.beyond_window = 0  # events too old to check against the window
        # what the state's changelog holds of each bucket: the starts of its chunks
        self._saved: dict[int, list[int]] = {}
        self._last_chunk: dict[int, int] = {}  # each saved bucket's last chunk's length
        self._gone: list[int] = []  # saved buckets expired since the last take_chunks()

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, event_id: str, ts: float) -> bool:
        """True for a repeat within the window; otherwise remembers the id."""
        if event_id in self._ids:
            return True
        if self._bucket_lo <= ts < self._bucket_hi:
            bucket = self._bucket
        else:
            bucket = self._file_under(int(ts // self._width))
        now = self._now  # the clock's bucket at the last expire()
        if bucket < now:  # behind the stream: remembered from the clock's time on
            if bucket < self._oldest:
                self.beyond_window += 1  # its original may be forgotten: cannot tell
            bucket = int(now)
        self._ids.add(event_id)
        members = self._buckets.get(bucket)
        if members is None:
            self._buckets[bucket] = [event_id]
        else:
            members.append(event_id)
        return False

    def expire(self, newest_ts: float) -> None:
        """Forget ids whose bucket lies a whole window behind ``newest_ts``."""
        if newest_ts < self._quiet_until:
            return
        horizon = int((newest_ts - self.window) // self._width)
        if horizon <= self._oldest:
            return
        self._set_oldest(horizon)
        for bucket in [b for b in self._buckets if b < horizon]:
            self._ids.difference_update(self._buckets.pop(bucket))
            if bucket in self._saved:
                self._gone.append(bucket)
                self._last_chunk.pop(bucket, None)

    # ---- state as keyed chunks: each commit appends the ids new in a bucket ---------

    def take_chunks(self, everything: bool = False) -> list[tuple[str, list[str] | None]]:
        """The chunks to write since the last call: ``bucket:start`` -> the ids filed in
        the bucket from ``start`` on, or None for a chunk of an expired bucket. What a
        commit writes is the ids seen since the last one, never the whole window.
        ``everything``: one chunk per bucket with all its ids (a state written afresh)."""
        out: list[tuple[str, list[str] | None]] = []
        saved = self._saved
        if everything:
            saved.clear()
            self._last_chunk.clear()
            self._gone = []
        for bucket in self._gone:
            out.extend((f"{bucket}:{start}", None) for start in saved.pop(bucket))
        self._gone = []
        for bucket, members in self._buckets.items():
            starts = saved.setdefault(bucket, [])
            start = starts[-1] + self._last_chunk[bucket] if starts else 0
            if start < len(members):
                starts.append(start)
                self._last_chunk[bucket] = len(members) - start
                out.append((f"{bucket}:{start}", members[start:]))
        return out

    def meta(self) -> dict[str, float]:
        """What the chunks do not say: how far the window has moved, and its counter."""
        return {"oldest": self._oldest, "beyond_window": self.beyond_window}

    def load_meta(self, meta: dict[str, float]) -> None:
        self._set_oldest(meta["oldest"])
        self.beyond_window = int(meta["beyond_window"])

    def _file_under(self, bucket: int) -> int:
        """Remember ``bucket`` and the event times certainly in it (``ts // width`` is
        the floor of the exact quotient, which the margin keeps from the borders)."""
        lo, hi = bucket * self._width, (bucket + 1) * self._width
        self._bucket = bucket
        self._bucket_lo = lo + abs(lo) * _MARGIN
        self._bucket_hi = hi - abs(hi) * _MARGIN
        return bucket

    def _set_oldest(self, oldest: float) -> None:
        """The oldest bucket kept, the clock's bucket, and the clock's time below which
        no bucket can expire (the horizon cannot pass ``oldest`` before it)."""
        self._oldest = oldest
        self._now = oldest + _BUCKETS
        border = self.window + (oldest + 1) * self._width
        self._quiet_until = border - abs(border) * _MARGIN

    def load_chunk(self, key: str, ids: list[str]) -> None:
        """One chunk read back from the changelog (any order of chunks)."""
        bucket_text, start_text = key.split(":")
        bucket, start = int(bucket_text), int(start_text)
        starts = self._saved.setdefault(bucket, [])
        members = self._buckets.setdefault(bucket, [])
        starts.append(start)
        starts.sort()
        if len(members) < start + len(ids):
            members.extend([""] * (start + len(ids) - len(members)))
        members[start:start + len(ids)] = ids
        self._ids.update(ids)
        if start == starts[-1]:
            self._last_chunk[bucket] = len(ids)
