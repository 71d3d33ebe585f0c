"""What the pipeline counted: the summary's and the metrics' source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields


@dataclass
class Stats:
    events_read: int = 0
    events_valid: int = 0
    events_invalid: int = 0
    events_duplicate: int = 0
    segment_changes: int = 0
    identity_merges: int = 0
    invalid_by_error: dict[str, int] = field(default_factory=dict)
    merges_refused: dict[str, int] = field(default_factory=dict)
    changes_by_reason: dict[str, int] = field(default_factory=dict)
    identifiers_blocked: int = 0
    identifiers_dropped: int = 0
    traits_dropped: int = 0
    records_without_events: int = 0  # read but holding no event (a CSV header line)
    model_updates: int = 0
    events_forgotten: int = 0  # naming a forgotten identifier: dropped, never dead letters
    profiles_forgotten: int = 0


def added(counts: Iterable[Stats]) -> Stats:
    """The counts of several stages as one: numbers add, counts by key add by key."""
    total = Stats()
    for stats in counts:
        for f in fields(Stats):
            mine, theirs = getattr(total, f.name), getattr(stats, f.name)
            if isinstance(mine, dict):
                for key, n in theirs.items():
                    mine[key] = mine.get(key, 0) + n
            else:
                setattr(total, f.name, mine + theirs)
    return total
