"""Each role group's rebalances, counted, timed and logged.

A rebalance pauses a role: from the revocation until the new assignment is taken
(its state kept or restored), the role's partitions are held by nobody. One now and
then is a worker joining or leaving; a steady stream of them is a group that does not
settle (session 14: aiokafka's second JoinGroup per join kept static members
rebalancing for minutes), and the workers stay busy doing nothing useful. So every
completed rebalance of a role's consumer is counted
(``persona_stream_rebalances_total{role}``), its pause observed
(``persona_stream_rebalance_pause_seconds{role}``) and logged as one INFO line; the
alert ``PersonaStreamRebalanceStorm`` watches the count.

A role that could not take or hand over its partitions (its state's restore failed:
a damaged changelog, a state made under other settings, the broker gone for the
whole restore) must not go on holding them: aiokafka logs a callback's error with its
traceback and keeps the assignment, and the role would drop every record it is given.
The watch keeps the error instead, and :meth:`RebalanceWatch.check` raises it in the
role's read loop before the role is handed a record, which stops the worker with it
(exit 1: the orchestrator restarts it, and the group gives the partitions to a worker
that can take them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from workers.errors import BrokerError, PersonaStreamError
from workers.service.logs import worker_log


class RebalanceWatch(ConsumerRebalanceListener):
    """Wraps ``role``'s listener: the role's callbacks run unchanged, and each assignment
    that completes is counted with the pause since the revocation before it (since the
    consumer subscribed, for the first)."""

    def __init__(self, role: str, listener: ConsumerRebalanceListener,
                 observe: Callable[[str, float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.role = role
        self.listener = listener
        self.observe = observe
        self.clock = clock
        self.rebalances = 0
        self._paused_at = clock()  # joining the group is the first pause
        self.failed: Exception | None = None  # what a callback of the role raised

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._paused_at = self.clock()
        try:
            await self.listener.on_partitions_revoked(revoked)
        except Exception as exc:
            self.failed = exc  # raised by check(), in the role's loop

    async def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            await self.listener.on_partitions_assigned(assigned)
        except Exception as exc:
            self.failed = exc  # raised by check(), in the role's loop
            return
        pause = self.clock() - self._paused_at
        self.rebalances += 1
        self.observe(self.role, pause)
        partitions: dict[str, list[int]] = {}
        for tp in sorted(assigned):
            partitions.setdefault(tp.topic, []).append(tp.partition)
        worker_log.info("rebalanced", extra={
            "role": self.role, "rebalances": self.rebalances, "pause_seconds": round(pause, 3),
            "partitions": partitions})

    def check(self) -> None:
        """Raise what the role's callback raised, as one line for the operator: the role's
        own error (a :class:`~workers.errors.StateError`...) as it is, a client's error as a
        :class:`~workers.errors.BrokerError`; anything else (a defect) with its traceback."""
        failed = self.failed
        if failed is None:
            return
        if isinstance(failed, PersonaStreamError):
            raise failed
        if isinstance(failed, KafkaError | OSError | TimeoutError):
            raise BrokerError(f"the {self.role} role could not take or hand over its"
                              f" partitions: {failed!r}") from failed
        raise failed
