"""The owner role: the one member of ``<app>.owner`` holding ``<app>-sequenced`` runs the
identity stage.

On assignment it takes over the state: it brings a copy of the changelog topics
up to date (the standby's, already nearly current, or a new one read from the
start), rebuilds the identity stage from it and reads the sequenced stream from the
offset the state reached. Then, per batch: :func:`~workers.service.batch.process_batch`,
produce the outputs (dead letters, identity merges) and the stage's records to their
profile partitions (``<app>-profiles``); every ``kafka.commit_interval_seconds``, on
revocation and at shutdown it commits (:mod:`workers.service.changelog`): the
acknowledgements first (at least once), then the changed state and the offset in one
transaction.

A commit is pipelined with the batches after it: the changed state is taken
between two batches (so it is the state of one sequenced offset), then the
acknowledgements of the outputs sent up to there and the transaction are awaited
in a task of their own while the next batches are processed. At least once, their
outputs are sent meanwhile (a commit only waits for the acknowledgements of the
outputs that its state made); exactly once, they wait for the open transaction to
commit before they open the next one, as their outputs belong to the next state.
One commit at a time: a commit due while the previous one is still under way
waits for it first.
"""

from __future__ import annotations

import asyncio
import time
from itertools import chain
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from workers.config import Config
from workers.core.identity_stage import IdentityStage
from workers.core.partitioned.router import PartitionRouter
from workers.core.records import Output
from workers.io.kafka import profiles_topic, sequenced_topic
from workers.service.background import BackgroundCommit, CommitInterval
from workers.service.batch import FLUSH_KEY, process_batch
from workers.service.changelog import ChangelogCopy, ChangelogWriter, Kept, untouched
from workers.service.clients import BATCH, Batches, Clients, read_until
from workers.service.emitter import Emitter, role_emitter
from workers.service.logs import worker_log
from workers.service.metrics import Metrics
from workers.service.rebalances import RebalanceWatch
from workers.service.role import Role
from workers.service.state import WorkerState
from workers.state.changelog import StateRecord, StateWriter, restore
from workers.state.wire import encode_per_partition

# An idle owner flushes the events its event-time buffer holds once nothing has
# arrived for as long as the reorder window (an event that waited that long in
# wall time has waited as long as the window promises), but at most 2 s and at
# least 50 ms, and only when every router has caught up (so "idle" is not a
# pause of a router during a rebalance, which would turn its records into late
# ones). Tied to the window, a live profile's last events of a burst are not
# held seconds longer than its steady stream.
_IDLE_FLUSH_MAX = 2.0
_IDLE_FLUSH_MIN = 0.05
_FETCH_BYTES = 8 * 1_048_576  # per fetch of the sequenced partition


class InputProgress(Protocol):
    """How far the input goes (the router knows: its client reads the input topic)."""

    async def fed_all_input(self, stage: IdentityStage) -> bool: ...


