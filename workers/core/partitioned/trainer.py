"""The one model every profile partition assigns with.

The trainer learns an epoch's samples (a run of ``segmentation.version_epoch_ticks``
ticks) once every partition has marked that epoch as sent, in (tick, profile id)
order: the order one process learns in, whatever the number of partitions or
workers. For every epoch it answers with a
:class:`~workers.core.partitioned.records.Version` (usually with no new
snapshot: it tells the tasks how far it has learned). It also announces each
version (lineage records, names), once, for all partitions.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from workers.config import Config
from workers.core.features import FeatureSpec
from workers.core.identity import ProfileId
from workers.core.partitioned.records import Mark, Sample, Version
from workers.core.pipeline import InlineLearner
from workers.core.profile_work import ProfileWork
from workers.core.records import Output
from workers.core.segments import SegmentModel, Snapshot
from workers.core.stats import Stats


class _NoIdentifiers:
    def identifiers(self, profile_id: ProfileId) -> dict[str, list[str]]:
        return {}


class Trainer:
    """Learns from the samples of ``partitions`` partitions, one epoch at a time."""

    def __init__(self, config: Config, partitions: int) -> None:
        self.partitions = partitions
        spec = FeatureSpec(config.features)
        self.model = SegmentModel(config.segmentation, spec)
        self.stats = Stats()
        # names each version and announces it; it holds no profiles to re-assess
        self.work = ProfileWork(config, spec, InlineLearner(self.model), _NoIdentifiers(),
                                self.stats, [], frozenset(self.model.columns))
        self.epoch_ticks = config.segmentation.version_epoch_ticks
        # by epoch: the samples waiting, by (tick, profile); the partitions that marked it
        self.samples: dict[int, dict[tuple[int, ProfileId], Sample]] = defaultdict(dict)
        self.marks: dict[int, set[int]] = defaultdict(set)
        self.learned_through = -1
        self.versions: list[Version] = []  # for every partition, in epoch order
        # samples and marks added or learned (gone) since the state's last commit took them
        self.changed_samples: set[tuple[int, ProfileId]] = set()
        self.changed_marks: set[int] = set()

    def offer(self, record: Sample | Mark) -> None:
        """A sample or a mark; one sent again (its partition restarted) changes nothing."""
        if isinstance(record, Sample):
            epoch = record.tick // self.epoch_ticks
            if epoch > self.learned_through:
                self.samples[epoch][record.tick, record.pid] = record
                self.changed_samples.add((record.tick, record.pid))
            return
        if record.epoch <= self.learned_through:
            return
        self.marks[record.epoch].add(record.partition)
        self.changed_marks.add(record.epoch)
        while len(self.marks.get(self.learned_through + 1, ())) == self.partitions:
            self._learn(self.learned_through + 1)

    def sample(self, tick: int, pid: ProfileId) -> Sample | None:
        """The sample of ``pid`` in ``tick``, while it waits to be learned."""
        return self.samples.get(tick // self.epoch_ticks, {}).get((tick, pid))

    def _learn(self, epoch: int) -> None:
        del self.marks[epoch]
        self.changed_marks.add(epoch)
        published: list[tuple[Snapshot, float]] = []
        samples = self.samples.pop(epoch, {})
        self.changed_samples.update(samples)
        for _, sample in sorted(samples.items()):
            snapshot = self.model.learn(sample.vector, sample.ts)
            if snapshot is not None:
                self.work.publish(snapshot, sample.ts)
                published.append((snapshot, sample.ts))
        self.learned_through = epoch
        self.versions.append(Version(epoch, tuple(published)))

    def meta_state(self) -> dict[str, Any]:
        """Besides the model and the samples and marks waiting (kept a record each: the
        partitions may be thousands of ticks apart): small, written whole per commit."""
        return {"stats": self.stats, "learned_through": self.learned_through,
                **self.work.meta_state()}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.stats = self.work.stats = meta["stats"]
        self.learned_through = meta["learned_through"]
        self.work.load_meta(meta)

    def take_outputs(self) -> list[Output]:
        out, self.work.out = self.work.out, []
        return out

    def take_versions(self) -> list[Version]:
        versions, self.versions = self.versions, []
        return versions
