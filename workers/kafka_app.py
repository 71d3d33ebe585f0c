"""``persona-stream worker``: a faust-streaming shell around the same core ``run`` uses.

One agent reads ``touchpoints`` in batches (``stream.take``: a faust agent handling
one event per await manages a few thousand events/s; batches amortise that),
feeds each record to the :class:`~workers.pipeline.Pipeline` and produces the
outputs before the batch's offsets can be committed, so delivery is
at-least-once and re-emitted records keep their deterministic ``event_id``.
Agent concurrency stays 1: faust can commit past an in-flight message otherwise.

Scope today: one worker process owns the whole pipeline state in memory. Running
several workers, or restarting one, needs the partition-aware identity protocol
and changelogged state described in ARCHITECTURE.md (issue #5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

import orjson

from workers.config import Config
from workers.logs import logging_config
from workers.pipeline import Origin, Output, Pipeline

_BATCH = 2000  # records per agent batch
_BATCH_WAIT = 0.2  # seconds a partial batch waits before it is processed anyway
_IDLE_FLUSH = 2.0  # seconds without input before held events are flushed out
_PERSONA_INTERVAL = 10.0  # seconds between persona-card publications
# seconds between consumer-lag samples: well under the usual 15 s scrape interval, so
# every scrape sees a fresh value; cheap, as highwater marks come with each fetch
_LAG_INTERVAL = 5.0
# segment sizes for the /personas chart: a sample every 30 s, the last 24 h kept
# (2,880 small dicts, well under a megabyte)
_HISTORY_INTERVAL = 30.0
_HISTORY_SAMPLES = 2880


class BrokerUnavailable(Exception):
    """The broker did not answer within ``kafka.connect_timeout_seconds``."""


def client_security(config: Config) -> dict[str, Any]:
    """kafka-python settings for the configured security protocol."""
    k = config.kafka
    opts: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        opts.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                    sasl_plain_password=k.sasl_password)
    if k.ssl_cafile:
        opts["ssl_cafile"] = k.ssl_cafile
    if k.ssl_certfile:
        opts["ssl_certfile"] = k.ssl_certfile
    if k.ssl_keyfile:
        opts["ssl_keyfile"] = k.ssl_keyfile
    return opts


def provision_topics(config: Config) -> None:
    """Create the contract's topics if missing; ``personas`` is compacted."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    k = config.kafka
    timeout_ms = int(k.connect_timeout_seconds * 1000)
    try:
        admin = KafkaAdminClient(bootstrap_servers=k.bootstrap_servers,
                                 request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                                 **client_security(config))
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {k.bootstrap_servers}: {exc}") from None
    try:
        existing = set(admin.list_topics())
        retention = {"retention.ms": str(k.retention_ms)}
        wanted = [
            NewTopic(k.input_topic, k.partitions, k.replication_factor, topic_configs=retention),
            NewTopic(k.dlq_topic, k.partitions, k.replication_factor, topic_configs=retention),
            NewTopic(k.segment_changes_topic, k.partitions, k.replication_factor,
                     topic_configs=retention),
            NewTopic(k.identity_merges_topic, k.partitions, k.replication_factor,
                     topic_configs=retention),
            NewTopic(k.personas_topic, 1, k.replication_factor,
                     topic_configs={"cleanup.policy": "compact"}),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                admin.create_topics(missing)
    finally:
        admin.close()


def build_app(config: Config, initial: Pipeline | None = None) -> Any:
    """The faust app with its one agent; returned so tests can start it in-process.

    ``initial``: a pipeline to continue (a state saved by ``replay --state-out``).
    """
    import faust

    k = config.kafka
    app = faust.App(
        k.application_id,
        broker=f"kafka://{k.bootstrap_servers}",
        store=k.store,
        web_port=config.metrics.port,
        web_bind=config.metrics.host,
        consumer_auto_offset_reset="earliest",
        topic_partitions=k.partitions,
        table_standby_replicas=k.standby_replicas,
    )
    pipeline = initial if initial is not None else Pipeline(config)
    app.pipeline = pipeline  # type: ignore[attr-defined]
    source = app.topic(k.input_topic, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    sinks = {
        "segment_change": app.topic(k.segment_changes_topic, key_serializer="raw",
                                    value_serializer="raw"),
        "identity_merge": app.topic(k.identity_merges_topic, key_serializer="raw",
                                    value_serializer="raw"),
        "dead_letter": app.topic(k.dlq_topic, key_serializer="raw", value_serializer="raw"),
    }
    personas = app.topic(k.personas_topic, key_serializer="raw", value_serializer="raw")
    state = {"last_input": 0.0, "held": False}
    from workers.metrics import CONTENT_TYPE_LATEST, Metrics
    from workers.persona_page import SizeHistory, render_page

    metrics = Metrics()
    app.metrics = metrics  # type: ignore[attr-defined]
    history = SizeHistory(_HISTORY_SAMPLES)
    app.size_history = history  # type: ignore[attr-defined]
    ready = {"assigned": False}
    log = logging.getLogger("persona_stream.worker")

    async def emit(outputs: list[Output]) -> None:
        if not outputs:
            return
        from workers.sinks import wall_clock

        stamp = wall_clock()
        futures = []
        for out in outputs:
            if out.kind != "dead_letter":
                out.record["emitted_at"] = stamp
            key = out.key.encode() if out.key is not None else None
            futures.append(await sinks[out.kind].send(key=key, value=orjson.dumps(out.record)))
        await asyncio.gather(*futures)  # produced before this batch's offsets can commit

    @app.agent(source, concurrency=1)
    async def touchpoints(stream: Any) -> None:
        async for batch in stream.take_events(_BATCH, within=_BATCH_WAIT):
            started = time.perf_counter()
            outputs: list[Output] = []
            for event in batch:
                msg = event.message
                outputs.extend(pipeline.feed(msg.value, Origin(msg.topic, msg.partition,
                                                               msg.offset)))
            seconds = time.perf_counter() - started
            state["last_input"] = asyncio.get_running_loop().time()
            state["held"] = True
            await emit(outputs)
            metrics.observe_batch(pipeline, [e.message for e in batch], seconds, outputs)

    @app.timer(_IDLE_FLUSH / 2)
    async def flush_when_idle() -> None:
        # a quiet stream must not leave events waiting in the event-time buffer
        if state["held"] and asyncio.get_running_loop().time() - state["last_input"] > _IDLE_FLUSH:
            state["held"] = False
            outputs = pipeline.flush()
            await emit(outputs)
            metrics.observe_batch(pipeline, (), 0.0, outputs)

    @app.timer(_PERSONA_INTERVAL)
    async def publish_personas() -> None:
        for card in pipeline.personas():
            await personas.send(key=str(card["segment_id"]).encode(), value=orjson.dumps(card))

    @app.timer(_LAG_INTERVAL)
    async def sample_consumer_lag() -> None:
        if not ready["assigned"]:
            return  # no assignment yet: the consumer has no positions to compare
        consumer = app.consumer
        lags = {}
        for tp in consumer.assignment():
            if tp.topic != k.input_topic:
                continue
            highwater = consumer.highwater(tp)
            done = metrics.next_offset(tp.partition)
            if done is None:  # nothing handled here yet: the fetch position is where we stand
                done = await consumer.position(tp)
            if highwater is not None and done is not None:
                lags[tp.partition] = highwater - done
        metrics.observe_consumer_lag(lags)

    @app.timer(_HISTORY_INTERVAL)
    async def sample_segment_sizes() -> None:
        history.sample(time.time(), pipeline.sizes)

    # typed Any: mode's declared handler type (a generic signal protocol) is one no
    # plain function satisfies under mypy; the calling convention is (sender, *args)
    assigned_signal: Any = app.on_partitions_assigned
    revoked_signal: Any = app.on_partitions_revoked

    @assigned_signal.connect
    def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        # an empty assignment counts too: a worker beyond the partition count is healthy
        ready["assigned"] = True
        mine = sorted(tp.partition for tp in assigned if tp.topic == k.input_topic)
        log.info("partitions assigned", extra={"partitions": mine})

    @revoked_signal.connect
    def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        metrics.forget_partitions(tp.partition for tp in revoked if tp.topic == k.input_topic)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        # a rebalance in progress does not make a worker unready: it is routine, and
        # flapping readiness would only stall rolling updates
        if ready["assigned"] and app.started and not app.should_stop:
            return web.json({"status": "ready"})
        return web.json({"status": "starting"}, status=503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/personas")
    async def personas_page(web: Any, request: Any) -> Any:
        return web.html(render_page(pipeline.personas(), list(history), pipeline.spec.label,
                                    time.time()))

    @app.page("/profile/{key}")
    async def profile(web: Any, request: Any, key: str) -> Any:
        pid = pipeline.lookup(key)
        if pid is None:
            return web.json({"error": "not found"}, status=404)
        return web.json(pipeline.profile_snapshot(pid))

    return app


def run_worker(config: Config, initial: Pipeline | None = None) -> int:
    """Blocks until SIGTERM/SIGINT; faust shuts down gracefully on either."""
    import faust

    try:
        provision_topics(config)
    except BrokerUnavailable as exc:
        print(f"persona-stream worker: error: {exc}", file=sys.stderr)
        return 1
    app = build_app(config, initial)
    worker = faust.Worker(app, loglevel=config.metrics.log_level.lower(),
                          logging_config=logging_config(config.metrics.log_level))
    worker.execute_from_commandline()
    return 0
