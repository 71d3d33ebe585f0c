"""How every command runs CPython's cyclic garbage collector.

Reference counting frees almost everything the product makes the moment it is dropped;
the core's state holds no reference cycles (``tests/test_collector.py``). The cyclic
collector is still there for the libraries', and by default it costs a lot:

- a young collection every 700 container allocations: a worker holding millions of
  objects spent 37% of its CPU there (bench spread, 1 partitioned worker: 11.6 of 31
  CPU seconds) while finding almost no cycles (2,194 objects in 7,876 collections);
  with :data:`THRESHOLDS`, 2.1 s, and ``run`` is 7-15% faster (200,000 events,
  alternating);
- a full collection visits every tracked object held, about 13 per profile: 231 ms at
  15,000 profiles, seconds at a million, during which a worker does nothing else. So
  the survivors of each full collection are frozen (:func:`gc.freeze`): the next one
  visits only what came since. A frozen object dropped later is still freed by its
  reference count; only a cycle among frozen objects that becomes garbage stays (none
  in a worker at 5,000 events/s: an unfreeze and full collection 12 s into the run
  found 0 among 196,040 frozen). ``bench.py latency`` at 5,000/s, two runs each: the
  full collections' pauses 27-164 ms -> 3-53 ms, all collections 609-634 -> 301-310 ms.
  Only the worker freezes: the commands that end free everything at exit anyway.
"""

from __future__ import annotations

import gc
from typing import Any

THRESHOLDS = (50_000, 20, 20)


def tune() -> None:
    """Fewer young collections (every command)."""
    gc.set_threshold(*THRESHOLDS)


def freeze_after_full_collections() -> None:
    """Full collections that skip what earlier ones kept (the worker: a pause there is
    latency; ``run`` is no faster or slower with it, 400,000 events, alternating)."""
    if freeze_survivors not in gc.callbacks:
        gc.callbacks.append(freeze_survivors)


def freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """A :data:`gc.callbacks` entry: once a full collection is done, what it kept is
    moved out of the collector's sight."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()
