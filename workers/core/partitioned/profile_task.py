"""One partition of profiles: the identity stage's records in, segment changes out.

A task applies its records in the order the identity stage sent them and waits,
rather than guess, where that order alone does not decide:

* the states of profiles a profile absorbed are merged into it at the next tick
  every partition is sent (:func:`~workers.core.partitioned.records.everywhere`:
  every few ticks, and at a flush), not at the merge: the absorbed profile of
  another partition sends its state
  (:class:`~workers.core.partitioned.records.Moved`) when it reaches the merge in
  its own records, and that tick waits until every such state is here. Until then
  the survivor's events go on (its features without the absorbed ones'), so the
  partitions of two workers do not wait for each other at every merge; absorbed
  states of the same partition are held back alike,
  so the results do not depend on how profiles fall into partitions. A profile
  moved away or forgotten first waits for the states it holds back;
* tick ``n`` waits until the trainer has learned the epoch (a run of
  ``segmentation.version_epoch_ticks`` ticks) ``version_delay_ticks`` before it:
  the versions published up to then are in force from tick ``n`` on.

Both waits depend only on records of the identity stage's one order, so each
task's outputs are the same whatever the number of workers, their speed or how
the records of different sources interleave on the way in. Neither wait can be
circular: a record waits only for records the stage sent before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.config import Config
from workers.core.features import FeatureSpec, ProfileState
from workers.core.identity import ProfileId
from workers.core.partitioned.cards import CardReport
from workers.core.partitioned.records import (
    Forgotten,
    Mark,
    Move,
    Moved,
    Routed,
    Sample,
    TaskRecord,
    Tick,
    Version,
    everywhere,
)
from workers.core.partitioned.router import partition_of
from workers.core.personas import persona_cards
from workers.core.profile_work import ProfileWork
from workers.core.records import Output
from workers.core.segments import Snapshot, feature_columns
from workers.core.stats import Stats
from workers.core.touchpoints import Touchpoint


class TaskLearner:
    """The model version in force in a task, and the samples it sends the trainer."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.tick = 0  # the tick being run: the samples' tick
        self.samples: list[Sample] = []

    def learn(self, pid: ProfileId, vector: list[float], ts: float) -> Snapshot | None:
        self.samples.append(Sample(self.tick, pid, vector, ts))
        return None  # the trainer publishes; the version is in force ticks later


class IdentifierView:
    """The identifiers of this partition's profiles, as the identity stage sent them."""

    def __init__(self) -> None:
        self.held: dict[ProfileId, Mapping[str, list[str]]] = {}
        self.changed: set[ProfileId] = set()  # since the state's last commit took them

    def identifiers(self, profile_id: ProfileId) -> Mapping[str, list[str]]:
        return self.held.get(profile_id, {})

    def set(self, profile_id: ProfileId, identifiers: Mapping[str, list[str]]) -> None:
        self.held[profile_id] = identifiers
        self.changed.add(profile_id)

    def drop(self, profile_id: ProfileId) -> None:
        if self.held.pop(profile_id, None) is not None:
            self.changed.add(profile_id)


@dataclass(slots=True)
class HeldMerge:
    """The profiles a survivor absorbed whose states are merged at the next due tick."""

    keys: list[tuple[ProfileId, ProfileId]]  # (absorbed, the survivor it was sent to)
    trigger: str  # the last event that merged: the re-assessment's trigger
    ts: float


