"""Segment ids that keep their meaning: a registry of behaviours and their lineage.

Marketing automation keys campaigns on a segment id, so an id is born once for a
behaviour and stays with it. Each model check hands the registry its candidate
centroids (in feature units) and the share of recent profiles nearest to each; they
are paired with the registered behaviours by optimal assignment under a cost bound,
measured with the scale each feature had when the registry first saw it vary: a space
that does not move with the data, so a drifting population cannot slide an id onto
another behaviour. What does not pair is a lineage event, each rare and evidenced:

- ``birth``: a new behaviour with at least ``min_segment_share`` of recent profiles,
  seen on ``birth_confirmations`` checks in a row (at once when no behaviour matched:
  the warm-up);
- ``split``: a birth next to a behaviour that keeps its id (a segment that split in two);
- ``merge``: a behaviour that lost its centroid next to one that kept its id;
- ``retirement``: a behaviour whose share fell below half the minimum, nothing near it;
- ``rename`` (decided by the pipeline): what sets a segment apart changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy.optimize import linear_sum_assignment

from workers.config import SegmentationConfig
from workers.core.records import LineageKind
from workers.core.reference import Reference

# merges and splits are told apart from births and retirements within this many match bounds
_NEAR = 2.0


@dataclass(frozen=True)
class Lineage:
    kind: LineageKind
    segment_id: int
    parents: tuple[int, ...] = ()  # split: the segment it came from
    successor: int | None = None  # merge: the segment its people went to
    share: float | None = None  # birth, split: its share of recent profiles
    previous_name: str | None = None  # rename


@dataclass
class Registry:
    """Live behaviours (id -> latest centroid), retired ids, and births not confirmed yet."""

    weights: tuple[float, ...]
    min_share: float
    bound: float
    confirmations: int
    scale: dict[int, float] = field(default_factory=dict)  # column position -> fixed scale
    live: dict[int, tuple[float, ...]] = field(default_factory=dict)
    retired: dict[int, int | None] = field(default_factory=dict)  # id -> successor
    pending: list[tuple[tuple[float, ...], int]] = field(default_factory=list)
    next_id: int = 0

    @classmethod
    def from_config(cls, weights: tuple[float, ...], cfg: SegmentationConfig) -> Registry:
        return cls(weights, cfg.min_segment_share, cfg.match_distance, cfg.birth_confirmations)

    def distance(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        w = self.weights
        return math.sqrt(math.fsum(((a[j] - b[j]) / s * w[j]) ** 2
                                   for j, s in self.scale.items()))

    def update(self, reference: Reference, centroids: list[tuple[float, ...]],
               shares: list[float]) -> tuple[list[int | None], list[Lineage]]:
        """The id of each candidate (None: not published) and the lineage events."""
        for j, varies in enumerate(reference.active):
            if varies:
                self.scale.setdefault(j, reference.scale[j])
        keep = [i for i, s in enumerate(shares) if s >= self.min_share / 2]
        ids: list[int | None] = [None] * len(centroids)
        live = sorted(self.live)
        if live and keep:
            cost = [[self.distance(centroids[i], self.live[sid]) for sid in live] for i in keep]
            capped = [[min(c, 2 * self.bound + 1.0) for c in row] for row in cost]
            rows, cols = linear_sum_assignment(capped)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[r][c] <= self.bound:
                    ids[keep[r]] = live[c]
        events: list[Lineage] = []
        matched = {sid: i for i, sid in enumerate(ids) if sid is not None}
        for sid in live:
            if sid in matched:
                continue
            near = self._nearest(self.live[sid], [(centroids[i], i) for i in keep
                                                  if ids[i] is not None])
            successor = None if near is None else ids[near]
            events.append(Lineage("merge" if successor is not None else "retirement", sid,
                                  successor=successor))
            del self.live[sid]
            self.retired[sid] = successor
        pending = []
        for i in keep:
            if ids[i] is not None or shares[i] < self.min_share:
                continue
            seen = 1 + max((n for c, n in self.pending
                            if self.distance(centroids[i], c) <= self.bound), default=0)
            # with nothing matched (the warm-up, or a stream unlike anything before) the
            # window itself is the evidence
            if matched and seen < self.confirmations:
                pending.append((centroids[i], seen))
                continue
            sid = ids[i] = self.next_id
            self.next_id += 1
            parent = self._nearest(centroids[i], [(self.live[p], p) for p in matched])
            share = round(shares[i], 6)
            events.append(Lineage("birth", sid, share=share) if parent is None
                          else Lineage("split", sid, parents=(parent,), share=share))
        self.pending = pending
        for i, known in enumerate(ids):
            if known is not None:
                self.live[known] = centroids[i]
        return ids, events

    def _nearest(self, point: tuple[float, ...],
                 options: list[tuple[tuple[float, ...], int]]) -> int | None:
        """The tag of the option nearest to ``point`` within ``_NEAR`` bounds, if any."""
        best = min(((self.distance(point, c), tag) for c, tag in options), default=None)
        return None if best is None or best[0] > _NEAR * self.bound else best[1]
