"""The owner role: the one member of ``<app>.owner`` holding ``<app>-sequenced`` runs the pipeline.

On assignment it takes over the state: the standby copy when it holds the newest
checkpoint, else that checkpoint loaded from Kafka, else the initial state (none
in Kafka yet), and reads the sequenced stream from the state's offset. Then, per
batch: :func:`~workers.service.batch.process_batch`, produce the outputs, wait for
their acknowledgements, commit. It checkpoints every
``kafka.checkpoint_interval_seconds``, on revocation and at shutdown, and
publishes the persona cards of every new model version.
"""

from __future__ import annotations

import asyncio
import time
from itertools import chain
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.core.records import Output
from workers.errors import BrokerError
from workers.io.cloudevents import Envelope
from workers.io.kafka import live_output_topics, sequenced_topic
from workers.io.sinks import stamp_emitted, wall_clock
from workers.service.batch import FLUSH_KEY, process_batch
from workers.service.checkpoints import Manifest
from workers.service.clients import BATCH, Batches, Clients, read_until
from workers.service.logs import worker_log
from workers.service.metrics import Metrics
from workers.service.state import WorkerState
from workers.state.saved import dump_state, restore_state

# An idle owner flushes the events its event-time buffer holds once nothing has
# arrived for as long as the reorder window (an event that waited that long in
# wall time has waited as long as the window promises), but at most 2 s and at
# least 50 ms, and only when every router has caught up (so "idle" is not a
# pause of a router during a rebalance, which would turn its records into late
# ones). Tied to the window, a live profile's last events of a burst are not
# held seconds longer than its steady stream.
_IDLE_FLUSH_MAX = 2.0
_IDLE_FLUSH_MIN = 0.05
_PERSONA_INTERVAL = 10.0  # seconds between persona-card publications
_FETCH_BYTES = 8 * 1_048_576  # per fetch of the sequenced partition


class InputProgress(Protocol):
    """How far the input goes (the router knows: its client reads the input topic)."""

    async def fed_all_input(self, pipeline: Pipeline) -> bool: ...


