"""Forget requests on Kafka: ``persona-stream forget`` sends one, ``replay`` reads them all.

A request goes to ``kafka.forget_topic``; the workers' routers forward it into
the sequenced stream, where the owner applies it (workers/service/batch.py).
``replay`` reads, before any history, every request on that topic and the live
worker's forget list (``<app>-forgotten-changelog``, which also holds the hashes of
the identifiers a forgotten person's group had when it was forgotten): together
they keep a backfill from bringing anyone back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.config import Config
from workers.core.forget import ForgetRequest, parse_request
from workers.core.pipeline import Pipeline
from workers.core.records import Output
from workers.errors import BrokerError, InvalidEvent
from workers.io.kafka import (
    TopicSpec,
    changelog_topic,
    client_security,
    provision,
    unreachable,
)
from workers.state.codec import unpack

_POLL_MS = 500


@dataclass
class ForgetHistory:
    """What Kafka knows of forgetting: the requests in order, and the live forget list."""

    requests: list[ForgetRequest] = field(default_factory=list)
    forgotten: dict[str, str] = field(default_factory=dict)  # hash -> requested_at
    unreadable: int = 0  # requests that could not be read (the worker dead-letters them)

    def apply(self, pipeline: Pipeline) -> list[Output]:
        """The live list joins the pipeline's, then each request is applied in order (a
        state that still holds the person loses them here: its ``forget/v1`` records are
        returned)."""
        for digest, when in sorted(self.forgotten.items()):
            pipeline.forgotten.add((digest,), when)
        return [out for request in self.requests for out in pipeline.forget(request)]


def send_request(config: Config, request: ForgetRequest) -> tuple[int, int]:
    """Produce ``request`` to ``kafka.forget_topic`` (created when missing); returns the
    partition and offset the broker gave it."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    k = config.kafka
    provision(config, [TopicSpec(k.forget_topic, 1, {"retention.ms": "-1"})])
    timeout_ms = int(k.connect_timeout_seconds * 1000)
    try:
        producer = KafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all",
                                 max_block_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                                 client_id="persona-stream-forget", **client_security(config))
    except KafkaError as exc:
        raise BrokerError(unreachable(config, exc)) from None
    try:
        sent = producer.send(k.forget_topic, value=request.record()).get(
            timeout=k.connect_timeout_seconds)
        return sent.partition, sent.offset
    except KafkaError as exc:
        raise BrokerError(f"producing to {k.forget_topic} failed: {exc}") from None
    finally:
        producer.close()


def read_history(config: Config) -> ForgetHistory:
    """Every forget request and the live forget list, as far as the broker has them now
    (a topic that does not exist yet holds none)."""
    try:
        return _read_history(config)
    except BrokerError as exc:
        raise BrokerError(f"{exc}; replay reads the forget requests ({config.kafka.forget_topic})"
                          " first, so that no forgotten person comes back:"
                          " --ignore-forget-requests replays without them") from None


def _read_history(config: Config) -> ForgetHistory:
    history = ForgetHistory()
    for _, value in _read_all(config, config.kafka.forget_topic, "read_uncommitted"):
        try:
            history.requests.append(parse_request(value))
        except InvalidEvent:
            history.unreadable += 1
    for key, value in _read_all(config, changelog_topic(config, "forgotten"),
                                "read_committed"):
        if value is None:  # never written: the list only grows
            history.forgotten.pop(key.decode(), None)
        else:
            history.forgotten[key.decode()] = str(unpack(value))
    return history


def _read_all(config: Config, topic: str, isolation: str) -> Iterator[tuple[Any, Any]]:
    """(key, value) of every record of ``topic`` up to its end now, partition by partition."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    k = config.kafka
    timeout_ms = int(k.connect_timeout_seconds * 1000)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, group_id=None, enable_auto_commit=False,
            isolation_level=isolation, client_id="persona-stream-replay",
            request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
            **client_security(config))
    except KafkaError as exc:
        raise BrokerError(unreachable(config, exc)) from None
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + k.connect_timeout_seconds
        while pending:
            batches = consumer.poll(timeout_ms=_POLL_MS)
            if batches:
                deadline = time.monotonic() + k.connect_timeout_seconds
            elif time.monotonic() > deadline:
                raise BrokerError(f"no records from {topic!r} for"
                                  f" {k.connect_timeout_seconds:g} s; is the broker up?")
            for tp in sorted(batches, key=lambda tp: tp.partition):
                for record in batches[tp]:
                    if record.offset < ends[tp]:
                        yield record.key, record.value
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
    except KafkaError as exc:
        raise BrokerError(f"cannot read topic {topic!r}: {exc}") from None
    finally:
        consumer.close(autocommit=False)
