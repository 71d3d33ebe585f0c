"""Sending a role's records, with their acknowledgements awaited at its next commit.

A role sends as it goes and awaits every acknowledgement just before it commits
its state and offsets: the broker writes one batch while the role works on the
next, and nothing is committed past a record the broker refused (the role is
marked failed, and the next owner of its input replays from its last commit).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from workers.config import Config
from workers.core.records import Output
from workers.errors import BrokerError
from workers.io.cloudevents import Envelope
from workers.io.kafka import live_output_topics
from workers.io.sinks import stamp_emitted, wall_clock


class Emitter:
    """Sends output records (and any other records) through ``producer``."""

    def __init__(self, config: Config, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.output_topics = live_output_topics(config)
        self.envelope = Envelope(config)
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        # a record was refused: the state that made it is ahead of what consumers have,
        # so it must never be committed
        self.failed = False

    async def emit(self, outputs: list[Output]) -> None:
        """Output records, to their topics, stamped with the wall clock."""
        if not outputs:
            return
        stamp_emitted(outputs, wall_clock)
        message, topics = self.envelope.message, self.output_topics
        for out in outputs:
            key, value, headers = message(out)
            await self.send(topics[out.kind], value, key=key, headers=headers)

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None, headers: Any = None) -> None:
        try:
            self._pending.append((topic, await self.producer.send(
                topic, value=value, key=key, partition=partition, headers=headers)))
        except KafkaError as exc:
            self.failed = True
            raise BrokerError(f"producing to {topic} failed: {exc!r}") from exc

    async def acknowledged(self) -> None:
        """Every record sent so far is acknowledged; a refused one is a BrokerError naming
        its topic."""
        sent, self._pending = self._pending, []
        results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        for (topic, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                self.failed = True
                raise BrokerError(f"producing to {topic} failed: {result!r}") from result
