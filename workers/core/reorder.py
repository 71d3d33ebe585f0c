"""Events held back until the watermark passes them, released in (time, event id) order.

Most events of a stream arrive in that order, or nearly: the identity stage holds each
for the reorder window, so every event goes in and comes out once. A heap alone
costs a dozen tuple comparisons per event; here an event no earlier than the last one
in joins a run that is sorted already (one comparison), and only a late one goes to a
heap. The next event out is the earlier of the two heads. Worst case, a stream in
reverse order, is the heap's: O(log n) per event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from heapq import heapify, heappop, heappush

from workers.core.touchpoints import Touchpoint


class ReorderBuffer:
    """Held events; no two share both time and id (the de-duplication comes first)."""

    def __init__(self) -> None:
        self._run: deque[Touchpoint] = deque()  # in (ts, event_id) order
        self._late: list[tuple[float, str, Touchpoint]] = []  # a heap

    def __len__(self) -> int:
        return len(self._run) + len(self._late)

    def __iter__(self) -> Iterator[Touchpoint]:
        """Every held event, in no particular order."""
        yield from self._run
        for _, _, tp in self._late:
            yield tp

    def push(self, tp: Touchpoint) -> None:
        run = self._run
        if run:
            last = run[-1]
            if tp.ts < last.ts or (tp.ts == last.ts and tp.event_id < last.event_id):
                heappush(self._late, (tp.ts, tp.event_id, tp))
                return
        run.append(tp)

    def pop(self, until: float) -> Touchpoint | None:
        """The earliest event held if its time is ``until`` or before, else None."""
        run, late = self._run, self._late
        if late:
            ts, event_id, tp = late[0]
            if run:
                head = run[0]
                if head.ts < ts or (head.ts == ts and head.event_id < event_id):
                    return run.popleft() if head.ts <= until else None
            if ts <= until:
                heappop(late)
                return tp
            return None
        if run:
            head = run[0]
            if head.ts <= until:
                return run.popleft()
        return None

    def drop(self, unwanted: Callable[[Touchpoint], bool]) -> int:
        """Let go of the events ``unwanted`` names; returns how many."""
        before = len(self)
        self._run = deque([tp for tp in self._run if not unwanted(tp)])
        self._late = [item for item in self._late if not unwanted(item[2])]
        heapify(self._late)
        return before - len(self)
