"""Persona cards added up from the profile partitions' reports (no broker): the cards of
the whole population, whatever the number of partitions."""

from __future__ import annotations

import dataclasses

import pytest

from workers.core.partitioned.cards import CardAssembly, CardReport
from workers.core.partitioned.local import LocalTopology
from workers.core.personas import persona_cards, segment_totals
from workers.core.records import PersonaCard

from .test_local import stream, topology_over


def _reports(topology: LocalTopology) -> list[CardReport]:
    reports = [task.card_report() for task in topology.tasks]
    assert all(report is not None for report in reports), "every partition has a version"
    return [report for report in reports if report is not None]


def _whole(topology: LocalTopology) -> list[PersonaCard]:
    """The cards one process holding every profile makes with the same version."""
    task = topology.tasks[0]
    snapshot = task.learner.snapshot
    assert snapshot is not None
    everyone = [state for t in topology.tasks for state in t.work.profiles.values()]
    return persona_cards(snapshot, task.work.names, task.work.spec,
                         segment_totals(snapshot, everyone))


@pytest.mark.parametrize("partitions", [1, 3, 6])
def test_the_partitions_reports_add_up_to_the_cards_of_everyone(partitions: int) -> None:
    topology = topology_over(stream(), partitions, None)
    assembly = CardAssembly(partitions)
    reports = _reports(topology)
    for report in reports[:-1]:
        assembly.offer(report)
    assert assembly.cards() == [], "no cards before every partition has reported"
    assembly.offer(reports[-1])
    cards, want = assembly.cards(), _whole(topology)
    assert cards and [c["segment_id"] for c in cards] == [c["segment_id"] for c in want]
    segmented = sum(1 for t in topology.tasks for state in t.work.profiles.values()
                    if state.segment is not None)
    assert sum(c["size"] for c in cards) == segmented
    for got, expected in zip(cards, want, strict=True):
        assert {k: v for k, v in got.items() if k != "kpis"} == {
            k: v for k, v in expected.items() if k != "kpis"}
        # sums over partitions add in another order than one sum over everyone
        assert got["kpis"] == pytest.approx(expected["kpis"], abs=0.011)


def test_a_partition_on_the_previous_version_counts_in_the_same_segments() -> None:
    topology = topology_over(stream(), 3, None)
    reports = _reports(topology)
    behind = dataclasses.replace(reports[1], version=reports[1].version - 1, cards=[])
    assembly = CardAssembly(3)
    for report in (reports[0], behind, reports[2]):
        assembly.offer(report)
    cards = assembly.cards()
    assert [c["model_version"] for c in cards] == [reports[0].version] * len(cards)
    assert sum(c["size"] for c in cards) == sum(
        c["size"] for c in _whole(topology))


def test_a_report_of_a_partition_that_does_not_exist_is_ignored() -> None:
    topology = topology_over(stream(), 1, None)
    [report] = _reports(topology)
    assembly = CardAssembly(1)
    assembly.offer(dataclasses.replace(report, partition=5))
    assert assembly.cards() == []
