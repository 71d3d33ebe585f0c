"""Persona cards when the profiles live in partitions: each partition's report, added up.

A card's words (name, centroid, what sets it apart) come from the model version,
the same in every partition; its size and KPIs are sums over profiles
(:func:`~workers.core.personas.segment_totals`), so each profile partition
reports its own and the sums over the partitions are the population's.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.core.personas import SegmentTotals, with_totals
from workers.core.records import PersonaCard


@dataclass(frozen=True)
class CardReport:
    """One profile partition's cards (sizes and KPIs of its own profiles) and totals."""

    partition: int
    version: int  # the model version the partition assigns with
    cards: list[PersonaCard]
    totals: dict[int, SegmentTotals]


class CardAssembly:
    """The newest report of every partition; the population's cards from them."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.reports: dict[int, CardReport] = {}

    def offer(self, report: CardReport) -> None:
        if 0 <= report.partition < self.partitions:
            self.reports[report.partition] = report

    def cards(self) -> list[PersonaCard]:
        """The cards of the newest version any partition reports, each with the totals of
        its segment over every partition (segment ids keep their meaning across versions,
        so a partition still on the previous version counts in the same segments); none
        until every partition has reported."""
        if len(self.reports) < self.partitions:
            return []
        reports = [self.reports[p] for p in range(self.partitions)]  # sums in one order
        newest = max(reports, key=lambda r: r.version)
        totals: dict[int, SegmentTotals] = {}
        for report in reports:
            for sid, counts in report.totals.items():
                summed = totals.setdefault(sid, [0, 0, 0.0, 0, 0])
                for i, value in enumerate(counts):
                    summed[i] += value
        return [with_totals(card, totals.get(card["segment_id"], [0, 0, 0.0, 0, 0]))
                for card in newest.cards]
