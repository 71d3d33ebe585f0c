"""The profile partitions: each runs a ProfileTask.

Members of ``<app>.profiles`` share the partitions of ``<app>-profiles``. For
each partition ``p`` a worker is given, the task's state is read back from
partition ``p`` of its changelogs (profile, view, task) and its records are read
on from the offset that state reached. Per batch, records go to their task (the
states moved from other partitions too), the tasks apply what they can, and
what they send goes out: outputs to the output topics, moved states to the
survivor's partition, samples and marks to ``<app>-samples``.

Every ``kafka.commit_interval_seconds``, at revocation and at shutdown, per
partition: every record sent acknowledged, then one transaction (transactional
id ``<app>.profiles.<p>``: a newer holder of the partition fences an older one)
with the task's changed state, the offset of the bundle (:mod:`workers.state.wire`)
holding the first record the task has not applied yet and how many of that
bundle's records it applied (a record waiting for a moved state or a model
version is read again after a restart), and how far this worker had read the
trainer's versions. A restart applies again what the last commit did not hold:
the same records, so the same results and the same output ``event_id`` s (at
least once).

A consumer in no group reads ``<app>-versions`` (one partition) and gives each
version to every task held; a task ignores one it already has.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.config import Config
from workers.core.partitioned.profile_task import ProfileTask
from workers.core.partitioned.records import Moved, Version
from workers.io.kafka import changelog_topic, profiles_topic, samples_topic, versions_topic
from workers.service.background import BackgroundCommit, CommitInterval
from workers.service.changelog import ChangelogCopy, ChangelogWriter, Kept, untouched
from workers.service.clients import BATCH, QUICK_FETCH_MS, Batches, Clients, read_until
from workers.service.emitter import Emitter, role_emitter
from workers.service.logs import worker_log
from workers.service.metrics import Metrics, counts_of
from workers.service.rebalances import RebalanceWatch
from workers.service.role import Role
from workers.service.state import WorkerState
from workers.state.changelog import StateWriter, Store, restore
from workers.state.wire import decode, decode_numbered, encode

VERSIONS_KEY = b"versions"  # task meta: the versions offset its worker had read to
# task meta: how many records of the bundle at the committed offset the state holds already
APPLIED_KEY = b"applied"


@dataclass
class HeldTask:
    """A partition this worker holds, and where its records stand."""

    task: ProfileTask
    writer: ChangelogWriter
    emitter: Emitter  # through the writer's transactions with exactly_once
    changes: StateWriter
    next_offset: int  # the input offset after the last bundle read
    versions_next: int  # the versions offset after the last version given to the task
    skip: int  # records of the first bundle read that the state holds already (restored)
    # the input offset of the bundle of each record in the task's inbox, in order
    offsets: deque[int] = field(default_factory=deque)
    # (offset, records for the inbox) of each bundle read whose records may still wait
    bundles: deque[tuple[int, int]] = field(default_factory=deque)

    def position(self) -> tuple[int, int]:
        """Where a restart reads on from: the bundle of the first record not applied yet,
        and how many of its records were applied."""
        offsets, bundles = self.offsets, self.bundles
        if not offsets:
            bundles.clear()
            return self.next_offset, 0
        first = offsets[0]
        while bundles[0][0] < first:
            bundles.popleft()
        waiting = 0
        for offset in offsets:
            if offset != first:
                break
            waiting += 1
        return first, bundles[0][1] - waiting


class ProfileTasks(Role):
    """The profile partitions assigned to this worker; its own rebalance listener."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState,
                 metrics: Metrics) -> None:
        super().__init__(config, clients, state, metrics)
        self.topic = profiles_topic(config)
        self.samples = samples_topic(config)
        self.versions_partition = TopicPartition(versions_topic(config), 0)
        self.partitions = config.kafka.partitions
        self._interval = CommitInterval(config.kafka.commit_interval_seconds)
        self.exactly_once = config.kafka.processing_guarantee == "exactly_once"
        # exactly once: records for the trainer or another partition were sent, and are
        # visible to them only once committed (so the commit comes at once)
        self._awaited = False
        self.held: dict[int, HeldTask] = {}
        # partitions handed over at the last revocation, while they may come straight back
        self._kept: dict[int, Kept[HeldTask]] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.versions: AIOKafkaConsumer | None = None
        self.emitter: Emitter | None = None
        self._commits = BackgroundCommit("the last commit of profile partitions failed;"
                                         " their next holders replay from the one before")
        # batches, versions and the taking of a commit never interleave
        self._lock = asyncio.Lock()

    # ---- the loops --------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        self.emitter = Emitter(self.config, await self.clients.producer())
        consumer = self.consumer = self.clients.consumer(
            role="profiles", isolation_level="read_committed", fetch_max_wait_ms=QUICK_FETCH_MS)
        watch = RebalanceWatch("profiles", self, self.metrics.observe_rebalance)
        consumer.subscribe([self.topic], listener=watch)
        versions = self.clients.consumer(isolation_level="read_committed",
                                         fetch_max_wait_ms=QUICK_FETCH_MS)
        await versions.start()  # started before any assignment seeks it
        versions.assign([self.versions_partition])
        self.versions = versions
        self._interval.restart()
        await asyncio.gather(read_until(stopping, consumer, self._process, max_records=BATCH,
                                        watch=watch),
                             read_until(stopping, versions, self._versions, started=True))

    async def _process(self, batches: Batches) -> None:
        await self._commits.check()  # a failed commit raises within one read's wait
        self.metrics.observe_hop("profiles", batches)
        async with self._lock:
            for tp, records in batches.items():
                held = self.held.get(tp.partition)
                if held is None:
                    continue  # revoked meanwhile: its next holder reads them again
                task, offsets = held.task, held.offsets
                for record in records:
                    offset = record.offset
                    if offset < held.next_offset:
                        # read before a seek to where the partition's state stands (a fetch
                        # already under way when it was taken): already offered
                        continue
                    count = 0
                    number, items = decode_numbered(record.value)
                    for item in items:
                        if isinstance(item, Moved):
                            task.offer_moved(item)
                            continue
                        count += 1
                        # else applied before the state's commit, or (a number the task
                        # has) sent again by an identity stage restored from an older one
                        if count > held.skip and task.offer(item, number):  # type: ignore[arg-type]
                            offsets.append(offset)
                        if number is not None:
                            number += 1
                    if count:
                        held.bundles.append((offset, count))
                    held.skip = 0
                    held.next_offset = offset + 1
            await self._run_tasks()
            if self._awaited or self._interval.due():
                await self._commit()

    async def _versions(self, batches: Batches) -> None:
        if not batches:
            if self._interval.due():
                async with self._lock:  # a quiet stream still commits what it did
                    await self._commit()
            return
        async with self._lock:
            for records in batches.values():
                for record in records:
                    versions = decode(record.value)
                    for held in self.held.values():
                        if record.offset >= held.versions_next:
                            for version in versions:
                                assert isinstance(version, Version)
                                held.task.offer_version(version)
                            held.versions_next = record.offset + 1
            await self._run_tasks()
            if self._awaited:
                await self._commit()

    async def _run_tasks(self) -> None:
        """Every task applies what it can; what they send goes out. A state moved to a
        partition this worker holds is also handed to it at once, and the tasks run again
        while one can go on."""
        if self.exactly_once:
            await self._commits.settled()  # what they send belongs to the next transactions
        held_now = list(self.held.values())
        while held_now:
            for held in held_now:
                await self._run(held)
            held_now = [held for held in self.held.values() if held.task.ready]
        await self._observe()

    async def _run(self, held: HeldTask) -> None:
        task, emitter = held.task, held.emitter
        before = len(task.inbox)
        task.run()
        for _ in range(before - len(task.inbox)):
            held.offsets.popleft()
        outputs = task.take_outputs()
        await emitter.emit(outputs)
        self.metrics.observe_stats(_source(task.partition), task.stats, outputs)
        for partition, moved in task.to_tasks:  # rare: one profile absorbed by another
            for value in encode([moved]):
                await emitter.send(self.topic, value, partition=partition)
            here = self.held.get(partition)
            if here is not None:
                here.task.offer_moved(moved, handed=True)
        task.to_tasks.clear()
        for value in encode(task.to_trainer):
            await emitter.send(self.samples, value, partition=0)
        self._awaited |= self.exactly_once and bool(task.to_trainer or task.to_tasks)
        task.to_trainer.clear()

    async def _observe(self) -> None:
        """What /status says of the partitions held: records waiting, caught up or not (the
        consumer's position, not the last record's offset: a transaction's commit marker
        takes an offset too)."""
        state, consumer = self.state, self.consumer
        state.tasks_waiting = sum(len(h.task.inbox) for h in self.held.values())
        state.tasks_waiting_for = {p: h.task.waiting_for for p, h in self.held.items()
                                   if h.task.inbox}
        state.tasks_read_to = {p: h.next_offset for p, h in self.held.items()}
        sizes: dict[int, int] = {}
        for held in self.held.values():
            for sid, size in held.task.work.sizes.items():
                sizes[sid] = sizes.get(sid, 0) + size
        snapshots = [h.task.learner.snapshot for h in self.held.values()]
        self.metrics.observe_partitions(
            sum(len(h.task.work.profiles) for h in self.held.values()), sizes,
            max((s.version for s in snapshots if s is not None), default=0))
        if consumer is None:
            return
        caught_up = state.tasks_waiting == 0
        for p in self.held:
            tp = TopicPartition(self.topic, p)
            end = consumer.highwater(tp)
            caught_up = caught_up and end is not None and await consumer.position(tp) >= end
        state.tasks_caught_up = caught_up

    # ---- commits ----------------------------------------------------------------------

    async def _commit(self, partitions: list[int] | None = None) -> None:
        """Take each task's changes and positions now (under the lock), then, in a task of
        its own, the records sent acknowledged and one transaction per partition, the
        partitions' at once: the tasks go on with the next batch while the broker writes
        (at least once; exactly once, their records wait for the next transaction).

        Not after records that were refused: that state is ahead of what consumers have;
        the next holder replays from the last commit instead.
        """
        await self._commits.settled()  # one commit at a time; a failed one raises here
        emitters = {held.emitter for held in self.held.values()}
        if not emitters or self._commits.failed or any(emitter.failed for emitter in emitters):
            return
        self._awaited = False
        self._interval.restart()
        sent = [(emitter, emitter.take_sent()) for emitter in emitters]
        commits = []
        for p in sorted(self.held) if partitions is None else partitions:
            held = self.held[p]
            offset, applied = held.position()
            commits.append(held.writer.commit(
                held.changes.changes(), TopicPartition(self.topic, p), offset,
                {VERSIONS_KEY: held.versions_next, APPLIED_KEY: applied}))
        self._commits.start(self._complete(sent, commits))

    async def _complete(self, sent: list[tuple[Emitter, list[tuple[str, Any]]]],
                        commits: list[Coroutine[Any, Any, int]]) -> None:
        try:
            for emitter, records in sent:
                await emitter.confirm(records)
        except BaseException:
            for commit in commits:
                commit.close()  # never started: nothing of it was sent
            raise
        await asyncio.gather(*commits)
        self.state.task_commits += 1

    # ---- partitions: taking them, giving them back -----------------------------------

    async def on_partitions_assigned(self, assigned: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.topic)
        kept, self._kept = self._kept, {}  # the ones not given back go
        self.state.partitions_kept = frozenset()
        async with self._lock:
            self._commits.failed = False  # each partition held now commits from its restored state
            taken = [p for p in mine if p not in self.held]
            back = await untouched(self.config, self.clients.security,
                                   {p: kept[p] for p in taken if p in kept})
            for p in taken:
                self.held[p] = await self._take(p, kept[p].state if p in back else None)
            self._held_changed()
            if self.versions is not None and self.held:
                self.versions.seek(self.versions_partition,
                                   min(h.versions_next for h in self.held.values()))
            await self._run_tasks()

    def _held_changed(self) -> None:
        self.state.task_partitions = sorted(self.held)
        self.state.tasks = {p: held.task for p, held in self.held.items()}

    async def _take(self, p: int, kept: HeldTask | None) -> HeldTask:
        """Partition ``p``'s task: ``kept``, the one this worker handed over if nobody has
        written to its changelogs since, else from its changelogs; its reading starts where
        the state stands."""
        assert self.consumer is not None
        writer = ChangelogWriter(self.config, self.clients.security, role="profiles",
                                 topics=task_changelogs(self.config), partition=p)
        await writer.start()  # fences the producer of the partition's previous holder
        assert self.emitter is not None
        emitter = role_emitter(self.config, self.emitter, writer)
        standby = self.state.task_standbys.pop(p, None)
        started = time.monotonic()
        if kept is not None:
            held, read = dataclasses.replace(kept, writer=writer, emitter=emitter), 0
            self.state.tasks_kept.append(p)
        else:
            held, read = await self._restore(p, writer, emitter, standby)
        self.metrics.start_source(_source(p), counts_of(held.task.stats))
        self.consumer.seek(TopicPartition(self.topic, p), held.next_offset)
        worker_log.info("profile partition taken", extra={
            "partition": p, "from_offset": held.next_offset, "changelog_records_read": read,
            "from_standby": p in self.state.tasks_from_standby,
            "kept": p in self.state.tasks_kept,
            "restore_seconds": round(time.monotonic() - started, 3)})
        return held

    async def _restore(self, p: int, writer: ChangelogWriter, emitter: Emitter,
                       standby: ChangelogCopy | None) -> tuple[HeldTask, int]:
        """Partition ``p``'s task from its changelogs (``standby``: a copy nearly current),
        and how many changelog records were read."""
        copy = standby or task_copy(self.config, self.clients.security, p)
        read = await copy.catch_up()  # a standby copy: only what changed since it last read
        task = ProfileTask(self.config, p, self.partitions)
        if not copy.empty:
            # decoding the state is CPU work: a thread lets the other roles go on meanwhile
            await asyncio.to_thread(restore, task, copy.records(),
                                    f"the changelogs of profile partition {p}")
        if standby is not None and not standby.empty:
            self.state.tasks_from_standby.append(p)
        held = HeldTask(task, writer, emitter, StateWriter(task, saved=not copy.empty),
                        copy.next_offset, copy.position(VERSIONS_KEY), copy.position(APPLIED_KEY))
        return held, read

    async def on_partitions_revoked(self, revoked: Any) -> None:
        gone = sorted(tp.partition for tp in revoked if tp.partition in self.held)
        async with self._lock:
            committed = bool(gone) and await self._hand_over(gone)
            for p in gone:
                held = self.held.pop(p)
                await held.writer.stop()
                self.metrics.forget_source(_source(p))
                if committed:  # the state of its changelogs: kept, in case it comes back
                    self._kept[p] = Kept(held, held.writer.written)
            self.state.partitions_kept = frozenset(self._kept)
            self._held_changed()

    async def _hand_over(self, partitions: list[int]) -> bool:
        """Commit ``partitions``; False when records or a commit were refused."""
        await self._commits.settled(quiet=True)
        if self._commits.failed or any(self.held[p].emitter.failed for p in partitions):
            worker_log.warning("no commit at hand-over: records or a commit were refused;"
                               " the next holder reads again from the last commit")
            return False
        await self._commit(partitions)
        await self._commits.settled()  # a failed commit raises
        return True

    async def close(self) -> None:
        """Shutting down: a last commit, then the partitions' producers go."""
        async with self._lock:
            if self.held:
                await self._hand_over(sorted(self.held))
            for held in self.held.values():
                await held.writer.stop()
            self.held.clear()
            self._held_changed()


def task_changelogs(config: Config) -> dict[Store, str]:
    """A profile partition's stores and their changelog topics (partition p of each)."""
    return {"profile": changelog_topic(config, "profile"),
            "view": changelog_topic(config, "view"), "meta": changelog_topic(config, "task")}


def task_copy(config: Config, security: dict[str, Any], partition: int) -> ChangelogCopy:
    """A copy of profile partition ``partition``'s changelogs, read on demand."""
    return ChangelogCopy(config, security,
                         {topic: store for store, topic in task_changelogs(config).items()},
                         partition=partition)


def _source(partition: int) -> str:
    """Whose counts the metrics advance by: this profile partition's."""
    return f"profiles:{partition}"