class Owner(Role):
    """Runs the identity stage over the sequenced stream while assigned; its own rebalance
    listener."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState, metrics: Metrics,
                 progress: InputProgress) -> None:
        super().__init__(config, clients, state, metrics)
        self.progress = progress
        self.sequenced = sequenced_topic(config)
        self.partition = TopicPartition(self.sequenced, 0)
        self.exactly_once = config.kafka.processing_guarantee == "exactly_once"
        self.profiles_topic = profiles_topic(config)
        self.idle_flush = min(_IDLE_FLUSH_MAX, max(_IDLE_FLUSH_MIN,
                                                   config.intake.reorder_window_seconds))
        self.consumer: AIOKafkaConsumer | None = None
        self._interval = CommitInterval(config.kafka.commit_interval_seconds)
        self._writer: ChangelogWriter | None = None
        self._changes: StateWriter | None = None
        # the state handed over at the last revocation, while it may come straight back
        self._kept: Kept[tuple[IdentityStage, StateWriter, int]] | None = None
        # what a batch's records go through: made with the writer of each assignment
        self.emitter: Emitter | None = None
        # the commit whose acknowledgements and transaction are still awaited, if any
        self._commits = BackgroundCommit("the last commit failed; the next owner replays"
                                         " from the one before")
        # a batch and the taking of a commit's state never interleave: the timers commit too
        self._lock = asyncio.Lock()

    def register(self, app: faust.App) -> None:
        """The owner's timers: the idle flush, the commit of a quiet stream."""
        app.timer(self.idle_flush / 2)(self.flush_when_idle)
        app.timer(self._interval.seconds)(self.commit_when_due)

    # ---- the batch loop ------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.consumer = self.clients.consumer(
            role="owner", max_partition_fetch_bytes=_FETCH_BYTES)
        watch = RebalanceWatch("owner", self, self.metrics.observe_rebalance)
        consumer.subscribe([self.sequenced], listener=watch)
        self._interval.restart()
        await read_until(stopping, consumer, self._process, max_records=BATCH,
                         watch=watch)

    async def _process(self, batches: Batches) -> None:
        """One batch: process and send the outputs; commit when the interval is up.

        The acknowledgements are awaited at the commit, not per batch, and the commit in a
        task of its own: the next batch is processed while the broker writes this one's
        outputs and the state. A commit that failed raises here (within one read's wait).
        """
        await self._commits.check()
        if not batches:
            return
        self.metrics.observe_hop("sequenced", batches)
        async with self._lock:
            await self._process_locked(batches)

    async def _process_locked(self, batches: Batches) -> None:
        stage = self.state.stage
        if stage is None or self._failed:
            return
        # a fetch under way when the state was taken may deliver records before the offset
        # the state reached (the seek to it comes after): those are in the state already
        after = self.state.next_offset
        records = [r for r in chain.from_iterable(batches.values()) if r.offset >= after]
        if not records:
            return
        started = time.perf_counter()
        done = process_batch(stage, records)
        seconds = time.perf_counter() - started
        state = self.state
        state.next_offset = done.next_offset
        state.last_input = time.monotonic()
        state.flush_sent = False
        await self._emit(done.outputs)
        router = stage.downstream
        assert isinstance(router, PartitionRouter)  # made by _blank
        await self._forward(router)
        self.metrics.observe_batch(stage, done.fed, seconds, done.outputs)
        if self._interval.due():
            await self._commit()

    async def _emit(self, outputs: list[Output]) -> None:
        """Send the outputs: in the open transaction (exactly once), or at once with their
        acknowledgements awaited at the next commit (at least once)."""
        if outputs:
            await (await self._emitter()).emit(outputs)

    async def _forward(self, router: PartitionRouter) -> None:
        """The identity stage's records, to their profile partitions: a batch's records for
        a partition go as one bundle (:mod:`workers.state.wire`), in the stage's order, as
        the outputs go (in the transaction, or acknowledged at the commit)."""
        bundles = encode_per_partition(router.take())
        if bundles:
            emitter = await self._emitter()
            for partition, value in bundles:
                await emitter.send(self.profiles_topic, value, partition=partition)

    async def _emitter(self) -> Emitter:
        """The assignment's emitter; exactly once, after the commit under way: what a batch
        sends belongs to the next transaction, not to the one committing."""
        assert self.emitter is not None  # made at assignment, before any batch
        if self.exactly_once:
            await self._commits.settled()
        return self.emitter

    @property
    def _failed(self) -> bool:
        """A commit failed or a record was refused: the state is ahead of what consumers
        have, and is never committed (the next owner replays from the last commit)."""
        return self._commits.failed or (self.emitter is not None and self.emitter.failed)

    # ---- commits ----------------------------------------------------------------------

    async def commit_when_due(self) -> None:
        """The timer's commit, for a stream gone quiet between batches."""
        if self._interval.due():
            async with self._lock:
                await self._commit()

    async def _commit(self) -> None:
        """Take the changed state and the offset now (between two batches: under the lock),
        then, in a task of its own, the outputs' acknowledgements and the transaction.

        Not after outputs that were refused: that state is ahead of what consumers have;
        the next owner replays from the last commit instead.
        """
        state = self.state
        emitter = self.emitter
        if (not state.owner or self._writer is None or self._changes is None or emitter is None
                or self._failed):
            return
        await self._commits.settled()  # one transaction at a time; a failed one raises here
        if self._failed:
            return
        self._interval.restart()
        sent = emitter.take_sent()
        records = self._changes.changes()
        self._commits.start(self._complete(self._writer, emitter, sent, records,
                                           state.next_offset))

    async def _complete(self, writer: ChangelogWriter, emitter: Emitter,
                        sent: list[tuple[str, asyncio.Future[Any]]],
                        records: list[StateRecord], next_offset: int) -> None:
        """The rest of a commit: its outputs acknowledged, then its state in one transaction."""
        await emitter.confirm(sent)
        written = await writer.commit(records, self.partition, next_offset)
        state = self.state
        state.commits += 1
        state.committed_offset = next_offset
        self.metrics.observe_commit(len(records), written)

    # ---- ownership: taking over, handing over ----------------------------------------

    def _blank(self) -> IdentityStage:
        """A new state: the identity stage, its events routed to the profile partitions."""
        return IdentityStage(self.config, PartitionRouter(
            self.config.kafka.partitions, self.config.segmentation.version_epoch_ticks).attach)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        kept, self._kept = self._kept, None  # a state not given back goes
        self.state.owner_kept = False
        if not assigned:
            return
        assert self.consumer is not None  # the listener of this consumer
        state = self.state
        self._commits.failed = False
        self._writer = ChangelogWriter(self.config, self.clients.security)
        await self._writer.start()  # fences a previous owner's producer first
        self.emitter = role_emitter(self.config, Emitter(self.config,
                                                         await self.clients.producer()),
                                    self._writer)
        copy, state.standby = state.standby, None
        started = time.monotonic()
        state.kept_over_rebalance = self.partition in await untouched(
            self.config, self.clients.security, {self.partition: kept} if kept else {})
        if kept is not None and state.kept_over_rebalance:
            (stage, self._changes, state.next_offset), read, restored = kept.state, 0, False
            state.took_over_from_standby = False
        else:
            stage, read, restored = await self._restore(copy)
        state.stage = stage
        state.restored_from = state.committed_offset = state.next_offset
        self.metrics.start_counting(stage)
        self.consumer.seek(self.partition, state.next_offset)
        # a state committed before its idle flush still holds events: flush them once
        # the stream is quiet, as if they had just arrived
        state.last_input, state.flush_sent = time.monotonic(), stage.held == 0
        state.owner = True
        self._interval.restart()
        worker_log.info("owner of the sequenced stream",
                        extra={"from_offset": state.next_offset,
                               "kept": state.kept_over_rebalance, "restored": restored,
                               "standby": state.took_over_from_standby,
                               "changelog_records_read": read,
                               "restore_seconds": round(time.monotonic() - started, 3)})

    async def _restore(self, copy: ChangelogCopy | None) -> tuple[IdentityStage, int, bool]:
        """The state from the changelogs (``copy``: a standby's, nearly current), or the
        initial one when they are empty; how many changelog records were read, and whether
        the changelogs held a state."""
        state = self.state
        state.took_over_from_standby = copy is not None and not copy.empty
        if copy is None:
            copy = ChangelogCopy(self.config, self.clients.security)
        read = await copy.catch_up()
        if copy.empty:
            stage = self._blank()
            self._changes = StateWriter(stage, saved=False)
        else:
            # decoding the state is CPU work: a thread lets the router's loop go on meanwhile
            stage = await asyncio.to_thread(restore, self._blank(), copy.records(),
                                            "the changelog topics")
            self._changes = StateWriter(stage, saved=True)
        state.next_offset = copy.next_offset
        return stage, read, not copy.empty

    async def on_partitions_revoked(self, revoked: Any) -> None:
        state = self.state
        await self.hand_over()  # hand over as fresh a state as possible
        await self._commits.settled(quiet=True)
        async with self._lock:  # no batch from here on
            held, state.owner, state.stage = state.stage, False, None
        if (held is not None and self._changes is not None and not self._failed
                and state.next_offset == state.committed_offset):
            # the state committed, no batch since: if the partition comes straight back, it
            # is still the changelogs' state
            assert self._writer is not None  # it committed
            self._kept = Kept((held, self._changes, state.next_offset), self._writer.written)
            state.owner_kept = True
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None

    async def hand_over(self) -> None:
        """Commit if this worker owns the state: the next owner has nothing to replay."""
        if not self.state.owner:
            return
        async with self._lock:
            await self._commits.settled(quiet=True)
        if self._failed:
            worker_log.warning("no commit at hand-over: outputs were refused; the next"
                               " owner replays from the last commit",
                               extra={"committed_offset": self.state.committed_offset})
            return
        async with self._lock:
            await self._commit()
            await self._commits.settled()

    async def close(self) -> None:
        """Shutting down: a last commit, then the transactional producer goes."""
        await self.hand_over()
        await self._commits.settled(quiet=True)
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None

    # ---- timers -----------------------------------------------------------------------

    async def flush_when_idle(self) -> None:
        """A quiet stream must not leave events waiting in the event-time buffer, nor
        absorbed states the profile partitions hold back until a flush or the next tick
        every partition is sent: a stream gone quiet after any input is flushed once, even
        with nothing held here.

        The flush goes through the sequenced stream (a :data:`FLUSH_KEY` record), so a
        replay of it flushes at the same place.
        """
        state = self.state
        stage = state.stage
        if (not state.owner or stage is None or state.flush_sent
                or time.monotonic() - state.last_input < self.idle_flush):
            return
        # caught up: the sequenced stream holds every input record that exists now
        if not await self.progress.fed_all_input(stage):
            return
        state.flush_sent = True
        producer = await self.clients.producer()
        try:
            await (await producer.send(self.sequenced, key=FLUSH_KEY, value=b""))
        except KafkaError:  # the broker is away: the next round sends it
            state.flush_sent = False
