"""Every completed rebalance of a role's group is counted, timed and logged, and the role's
own callbacks run as before."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaTimeoutError

from workers.errors import PersonaStreamError, StateError
from workers.service.metrics import Metrics
from workers.service.rebalances import RebalanceWatch


class Role(ConsumerRebalanceListener):
    """A role's listener: records the calls, and what the watch had counted at each."""

    def __init__(self, watch: list[RebalanceWatch], fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any, int]] = []
        self.watch = watch
        self.fail = fail

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.calls.append(("revoked", revoked, self.watch[0].rebalances))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.calls.append(("assigned", assigned, self.watch[0].rebalances))
        if self.fail is not None:
            raise self.fail


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
        ("profiles", 1, 1.5, {"t": [0, 1]}), ("profiles", 2, 0.25, {"t": [1]})]


@pytest.mark.parametrize(("raised", "stops_with"), [
    (StateError("the changelog topics was made with a different configuration: x"),
     "the changelog topics was made with a different configuration: x"),
    (KafkaTimeoutError("Failed to get offsets by times in 40000 ms"),
     "the owner role could not take or hand over its partitions: KafkaTimeoutError"),
])
def test_an_assignment_the_role_failed_to_take_stops_its_loop_in_one_line(
        raised: Exception, stops_with: str) -> None:
    """aiokafka would log the error with a traceback and keep the assignment, the role
    dropping every record; the watch keeps the error for the role's read loop."""
    holder: list[RebalanceWatch] = []
    observed: list[tuple[str, float]] = []
    watch = RebalanceWatch("owner", Role(holder, fail=raised),
                           lambda r, p: observed.append((r, p)), Clock())
    holder.append(watch)
    watch.check()  # nothing failed yet
    asyncio.run(watch.on_partitions_assigned({TopicPartition("t", 0)}))
    assert watch.rebalances == 0 and observed == []  # not taken: not counted
    with pytest.raises(PersonaStreamError, match=stops_with):
        watch.check()


def test_a_defect_in_a_callback_keeps_its_own_type_and_traceback() -> None:
    holder: list[RebalanceWatch] = []
    watch = RebalanceWatch("trainer", Role(holder, fail=KeyError("oops")),
                           lambda r, p: None, Clock())
    holder.append(watch)
    asyncio.run(watch.on_partitions_assigned({TopicPartition("t", 0)}))
    with pytest.raises(KeyError):
        watch.check()


def test_read_until_raises_a_failed_take_before_the_role_is_handed_a_record() -> None:
    """The read loop of every role checks its watch after each read."""
    from workers.service.clients import read_until

    handled: list[object] = []
    holder: list[RebalanceWatch] = []
    watch = RebalanceWatch("profiles", Role(holder, fail=StateError("damaged state")),
                           lambda r, p: None, Clock())
    holder.append(watch)

    class Consumer:
        """Delivers one batch per read; the take fails before the second."""

        reads = 0

        async def getmany(self, **_: object) -> dict[str, list[int]]:
            self.reads += 1
            if self.reads == 2:
                await watch.on_partitions_assigned({TopicPartition("t", 0)})
            return {"batch": [self.reads]}

        async def stop(self) -> None:
            handled.append("stopped")

    async def handle(batches: object) -> None:
        handled.append(batches)

    with pytest.raises(StateError, match="damaged state"):
        asyncio.run(read_until(asyncio.Event(), Consumer(), handle,  # type: ignore[arg-type]
                               started=True, watch=watch))
    assert handled == [{"batch": [1]}, "stopped"]


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