class ProfileTask:
    """The profiles of partition ``partition`` of ``partitions``."""

    def __init__(self, config: Config, partition: int, partitions: int) -> None:
        self.partition = partition
        self.partitions = partitions
        seg = config.segmentation
        self.epoch_ticks = seg.version_epoch_ticks
        self.delay = seg.version_delay_ticks // seg.version_epoch_ticks  # in epochs
        spec = FeatureSpec(config.features)
        columns, _ = feature_columns(spec, config.segmentation)
        self.learner = TaskLearner()
        self.view = IdentifierView()
        self.stats = Stats()
        self.work = ProfileWork(config, spec, self.learner, self.view, self.stats, [],
                                frozenset(columns), announces=False)
        self.inbox: deque[TaskRecord] = deque()  # from the identity stage, in its order
        # the number of the stage's next record: the inbox holds the ones just before it
        self.next_number = 0
        self.arrived: dict[tuple[ProfileId, ProfileId], ProfileState | None] = {}
        # states handed over in process by a partition of the same worker, whose copy
        # through the partition's topic is still to come (and is then not taken again)
        self.handed: set[tuple[ProfileId, ProfileId]] = set()
        self.versions: deque[Version] = deque()  # from the trainer, not in force yet
        self.learned_through = -1  # the trainer's last epoch this task has heard of
        self.held: dict[ProfileId, HeldMerge] = {}  # by survivor
        # since the state's last commit took them (workers.state.changelog.Holds)
        self.changed_holds: set[ProfileId] = set()
        self.changed_arrived: set[tuple[ProfileId, ProfileId]] = set()
        self.to_tasks: list[tuple[int, Moved]] = []
        self.to_trainer: list[Sample | Mark] = []

    def card_report(self) -> CardReport | None:
        """This partition's cards and their totals (none before a first model version)."""
        snapshot = self.learner.snapshot
        if snapshot is None:
            return None
        totals = self.work.segment_totals()
        return CardReport(self.partition, snapshot.version,
                          persona_cards(snapshot, self.work.names, self.work.spec, totals),
                          totals)

    # ---- what comes in ------------------------------------------------------------------

    def offer(self, record: TaskRecord, number: int | None = None) -> bool:
        """The identity stage's next record, with its number in this partition (None: a
        record sent before records were numbered). False for one this task was offered
        already: a stage restored from an older commit than this task's sends again what
        it sent since, and the task's state holds it (not even a profile's recent event
        ids would catch every one)."""
        if number is not None:
            if number < self.next_number:
                return False
            self.next_number = number + 1
        self.inbox.append(record)
        return True

    def offer_moved(self, moved: Moved, handed: bool = False) -> None:
        """A state sent here (again, after its sender restarted: the same state).

        ``handed``: given in process by a partition the same worker holds, rather than read
        from this partition's topic, where its copy comes later (the durable one, which
        a restarted partition reads): a wait costs no round trip through the broker.
        """
        key = moved.pid, moved.survivor
        if handed:
            self.handed.add(key)
        elif key in self.handed:  # the copy of one handed over
            self.handed.discard(key)
            return
        self.arrived[key] = moved.state
        self.changed_arrived.add(key)

    def offer_version(self, version: Version) -> None:
        """The trainer's answer for an epoch; one already had (sent again) is ignored."""
        if version.epoch <= self.learned_through:
            return
        self.versions.append(version)
        self.learned_through = version.epoch

    # ---- the work -----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the next record of the inbox can be applied now."""
        if not self.inbox:
            return False
        record = self.inbox[0]
        if isinstance(record, Tick):
            return self.learned_through >= self._in_force(record.tick) and (
                not self._due(record) or all(map(self._all_here, self.held)))
        if isinstance(record, (Move, Forgotten)):
            return self._all_here(record.pid)
        return True

    def _all_here(self, survivor: ProfileId) -> bool:
        """Whether every state ``survivor`` holds back has arrived."""
        held = self.held.get(survivor)
        return held is None or all(key in self.arrived for key in held.keys)

    def _due(self, tick: Tick) -> bool:
        """A tick every partition is sent: held-back states are merged there."""
        return everywhere(tick, self.epoch_ticks)

    @property
    def waiting_for(self) -> str | None:
        """What the next record waits for, said for operators; None when nothing waits."""
        if not self.inbox or self.ready:
            return None
        record = self.inbox[0]
        if isinstance(record, Tick) and self.learned_through < self._in_force(record.tick):
            return (f"the trainer's epoch {self._in_force(record.tick)} (learned"
                    f" {self.learned_through})")
        missing = sorted(f"{other} for {to}" for held in self.held.values()
                         for other, to in held.keys if (other, to) not in self.arrived)
        return (f"the states of {', '.join(missing)} ({len(self.inbox)} records and"
                f" {len(self.arrived)} states here)")

    def run(self) -> None:
        """Apply the records that can be applied now, in order."""
        inbox = self.inbox
        while self.ready:
            self._apply(inbox.popleft())

    def _apply(self, record: TaskRecord) -> None:
        if isinstance(record, Routed):
            self._routed(record)
        elif isinstance(record, Tick):
            self._tick(record)
        elif isinstance(record, Move):
            self._merge_held(record.pid)
            self.view.drop(record.pid)
            state = self.work.take(record.pid)
            self.to_tasks.append((partition_of(record.survivor, self.partitions),
                                  Moved(record.pid, record.survivor, state)))
        else:
            self._merge_held(record.pid)
            self.view.drop(record.pid)
            self.work.forget(record.pid, record.members, record.request)

    def _routed(self, record: Routed) -> None:
        pid, tp = record.pid, record.tp
        if record.absorbed:
            self._hold(pid, record.absorbed, tp)
        if record.identifiers is not None:
            self.view.set(pid, record.identifiers)
        self.work.apply(pid, tp, ())

    def _hold(self, pid: ProfileId, absorbed: tuple[ProfileId, ...], tp: Touchpoint) -> None:
        """``pid`` absorbed ``absorbed``: their states are merged at the next due tick
        (one of this partition is taken now; one of another comes as a Moved)."""
        held = self.held.get(pid)
        keys = [] if held is None else held.keys
        here, n = self.partition, self.partitions
        for other in absorbed:
            self.view.drop(other)
            if partition_of(other, n) == here:
                self.arrived[other, pid] = self.work.take(other)
                self.changed_arrived.add((other, pid))
                chained = self.held.pop(other, None)  # what it held back follows it
                if chained is not None:
                    keys.extend(chained.keys)
                    self.changed_holds.add(other)
            keys.append((other, pid))
        self.held[pid] = HeldMerge(keys, tp.event_id, tp.ts)
        self.changed_holds.add(pid)

    def _merge_held(self, survivor: ProfileId) -> None:
        held = self.held.pop(survivor, None)
        if held is not None:
            arrived = self.arrived
            self.work.absorb_held(survivor, [(key[0], arrived.pop(key)) for key in held.keys],
                                  held.trigger, held.ts)
            self.changed_holds.add(survivor)
            self.changed_arrived.update(held.keys)

    def _in_force(self, tick: int) -> int:
        """The last epoch whose versions are in force at ``tick``."""
        return tick // self.epoch_ticks - self.delay

    def _tick(self, record: Tick) -> None:
        if self._due(record):
            for survivor in sorted(self.held):
                self._merge_held(survivor)
        tick = record.tick
        work, learner = self.work, self.learner
        while self.versions and self.versions[0].epoch <= self._in_force(tick):
            for snapshot, ts in self.versions.popleft().snapshots:
                learner.snapshot = snapshot
                work.publish(snapshot, ts)
        learner.tick = tick
        work.run_tick()
        self.to_trainer.extend(learner.samples)
        learner.samples.clear()
        if (tick + 1) % self.epoch_ticks == 0:  # the epoch's last tick: its samples are sent
            self.to_trainer.append(Mark(tick // self.epoch_ticks, self.partition))

    # ---- state as data (workers.state.changelog writes and reads it) ---------------------

    def meta_state(self) -> dict[str, Any]:
        """Besides the profiles, their identifiers and the merges held back (each a record
        of its own): small, written whole per commit. The inbox is not state: the shell
        reads again from its first record."""
        return {"stats": self.stats, "learned_through": self.learned_through,
                # the number of the first record not applied, offered again after a restart:
                # the stage numbers a partition's records one after another (0 while the
                # inbox still holds records from before numbers, which come first)
                "next_number": max(0, self.next_number - len(self.inbox)),
                "snapshot": _fields(self.learner.snapshot),
                "versions": [(v.epoch, [(snapshot.fields(), ts) for snapshot, ts in v.snapshots])
                             for v in self.versions],
                "handed": sorted(self.handed),
                **self.work.meta_state()}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.stats = self.work.stats = meta["stats"]
        self.learned_through = meta["learned_through"]
        fields = meta["snapshot"]
        self.learner.snapshot = None if fields is None else Snapshot(*fields)
        self.versions = deque(Version(epoch, tuple((Snapshot(*f), ts) for f, ts in snapshots))
                              for epoch, snapshots in meta["versions"])
        # a state written before moved states had records of their own held them here
        self.arrived.update(((pid, survivor), state)
                            for pid, survivor, state in meta.get("arrived", ()))
        self.handed = {(pid, survivor) for pid, survivor in meta["handed"]}
        self.next_number = meta.get("next_number", 0)  # 0: a state from before numbers
        self.work.load_meta(meta)

    # ---- what goes out ------------------------------------------------------------------

    def take_outputs(self) -> list[Output]:
        out, self.work.out = self.work.out, []
        return out


def _fields(snapshot: Snapshot | None) -> tuple[Any, ...] | None:
    return None if snapshot is None else snapshot.fields()
