"""Every completed rebalance of a role's group is counted, timed and logged, and the role's
own callbacks run as before."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import TopicPartition

from workers.service.metrics import Metrics
from workers.service.rebalances import RebalanceWatch


class Role:
    """A role's listener: records the calls, and what the watch had counted at each."""

    def __init__(self, watch: list[RebalanceWatch], fail: bool = False) -> None:
        self.calls: list[tuple[str, Any, int]] = []
        self.watch = watch
        self.fail = fail

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.calls.append(("revoked", revoked, self.watch[0].rebalances))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.calls.append(("assigned", assigned, self.watch[0].rebalances))
        if self.fail:
            raise TimeoutError("the restore timed out")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_assignment_is_counted_with_its_pause_after_the_role_took_it(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, observed, holder = Clock(), [], []
    role = Role(holder)
    watch = RebalanceWatch("profiles", role, lambda r, p: observed.append((r, p)), clock)
    holder.append(watch)
    first = {TopicPartition("t", 0), TopicPartition("t", 1)}

    async def rebalance() -> None:
        clock.now = 101.5  # joined 1.5 s after subscribing
        await watch.on_partitions_assigned(first)
        clock.now = 200.0
        await watch.on_partitions_revoked(first)
        clock.now = 200.25
        await watch.on_partitions_assigned({TopicPartition("t", 1)})

    with caplog.at_level(logging.INFO, logger="persona_stream.worker"):
        asyncio.run(rebalance())
    # the role's callbacks ran, in order, with the same arguments; a rebalance counts once
    # the role has taken its assignment
    assert role.calls == [("assigned", first, 0), ("revoked", first, 1),
                          ("assigned", {TopicPartition("t", 1)}, 1)]
    assert watch.rebalances == 2
    assert observed == [("profiles", 1.5), ("profiles", 0.25)]
    lines = [r for r in caplog.records if r.getMessage() == "rebalanced"]
    assert [(r.role, r.rebalances, r.pause_seconds, r.partitions) for r in lines] == [
        ("profiles", 1, 1.5, [0, 1]), ("profiles", 2, 0.25, [1])]


def test_an_assignment_the_role_failed_to_take_is_not_counted() -> None:
    holder: list[RebalanceWatch] = []
    observed: list[tuple[str, float]] = []
    watch = RebalanceWatch("owner", Role(holder, fail=True),
                           lambda r, p: observed.append((r, p)), Clock())
    holder.append(watch)
    with pytest.raises(TimeoutError):  # aiokafka logs a listener's error and goes on
        asyncio.run(watch.on_partitions_assigned({TopicPartition("t", 0)}))
    assert watch.rebalances == 0 and observed == []


def test_the_metrics_count_rebalances_and_their_pauses_by_role() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    metrics.observe_rebalance("profiles", 0.3)
    metrics.observe_rebalance("profiles", 40.0)
    metrics.observe_rebalance("trainer", 0.05)
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(metrics.exposition().decode())
             for s in f.samples}
    assert found[("persona_stream_rebalances_total", (("role", "profiles"),))] == 2
    assert found[("persona_stream_rebalances_total", (("role", "trainer"),))] == 1
    pause = "persona_stream_rebalance_pause_seconds"
    assert found[(f"{pause}_sum", (("role", "profiles"),))] == pytest.approx(40.3)
    assert found[(f"{pause}_bucket", (("le", "0.5"), ("role", "profiles")))] == 1
    assert found[(f"{pause}_bucket", (("le", "60.0"), ("role", "profiles")))] == 2
