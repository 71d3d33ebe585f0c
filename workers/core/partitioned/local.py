"""The partitioned stages in one process, the records between them kept in queues.

What the Kafka worker spreads over processes, this runs in one: the tests hold
its outputs against delivery orders drawn at random, and so against any number
of workers and any relative speed of them.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

from workers.config import Config
from workers.core.forget import ForgetRequest
from workers.core.identity_stage import IdentityStage
from workers.core.partitioned.profile_task import ProfileTask
from workers.core.partitioned.records import Mark, Sample
from workers.core.partitioned.router import PartitionRouter
from workers.core.partitioned.trainer import Trainer
from workers.core.records import Output
from workers.core.stats import Stats, added
from workers.errors import StateError

# a queue: the stage's records for a partition, states moved to it, the trainer's
# versions for it, the trainer's input; or a task's run over what it holds
Queue = Literal["stage", "moved", "version", "trainer", "run"]


class LocalTopology:
    """An identity stage, ``partitions`` profile tasks and a trainer, wired by queues.

    ``seed``: None delivers every queue as soon as it can; a number delivers one
    pending record (or one run of a ready task) at a time, the queue drawn at
    random, each queue still in its own order, as a Kafka partition is.
    ``workers``: partition ``p`` is held by worker ``p % workers``, and a state moved
    to a partition of the same worker is handed over at once, as the Kafka shell does,
    its copy still coming through the queue; None: every state comes through its queue.
    """

    def __init__(self, config: Config, partitions: int, seed: int | None = None,
                 workers: int | None = None) -> None:
        self.tasks = [ProfileTask(config, p, partitions) for p in range(partitions)]
        self.trainer = Trainer(config, partitions)
        self.router = PartitionRouter(partitions, config.segmentation.version_epoch_ticks)
        self.stage = IdentityStage(config, self.router.attach)
        self._random = None if seed is None else random.Random(seed)
        self._workers = workers
        self._queues: dict[tuple[Queue, int], deque[Any]] = {
            (kind, p): deque() for kind in ("stage", "moved", "version")
            for p in range(partitions)}
        self._trainer_in: deque[Sample | Mark] = deque()
        self.outputs: list[Output] = []

    def feed_many(self, raws: Iterable[bytes]) -> None:
        feed = self.stage.feed
        for raw in raws:
            self.outputs.extend(feed(raw))
            self._route()

    def forget(self, request: ForgetRequest) -> None:
        self.outputs.extend(self.stage.forget(request))
        self._route()

    def flush(self) -> list[Output]:
        """End of input: everything held is processed; every output made so far."""
        self.outputs.extend(self.stage.flush())
        self._route()
        self._deliver_all()
        stuck = [t.partition for t in self.tasks if t.inbox]
        if stuck:
            raise StateError(f"profile partitions {stuck} wait for records that never came")
        return self.outputs

    def stats(self) -> Stats:
        """Every stage's counts, added up (each counts only what it did)."""
        return added([self.stage.stats, *(t.stats for t in self.tasks), self.trainer.stats])

    def _route(self) -> None:
        queues = self._queues
        for partition, number, record in self.router.take():
            queues["stage", partition].append((number, record))
        if self._random is None:
            self._deliver_all()

    def _deliver_all(self) -> None:
        while pending := self._pending():
            if self._random is not None:
                pending = [self._random.choice(pending)]
            for kind, partition in pending:
                self._deliver(kind, partition)

    def _pending(self) -> list[tuple[Queue, int]]:
        found: list[tuple[Queue, int]] = [key for key, queue in self._queues.items() if queue]
        if self._trainer_in:
            found.append(("trainer", 0))
        found += [("run", t.partition) for t in self.tasks if t.ready]
        return found

    def _deliver(self, kind: Queue, partition: int) -> None:
        """One record of one queue, or one run of a task, and what it sent on."""
        if kind == "trainer":
            trainer = self.trainer
            trainer.offer(self._trainer_in.popleft())
            self.outputs.extend(trainer.take_outputs())
            for version in trainer.take_versions():
                for p in range(len(self.tasks)):
                    self._queues["version", p].append(version)
            return
        task = self.tasks[partition]
        if kind == "stage":
            number, record = self._queues[kind, partition].popleft()
            task.offer(record, number)
        elif kind == "moved":
            task.offer_moved(self._queues[kind, partition].popleft())
        elif kind == "version":
            task.offer_version(self._queues[kind, partition].popleft())
        else:
            task.run()
            self.outputs.extend(task.take_outputs())
            workers = self._workers
            for where, moved in task.to_tasks:
                self._queues["moved", where].append(moved)
                if workers is not None and where % workers == partition % workers:
                    self.tasks[where].offer_moved(moved, handed=True)
            task.to_tasks.clear()
            self._trainer_in.extend(task.to_trainer)
            task.to_trainer.clear()
