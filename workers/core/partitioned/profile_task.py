"""One partition of profiles: the identity stage's records in, segment changes out.

A task applies its records in the order the identity stage sent them and waits,
rather than guess, where that order alone does not decide:

* an event whose profile absorbed a profile of another partition waits for that
  profile's state (:class:`~workers.core.partitioned.records.Moved`);
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
from typing import Any

from workers.config import Config
from workers.core.features import FeatureSpec, ProfileState
from workers.core.identity import ProfileId
from workers.core.partitioned.cards import CardReport
from workers.core.partitioned.records import (
    Mark,
    Move,
    Moved,
    Routed,
    Sample,
    TaskRecord,
    Tick,
    Version,
)
from workers.core.partitioned.router import partition_of
from workers.core.personas import persona_cards
from workers.core.profile_work import ProfileWork
from workers.core.records import Output
from workers.core.segments import Snapshot, feature_columns
from workers.core.stats import Stats


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
        self.arrived: dict[tuple[ProfileId, ProfileId], ProfileState | None] = {}
        # states handed over in process by a partition of the same worker, whose copy
        # through the partition's topic is still to come (and is then not taken again)
        self.handed: set[tuple[ProfileId, ProfileId]] = set()
        self.versions: deque[Version] = deque()  # from the trainer, not in force yet
        self.learned_through = -1  # the trainer's last epoch this task has heard of
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

    def offer(self, record: TaskRecord) -> None:
        self.inbox.append(record)

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
        if isinstance(record, Routed):
            return all((other, record.pid) in self.arrived for other in self._away(record))
        if isinstance(record, Tick):
            return self.learned_through >= self._in_force(record.tick)
        return True

    @property
    def waiting_for(self) -> str | None:
        """What the next record waits for, said for operators; None when nothing waits."""
        if not self.inbox or self.ready:
            return None
        record = self.inbox[0]
        if isinstance(record, Tick):
            return (f"the trainer's epoch {self._in_force(record.tick)} (learned"
                    f" {self.learned_through})")
        assert isinstance(record, Routed)
        away = [other for other in self._away(record) if (other, record.pid) not in self.arrived]
        return (f"the state of {', '.join(away)} for {record.pid} ({len(self.inbox)} records"
                f" and {len(self.arrived)} states here)")

    def run(self) -> None:
        """Apply the records that can be applied now, in order."""
        inbox = self.inbox
        while self.ready:
            self._apply(inbox.popleft())

    def _apply(self, record: TaskRecord) -> None:
        if isinstance(record, Routed):
            self._routed(record)
        elif isinstance(record, Tick):
            self._tick(record.tick)
        elif isinstance(record, Move):
            self.view.drop(record.pid)
            state = self.work.take(record.pid)
            self.to_tasks.append((partition_of(record.survivor, self.partitions),
                                  Moved(record.pid, record.survivor, state)))
        else:
            self.view.drop(record.pid)
            self.work.forget(record.pid, record.members, record.request)

    def _away(self, record: Routed) -> list[ProfileId]:
        """The absorbed profiles of another partition: their states are sent here."""
        here, n = self.partition, self.partitions
        return [other for other in record.absorbed if partition_of(other, n) != here]

    def _routed(self, record: Routed) -> None:
        pid, absorbed = record.pid, record.absorbed
        moved: dict[ProfileId, ProfileState | None] | None = None
        if absorbed:
            moved = {other: self.arrived.pop((other, pid)) for other in self._away(record)}
            for other in absorbed:
                self.view.drop(other)
        if record.identifiers is not None:
            self.view.set(pid, record.identifiers)
        self.work.apply(pid, record.tp, list(absorbed), moved)

    def _in_force(self, tick: int) -> int:
        """The last epoch whose versions are in force at ``tick``."""
        return tick // self.epoch_ticks - self.delay

    def _tick(self, tick: int) -> None:
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
        """Besides the profiles and their identifiers: small, written whole per commit.
        The inbox is not state: the shell reads again from its first record."""
        return {"stats": self.stats, "learned_through": self.learned_through,
                "snapshot": _fields(self.learner.snapshot),
                "versions": [(v.epoch, [(snapshot.fields(), ts) for snapshot, ts in v.snapshots])
                             for v in self.versions],
                "arrived": [(*key, state) for key, state in self.arrived.items()],
                "handed": sorted(self.handed),
                **self.work.meta_state()}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.stats = self.work.stats = meta["stats"]
        self.learned_through = meta["learned_through"]
        fields = meta["snapshot"]
        self.learner.snapshot = None if fields is None else Snapshot(*fields)
        self.versions = deque(Version(epoch, tuple((Snapshot(*f), ts) for f, ts in snapshots))
                              for epoch, snapshots in meta["versions"])
        self.arrived = {(pid, survivor): state for pid, survivor, state in meta["arrived"]}
        self.handed = {(pid, survivor) for pid, survivor in meta["handed"]}
        self.work.load_meta(meta)

    # ---- what goes out ------------------------------------------------------------------

    def take_outputs(self) -> list[Output]:
        out, self.work.out = self.work.out, []
        return out


def _fields(snapshot: Snapshot | None) -> tuple[Any, ...] | None:
    return None if snapshot is None else snapshot.fields()
