"""``persona-stream worker``: the Kafka shell around the same core ``run`` uses.

Every worker plays two roles (README "Scaling and recovery" has the diagram):

* **router**: members of the consumer group ``<app>.router`` share the input
  partitions. A router forwards each record's bytes, untouched, to the
  one-partition topic ``<app>-sequenced`` (key: the record's input topic,
  partition and offset, for dead letters), then commits its input offsets.
* **owner**: the one member of ``<app>.owner`` that holds partition 0 of
  ``<app>-sequenced`` runs the :class:`~workers.core.pipeline.Pipeline` over it.
  One partition is one order, and the core is deterministic, so the owner's
  state is a function of the sequenced offset it reached: it checkpoints that
  state to Kafka (:mod:`workers.service.checkpoints`) and a replacement owner (another
  worker, or the same one restarted) restores the newest checkpoint and
  replays from its offset, recomputing the lost outputs with the same
  ``event_id`` s. Outputs are produced and acknowledged before the owner
  commits; delivery is at-least-once with exactly repeatable records.

Identity across partitions is therefore decided in one place, in one order: N
workers on P partitions end with exactly the groups of one process. What this
does not do is spread the pipeline's CPU over workers: the owner runs the core
on one core; routing, validation-free forwarding and failover are what scale.

faust runs the service: lifecycle, signals, timers and the web server. The
records do not go through a faust agent: faust hands an agent one message at a
time through queues and tasks (~120 us of event-loop work per message, measured)
and its agent commits are where its known at-least-once bugs live. Both roles
read with aiokafka's ``getmany`` (the client faust itself uses) and commit
explicitly after their outputs are acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.core.records import Output
from workers.io.kafka import (
    aiokafka_security,
    faust_credentials,
    live_output_topics,
    provision,
    sequenced_topic,
    worker_topics,
)
from workers.service.batch import FLUSH_KEY, process_batch
from workers.service.checkpoints import CheckpointStore
from workers.service.logs import logging_config
from workers.service.metrics import CONTENT_TYPE_LATEST, Metrics
from workers.service.persona_page import SizeHistory, render_page
from workers.state.saved import dump_state, restore_state

_BATCH = 5000  # records per getmany: amortises the event loop; ~0.2 s of pipeline work
_BATCH_WAIT_MS = 200  # a partial batch waits this long before it is processed anyway
# An idle owner flushes the events its event-time buffer holds once nothing has
# arrived for as long as the reorder window (an event that waited that long in
# wall time has waited as long as the window promises), but at most 2 s and at
# least 50 ms, and only when every router has caught up (so "idle" is not a
# pause of a router during a rebalance, which would turn its records into late
# ones). Tied to the window, a live profile's last events of a burst are not
# held seconds longer than its steady stream.
_IDLE_FLUSH_MAX = 2.0
_IDLE_FLUSH_MIN = 0.05
# a standby looks for a newer checkpoint this often (and at least twice per
# checkpoint interval): a manifest read is one small record
_STANDBY_POLL_MAX = 5.0
_PERSONA_INTERVAL = 10.0  # seconds between persona-card publications
# seconds between consumer-lag samples: well under the usual 15 s scrape interval, so
# every scrape sees a fresh value; cheap, as highwater marks come with each fetch
_LAG_INTERVAL = 5.0
# segment sizes for the /personas chart: a sample every 30 s, the last 24 h kept
# (2,880 small dicts, well under a megabyte)
_HISTORY_INTERVAL = 30.0
_HISTORY_SAMPLES = 2880


def provision_topics(config: Config) -> None:
    """Create the contract's topics and the internal ones if missing."""
    provision(config, worker_topics(config))


@dataclass(frozen=True)
class Standby:
    """A restored checkpoint: its manifest (which names its offset) and the pipeline."""

    manifest: dict[str, Any]
    pipeline: Pipeline


