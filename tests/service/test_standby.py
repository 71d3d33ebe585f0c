"""The standby role (workers.service.standby): which states a worker keeps a copy of.

A copy is read from the changelogs, whole the first time; these tests replace the copy
with a recorder, as what they check is the choice of what to copy, not the reading (the
integration tests read real changelogs: test_worker_cluster.py, test_worker_partitioned.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from workers.config import load_config
from workers.service import standby
from workers.service.state import WorkerState


@dataclass
class _Reads:
    """What the replica asked to read: ``None`` for the owner's changelogs, else a partition."""

    done: list[int | None] = field(default_factory=list)

    def copy(self, partition: int | None) -> Any:
        reads = self

        class _Copy:
            async def catch_up(self) -> int:
                reads.done.append(partition)
                return 0

        return _Copy()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> _Reads:
    recorded = _Reads()
    monkeypatch.setattr(standby, "ChangelogCopy", lambda config, security: recorded.copy(None))
    monkeypatch.setattr(standby, "task_copy", lambda config, security, p: recorded.copy(p))
    return recorded


def _replica(state: WorkerState) -> standby.StandbyReplica:
    config = load_config(env={"PERSONA_STREAM_KAFKA__PARTITIONS": "4"})
    clients: Any = type("Clients", (), {"security": None})()
    return standby.StandbyReplica(config, clients, state)


def test_a_worker_copies_the_owner_state_and_every_partition_it_does_not_hold(
        reads: _Reads) -> None:
    state = WorkerState(task_partitions=[1])
    asyncio.run(_replica(state).refresh())
    assert reads.done == [0, 2, 3, None]
    assert sorted(state.task_standbys) == [0, 2, 3]
    assert state.standby is not None


def test_states_kept_over_a_revocation_are_not_copied_until_the_assignment(
        reads: _Reads) -> None:
    """Between a revocation and the assignment a worker keeps what it handed over; it
    usually comes straight back, so reading its changelogs whole would be wasted."""
    state = WorkerState(owner_kept=True, partitions_kept=frozenset({0, 2}))
    replica = _replica(state)
    asyncio.run(replica.refresh())
    assert reads.done == [1, 3]
    assert state.standby is None
    state.owner_kept, state.partitions_kept = False, frozenset()  # not given back
    asyncio.run(replica.refresh())
    assert reads.done == [1, 3, 0, 1, 2, 3, None]  # now this worker's copies to keep
