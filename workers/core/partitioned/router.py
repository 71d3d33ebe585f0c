"""The identity stage's downstream when profiles live in partitions: records per partition."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from workers.core.downstream import Downstream
from workers.core.forget import ForgetRequest
from workers.core.identity import IdentityGraph, ProfileId, Resolution
from workers.core.identity_stage import IdentityStage
from workers.core.partitioned.records import (
    Forgotten,
    Move,
    Routed,
    TaskRecord,
    Tick,
    everywhere,
)
from workers.core.records import Output
from workers.core.touchpoints import Touchpoint


def partition_of(pid: ProfileId, partitions: int) -> int:
    """The partition holding a profile: stable across processes and versions."""
    return zlib.crc32(pid.encode()) % partitions


class PartitionRouter(Downstream):
    """Turns each decision of the identity stage into records for the profile partitions.

    ``sent`` collects (partition, record) in the stage's order; the shell takes them.
    A merge across partitions is a :class:`Move` to the absorbed profile's partition
    before the survivor's event: that partition sends the state on, and the survivor's
    waits for it.

    A tick's end (:class:`Tick`) goes to the partitions that had an event in the tick,
    and to every partition when :func:`~workers.core.partitioned.records.everywhere`
    says: in any other tick a partition without an event has nothing to assess, so its
    Tick would change nothing. Most ticks of a stream hold a few events, so this sends
    a few Ticks per tick rather than one per partition.

    Each record is numbered within its partition (how many the stage sent there before
    it), and the numbers are state: a stage restored from its last commit numbers what it
    sends again as it did the first time, so a partition that applied a record already
    knows it by its number (:meth:`ProfileTask.offer`) however far the stage replays.
    """

    def __init__(self, partitions: int, epoch_ticks: int) -> None:
        self.partitions = partitions
        self.epoch_ticks = epoch_ticks  # segmentation.version_epoch_ticks
        self.graph: IdentityGraph | None = None
        self.out: list[Output] = []  # the stage's own outputs (this router makes none)
        self.sent: list[tuple[int, TaskRecord]] = []
        self.ticks = 0  # ticks ended so far: the next Tick's number
        self.touched: set[int] = set()  # partitions with an event in the tick under way
        self.numbers = [0] * partitions  # each partition's next record's number

    def attach(self, stage: IdentityStage) -> PartitionRouter:
        """The stage's downstream (``IdentityStage(config, router.attach)``)."""
        self.graph = stage.graph
        return self

    def event(self, tp: Touchpoint, res: Resolution) -> None:
        pid = res.profile_id
        assert pid is not None  # the stage dead-letters the unattributable
        n = self.partitions
        home = partition_of(pid, n)
        sent = self.sent
        for other in res.merged:
            where = partition_of(other, n)
            if where != home:
                sent.append((where, Move(other, pid)))
        identifiers = None
        if res.linked:
            assert self.graph is not None
            identifiers = self.graph.identifiers(pid)  # a new dict each call
        sent.append((home, Routed(pid, tp, tuple(res.merged), identifiers)))
        self.touched.add(home)

    def run_tick(self, final: bool = False) -> None:
        tick = Tick(self.ticks, final)
        self.ticks += 1
        if everywhere(tick, self.epoch_ticks):
            self.sent.extend((p, tick) for p in range(self.partitions))
        else:
            self.sent.extend((p, tick) for p in sorted(self.touched))
        self.touched.clear()

    def forget(self, pid: ProfileId, members: Mapping[str, list[str]],
               request: ForgetRequest) -> None:
        self.sent.append((partition_of(pid, self.partitions), Forgotten(pid, members, request)))

    def take(self) -> list[tuple[int, int, TaskRecord]]:
        """The records sent since the last take: (partition, number there, record)."""
        sent, self.sent = self.sent, []
        numbers = self.numbers
        taken = []
        for partition, record in sent:
            taken.append((partition, numbers[partition], record))
            numbers[partition] += 1
        return taken

    def meta_state(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "touched": sorted(self.touched), "numbers": self.numbers}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.ticks = meta["ticks"]
        # a state saved before records were numbered: from 0, as its partitions' states
        self.numbers = list(meta.get("numbers", [0] * self.partitions))
        # a state saved before Ticks went to touched partitions only: to all, as then
        self.touched = set(meta.get("touched", range(self.partitions)))