@dataclass
class WorkerState:
    """What one worker process knows; the web pages and the tests read it."""

    owner: bool = False
    pipeline: Pipeline | None = None
    restored_from: int | None = None  # sequenced offset the owner's state started at
    next_offset: int = 0  # first sequenced offset the owner's state has not seen
    routed: int = 0
    router_assigned: bool = False
    input_partitions: list[int] = field(default_factory=list)
    cards: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_input: float = 0.0
    flush_sent: bool = True
    published_version: int = 0
    checkpoints: int = 0
    # a non-owner's copy of the newest checkpoint, restored ahead of a takeover
    standby: Standby | None = None
    took_over_from_standby: bool = False

    @property
    def model_version(self) -> int:
        """The newest model this worker knows: its own, or the owner's persona cards."""
        own = self.pipeline.model.snapshot if self.pipeline is not None else None
        followed = max((c["model_version"] for c in self.cards.values()), default=0)
        return max(followed, own.version if own is not None else 0)

    def current_cards(self) -> list[dict[str, Any]]:
        version = max((c["model_version"] for c in self.cards.values()), default=0)
        return sorted((c for c in self.cards.values() if c["model_version"] == version),
                      key=lambda c: c["segment_id"])


def build_app(config: Config, initial: Pipeline | None = None) -> Any:
    """The faust app with the router and owner tasks; tests start it in-process.

    ``initial``: the state the owner starts from when Kafka holds no checkpoint
    yet (a state saved by ``replay --state-out``).
    """
    import faust
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.abc import ConsumerRebalanceListener

    k = config.kafka
    security = aiokafka_security(config)
    app = faust.App(k.application_id, broker=f"kafka://{k.bootstrap_servers}",
                    broker_credentials=faust_credentials(config, security),
                    store="memory://", web_port=config.metrics.port,
                    web_bind=config.metrics.host)
    sequenced = sequenced_topic(config)
    worker = WorkerState()
    app.worker_state = worker  # type: ignore[attr-defined]
    metrics = Metrics()
    app.metrics = metrics  # type: ignore[attr-defined]
    history = SizeHistory(_HISTORY_SAMPLES)
    app.size_history = history  # type: ignore[attr-defined]
    log = logging.getLogger("persona_stream.worker")
    clients: dict[str, Any] = {}
    topics = live_output_topics(config)

    def instance(role: str) -> str | None:
        return f"{k.instance_id}-{role}" if k.instance_id else None

    async def producer() -> Any:
        if "producer" not in clients:
            # acks=all + idempotence: an acknowledged output is durable and never doubled
            # by a producer retry; ordering per partition is kept
            clients["producer"] = AIOKafkaProducer(
                bootstrap_servers=k.bootstrap_servers, acks="all", enable_idempotence=True,
                linger_ms=5, max_request_size=1_048_576, **security)
            await clients["producer"].start()
        return clients["producer"]

    async def emit(outputs: list[Output]) -> None:
        if not outputs:
            return
        from workers.io.sinks import stamp_emitted, wall_clock

        send = (await producer()).send
        stamp_emitted(outputs, wall_clock)
        futures = []
        for out in outputs:
            key = out.key.encode() if out.key is not None else None
            futures.append(await send(topics[out.kind], key=key,
                                      value=orjson.dumps(out.record)))
        await asyncio.gather(*futures)  # acknowledged before the batch is committed

    async def publish_cards(pipeline: Pipeline) -> None:
        send = (await producer()).send
        futures = [await send(k.personas_topic, key=str(card["segment_id"]).encode(),
                              value=orjson.dumps(card)) for card in pipeline.personas()]
        await asyncio.gather(*futures)

    # ---- router ------------------------------------------------------------------

    class RouterListener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            metrics.forget_partitions(tp.partition for tp in revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            # an empty assignment counts too: a worker beyond the partition count is healthy
            worker.router_assigned = True
            worker.input_partitions = sorted(tp.partition for tp in assigned)
            log.info("input partitions assigned", extra={"partitions": worker.input_partitions})

    stopping = asyncio.Event()

    async def route() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, group_id=f"{k.application_id}.router",
            group_instance_id=instance("router"), enable_auto_commit=False,
            auto_offset_reset="earliest", **security)
        consumer.subscribe([k.input_topic], listener=RouterListener())
        clients["router"] = consumer
        await consumer.start()
        try:
            send = (await producer()).send
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=_BATCH_WAIT_MS, max_records=_BATCH)
                futures = []
                for tp, records in batches.items():
                    prefix = f"{tp.topic}:{tp.partition}:"
                    for r in records:
                        futures.append(await send(sequenced, value=r.value,
                                                  key=f"{prefix}{r.offset}".encode()))
                    metrics.observe_routed(records)
                if futures:
                    await asyncio.gather(*futures)
                    await consumer.commit()  # only once the owner's input holds them
                    worker.routed += len(futures)
        finally:
            await consumer.stop()

    # ---- owner -------------------------------------------------------------------

    store_holder: dict[str, CheckpointStore] = {}

    async def store() -> CheckpointStore:
        if "store" not in store_holder:
            store_holder["store"] = CheckpointStore(config, await producer(), security)
        return store_holder["store"]

    async def checkpoint() -> None:
        if worker.pipeline is not None:
            await (await store()).save(dump_state(worker.pipeline), worker.next_offset)
            worker.checkpoints += 1
            log.info("checkpoint written", extra={"next_offset": worker.next_offset})

    class OwnerListener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            if worker.owner:
                await checkpoint()  # hand over as fresh a state as possible
            worker.owner, worker.pipeline = False, None

        async def on_partitions_assigned(self, assigned: Any) -> None:
            if not assigned:
                return
            checkpoints = await store()
            manifest = await checkpoints.newest()
            standby, worker.standby = worker.standby, None
            worker.took_over_from_standby = (manifest is not None and standby is not None
                                             and standby.manifest == manifest)
            if worker.took_over_from_standby:
                assert standby is not None
                worker.pipeline = standby.pipeline
            elif manifest is not None:
                saved = await checkpoints.load(manifest)
                worker.pipeline = restore_state(saved.state, config, "the Kafka checkpoint")
            if manifest is not None:
                worker.next_offset = manifest["next_offset"]
            else:
                worker.pipeline = initial if initial is not None else Pipeline(config)
                worker.next_offset = 0
            worker.restored_from = worker.next_offset
            clients["owner"].seek(TopicPartition(sequenced, 0), worker.next_offset)
            # a state checkpointed before its idle flush still holds events: flush them
            # once the stream is quiet, as if they had just arrived
            worker.last_input, worker.flush_sent = time.monotonic(), False
            worker.owner = True
            log.info("owner of the sequenced stream",
                     extra={"from_offset": worker.next_offset, "checkpoint": manifest is not None,
                            "standby": worker.took_over_from_standby})

    async def stand_by() -> None:
        """While another worker owns the state, keep its newest checkpoint restored here.

        Like a faust standby replica: a takeover then starts from a state already in
        memory and only replays the sequenced records after it.
        """
        checkpoints = await store()
        while not stopping.is_set():
            await asyncio.sleep(standby_poll)
            if worker.owner:
                continue
            manifest = await checkpoints.newest()
            held = worker.standby
            if manifest is None or (held is not None and held.manifest == manifest):
                continue
            saved = await checkpoints.load(manifest)
            if worker.owner:
                continue
            # unpickling is CPU work: a thread lets the router's loop go on meanwhile
            pipeline = await asyncio.to_thread(restore_state, saved.state, config,
                                               "the Kafka checkpoint")
            if not worker.owner:
                worker.standby = Standby(manifest, pipeline)
                log.info("standby state updated", extra={"next_offset": manifest["next_offset"]})

    async def own() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, group_id=f"{k.application_id}.owner",
            group_instance_id=instance("owner"), enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1_048_576, **security)
        consumer.subscribe([sequenced], listener=OwnerListener())
        clients["owner"] = consumer
        await consumer.start()
        last_checkpoint = time.monotonic()
        try:
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=_BATCH_WAIT_MS, max_records=_BATCH)
                pipeline = worker.pipeline
                if pipeline is None or not batches:
                    continue
                started = time.perf_counter()
                done = process_batch(pipeline, chain.from_iterable(batches.values()))
                seconds = time.perf_counter() - started
                worker.next_offset = done.next_offset
                worker.last_input = time.monotonic()
                worker.flush_sent = False
                await emit(done.outputs)
                await consumer.commit()
                metrics.observe_batch(pipeline, done.fed, seconds, done.outputs)
                snapshot = pipeline.model.snapshot
                if snapshot is not None and snapshot.version != worker.published_version:
                    await publish_cards(pipeline)  # followers learn a new model at once
                    worker.published_version = snapshot.version
                if time.monotonic() - last_checkpoint >= k.checkpoint_interval_seconds:
                    await checkpoint()
                    last_checkpoint = time.monotonic()
        finally:
            await consumer.stop()

    standby_poll = min(_STANDBY_POLL_MAX, k.checkpoint_interval_seconds / 2)
    idle_flush = min(_IDLE_FLUSH_MAX, max(_IDLE_FLUSH_MIN,
                                          config.intake.reorder_window_seconds))

    async def input_ends() -> dict[tuple[str, int], int]:
        """End offset of every input partition, asked with the router's client."""
        from aiokafka.errors import KafkaError

        consumer = clients.get("router")
        if consumer is None:
            return {}
        partitions = consumer.partitions_for_topic(k.input_topic) or set()
        try:
            ends = await consumer.end_offsets([TopicPartition(k.input_topic, p)
                                               for p in partitions])
        except KafkaError:
            return {}
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    @app.timer(idle_flush / 2)
    async def flush_when_idle() -> None:
        # a quiet stream must not leave events waiting in the event-time buffer; the
        # flush goes through the sequenced stream so that a replay flushes at the same place
        pipeline = worker.pipeline
        if (not worker.owner or pipeline is None or worker.flush_sent or pipeline.held == 0
                or time.monotonic() - worker.last_input < idle_flush):
            return
        # caught up: the sequenced stream holds every input record that exists now
        ends = await input_ends()
        if not ends or any(pipeline.positions.get(tp, 0) < end for tp, end in ends.items()):
            return
        worker.flush_sent = True
        await (await (await producer()).send(sequenced, key=FLUSH_KEY, value=b""))

    @app.timer(_PERSONA_INTERVAL)
    async def publish_personas() -> None:
        if worker.owner and worker.pipeline is not None:
            await publish_cards(worker.pipeline)

    async def follow_personas() -> None:
        """Every worker follows the owner's persona cards: one model version for all."""
        consumer = AIOKafkaConsumer(
            k.personas_topic, bootstrap_servers=k.bootstrap_servers, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, **security)
        await consumer.start()
        try:
            while not stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=_BATCH_WAIT_MS)).values():
                    for r in records:
                        card = orjson.loads(r.value)
                        worker.cards[int(card["segment_id"])] = card
        finally:
            await consumer.stop()

    @app.timer(_LAG_INTERVAL)
    async def sample_consumer_lag() -> None:
        consumer = clients.get("router")
        if consumer is None or not worker.router_assigned:
            return  # no assignment yet: the consumer has no positions to compare
        lags = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            done = metrics.next_offset(tp.partition)
            if done is None:  # nothing handled here yet: the fetch position is where we stand
                done = await consumer.position(tp)
            if highwater is not None and done is not None:
                lags[tp.partition] = highwater - done
        metrics.observe_consumer_lag(lags)

    @app.timer(_HISTORY_INTERVAL)
    async def sample_segment_sizes() -> None:
        cards = worker.current_cards()
        if cards:
            history.sample(time.time(), {c["segment_id"]: c["size"] for c in cards})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        # a rebalance in progress does not make a worker unready: it is routine, and
        # flapping readiness would only stall rolling updates
        if worker.router_assigned and app.started and not app.should_stop:
            return web.json({"status": "ready"})
        return web.json({"status": "starting"}, status=503)

    @app.page("/status")
    async def status(web: Any, request: Any) -> Any:
        """Role and progress of this worker, for operators and tests."""
        pipeline = worker.pipeline
        caught_up = None
        if pipeline is not None:
            ends = await input_ends()
            caught_up = (bool(ends) and pipeline.held == 0
                         and all(pipeline.positions.get(tp, 0) >= end
                                 for tp, end in ends.items()))
        return web.json({
            "owner": worker.owner, "model_version": worker.model_version,
            "routed": worker.routed, "input_partitions": worker.input_partitions,
            "next_offset": worker.next_offset,
            "restored_from": worker.restored_from, "checkpoints": worker.checkpoints,
            "standby_offset": (None if worker.standby is None
                               else worker.standby.manifest["next_offset"]),
            "took_over_from_standby": worker.took_over_from_standby,
            "store": config.state.store,
            "events_read": pipeline.stats.events_read if pipeline is not None else None,
            "held": pipeline.held if pipeline is not None else None,
            # every input record that exists now is processed, nothing held back
            "caught_up": caught_up})

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/personas")
    async def personas_page(web: Any, request: Any) -> Any:
        label = worker.pipeline.spec.label if worker.pipeline is not None else str
        return web.html(render_page(worker.current_cards(), list(history), label, time.time()))

    @app.page("/personas.json")
    async def personas_json(web: Any, request: Any) -> Any:
        return web.json(worker.current_cards())

    @app.page("/profile/{key}")
    async def profile(web: Any, request: Any, key: str) -> Any:
        pipeline = worker.pipeline
        if pipeline is None:
            return web.json({"error": "profiles live on the owner worker; ask it "
                             "(GET /status says which one is)"}, status=503)
        pid = pipeline.lookup(key)
        if pid is None:
            return web.json({"error": "not found"}, status=404)
        return web.json(pipeline.profile_snapshot(pid))

    @app.page("/profiles")
    async def profiles(web: Any, request: Any) -> Any:
        """Every profile snapshot as JSON lines (the owner's ``profiles.jsonl``)."""
        pipeline = worker.pipeline
        if pipeline is None:
            return web.json({"error": "profiles live on the owner worker"}, status=503)
        body = b"".join(orjson.dumps(pipeline.profile_snapshot(pid)) + b"\n"
                        for pid in sorted(pipeline.profiles))
        return web.bytes(body, content_type="application/x-ndjson")

    @app.service
    class Roles(faust.Service):
        """Runs router, owner and follower loops; stops them in an order that loses nothing."""

        async def on_started(self) -> None:
            loops = [route, own, follow_personas] + ([stand_by] if config.state.standby else [])
            self.loops = [asyncio.ensure_future(loop()) for loop in loops]
            for task in self.loops:
                task.add_done_callback(self._crash_on_error)

        def _crash_on_error(self, task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is not None and not stopping.is_set():
                log.error("worker loop failed", exc_info=task.exception())
                self.crashing = asyncio.ensure_future(
                    self.crash(task.exception()))  # type: ignore[arg-type]

        async def on_stop(self) -> None:
            stopping.set()  # each loop ends within one getmany wait
            await asyncio.gather(*self.loops, return_exceptions=True)
            if worker.owner:
                await checkpoint()  # the next owner starts from here: nothing to replay
            if "producer" in clients:
                await clients["producer"].stop()

    return app


def run_worker(config: Config, initial: Pipeline | None = None) -> int:
    """Blocks until SIGTERM/SIGINT; faust shuts down gracefully on either."""
    import faust

    provision_topics(config)  # an unreachable broker: BrokerError, one line from the CLI
    app = build_app(config, initial)
    worker = faust.Worker(app, loglevel=config.metrics.log_level.lower(),
                          logging_config=logging_config(config.metrics.log_level))
    worker.execute_from_commandline()
    return 0