class Owner(ConsumerRebalanceListener):
    """Runs the pipeline over the sequenced stream while assigned; its own rebalance listener."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState, metrics: Metrics,
                 progress: InputProgress, initial: Pipeline | None) -> None:
        self.config = config
        self.clients = clients
        self.state = state
        self.metrics = metrics
        self.progress = progress
        self.initial = initial  # the state to start from while Kafka holds no checkpoint
        self.sequenced = sequenced_topic(config)
        self.output_topics = live_output_topics(config)
        self.envelope = Envelope(config)
        self.idle_flush = min(_IDLE_FLUSH_MAX, max(_IDLE_FLUSH_MIN,
                                                   config.intake.reorder_window_seconds))
        self.consumer: AIOKafkaConsumer | None = None
        self.checkpoint_interval = config.kafka.checkpoint_interval_seconds
        self._last_checkpoint = 0.0  # monotonic clock; set when the loop starts
        # the pipeline holds a batch whose outputs are not all acknowledged: its state
        # must never be checkpointed (the next owner replays the batch instead)
        self._unacknowledged = False

    def register(self, app: faust.App) -> None:
        """The owner's timers: the idle flush, and the cards' sizes now and then."""
        app.timer(self.idle_flush / 2)(self.flush_when_idle)
        app.timer(_PERSONA_INTERVAL)(self.publish_personas)

    # ---- the batch loop ------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.consumer = self.clients.consumer(
            role="owner", max_partition_fetch_bytes=_FETCH_BYTES)
        consumer.subscribe([self.sequenced], listener=self)
        self._last_checkpoint = time.monotonic()
        await read_until(stopping, consumer, self._process, max_records=BATCH)

    async def _process(self, batches: Batches) -> None:
        """One batch: process, produce and wait for the acknowledgements, then commit."""
        pipeline = self.state.pipeline
        if pipeline is None or not batches:
            return
        assert self.consumer is not None  # the consumer that read the batch
        started = time.perf_counter()
        self._unacknowledged = True
        done = process_batch(pipeline, chain.from_iterable(batches.values()))
        seconds = time.perf_counter() - started
        state = self.state
        state.next_offset = done.next_offset
        state.last_input = time.monotonic()
        state.flush_sent = False
        await self._emit(done.outputs)
        await self.consumer.commit()
        self._unacknowledged = False
        self.metrics.observe_batch(pipeline, done.fed, seconds, done.outputs)
        snapshot = pipeline.model.snapshot
        if snapshot is not None and snapshot.version != state.published_version:
            await self._publish_cards(pipeline)  # followers learn a new model at once
            state.published_version = snapshot.version
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
            await self.checkpoint()
            self._last_checkpoint = time.monotonic()

    async def _emit(self, outputs: list[Output]) -> None:
        """Produce, and wait until every record is acknowledged (before the commit).

        A refused record is a :class:`BrokerError` naming its topic and the reason.
        """
        if not outputs:
            return
        send = (await self.clients.producer()).send
        message = self.envelope.message
        stamp_emitted(outputs, wall_clock)
        sent = []
        for out in outputs:
            topic = self.output_topics[out.kind]
            key, value, headers = message(out)
            try:
                sent.append((topic, await send(topic, key=key, value=value, headers=headers)))
            except KafkaError as exc:
                raise BrokerError(f"producing to {topic} failed: {exc!r}") from exc
        results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        for (topic, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                raise BrokerError(f"producing to {topic} failed: {result!r}") from result

    async def _publish_cards(self, pipeline: Pipeline) -> None:
        send = (await self.clients.producer()).send
        topic = self.config.kafka.personas_topic
        futures = []
        for card in pipeline.personas():
            key, value, headers = self.envelope.card(card)
            futures.append(await send(topic, key=key, value=value, headers=headers))
        await asyncio.gather(*futures)

    # ---- ownership: taking over, checkpointing, handing over ------------------------

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if not assigned:
            return
        assert self.consumer is not None  # the listener of this consumer
        state = self.state
        manifest = await (await self.clients.checkpoints()).newest()
        state.pipeline, state.next_offset = await self._take_over(manifest)
        state.restored_from = state.next_offset
        self.consumer.seek(TopicPartition(self.sequenced, 0), state.next_offset)
        # a state checkpointed before its idle flush still holds events: flush them
        # once the stream is quiet, as if they had just arrived
        state.last_input, state.flush_sent = time.monotonic(), False
        state.owner = True
        worker_log.info("owner of the sequenced stream",
                        extra={"from_offset": state.next_offset,
                               "checkpoint": manifest is not None,
                               "standby": state.took_over_from_standby})

    async def _take_over(self, manifest: Manifest | None) -> tuple[Pipeline, int]:
        """The state to own and its next offset: the standby's copy when it is the newest
        checkpoint, else that checkpoint loaded, else the initial state (none in Kafka)."""
        standby, self.state.standby = self.state.standby, None
        self.state.took_over_from_standby = False
        if manifest is None:
            return (self.initial if self.initial is not None else Pipeline(self.config)), 0
        if standby is not None and standby.manifest == manifest:
            self.state.took_over_from_standby = True
            return standby.pipeline, manifest["next_offset"]
        saved = await (await self.clients.checkpoints()).load(manifest)
        return (restore_state(saved.state, self.config, "the Kafka checkpoint"),
                manifest["next_offset"])

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.hand_over()  # hand over as fresh a state as possible
        self.state.owner, self.state.pipeline = False, None

    async def hand_over(self) -> None:
        """Checkpoint if this worker owns the state: the next owner has nothing to replay.

        Not after a batch whose outputs were not all acknowledged: that state is ahead of
        what consumers have; the next owner replays from the last good checkpoint.
        """
        if not self.state.owner:
            return
        if self._unacknowledged:
            worker_log.warning("no checkpoint at hand-over: the last batch's outputs were not"
                               " all acknowledged; the next owner replays it",
                               extra={"next_offset": self.state.next_offset})
            return
        await self.checkpoint()

    async def checkpoint(self) -> None:
        state = self.state
        if state.pipeline is not None:
            await (await self.clients.checkpoints()).save(dump_state(state.pipeline),
                                                          state.next_offset)
            state.checkpoints += 1
            worker_log.info("checkpoint written", extra={"next_offset": state.next_offset})

    # ---- timers -----------------------------------------------------------------------

    async def flush_when_idle(self) -> None:
        """A quiet stream must not leave events waiting in the event-time buffer.

        The flush goes through the sequenced stream (a :data:`FLUSH_KEY` record), so a
        replay of it flushes at the same place.
        """
        state = self.state
        pipeline = state.pipeline
        if (not state.owner or pipeline is None or state.flush_sent or pipeline.held == 0
                or time.monotonic() - state.last_input < self.idle_flush):
            return
        # caught up: the sequenced stream holds every input record that exists now
        if not await self.progress.fed_all_input(pipeline):
            return
        state.flush_sent = True
        producer = await self.clients.producer()
        await (await producer.send(self.sequenced, key=FLUSH_KEY, value=b""))

    async def publish_personas(self) -> None:
        """Now and then, not only on a new model: the cards' sizes move with every batch."""
        if self.state.owner and self.state.pipeline is not None:
            await self._publish_cards(self.state.pipeline)
