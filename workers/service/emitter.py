"""Sending a role's records, with their acknowledgements awaited at its next commit.

A role sends as it goes and awaits every acknowledgement just before it commits
its state and offsets: the broker writes one batch while the role works on the
next, and nothing is committed past a record the broker refused (the role is
marked failed, and the next owner of its input replays from its last commit).

With ``kafka.processing_guarantee: exactly_once`` a role that commits through a
transactional :class:`~workers.service.changelog.ChangelogWriter` sends through
that writer's producer instead (:func:`role_emitter`): its records are in the
transaction its state and offsets commit in, so a ``read_committed`` consumer
sees each exactly once, when the commit made it durable.
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
from workers.service.changelog import ChangelogWriter


class Emitter:
    """Sends output records (and any other records) through ``producer``."""

    def __init__(self, config: Config, producer: AIOKafkaProducer,
                 transaction: ChangelogWriter | None = None) -> None:
        self.producer = producer
        self.transaction = transaction  # whose transaction every record goes into
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
        if self.transaction is not None:
            await self.transaction.begin()  # opened once, until the role's next commit
        try:
            self._pending.append((topic, await self.producer.send(
                topic, value=value, key=key, partition=partition, headers=headers)))
        except KafkaError as exc:
            self.failed = True
            raise BrokerError(f"producing to {topic} failed: {exc!r}") from exc

    async def acknowledged(self) -> None:
        """Every record sent so far is acknowledged; a refused one is a BrokerError naming
        its topic."""
        await self.confirm(self.take_sent())

    def take_sent(self) -> list[tuple[str, asyncio.Future[Any]]]:
        """The records sent since the last call, for a commit to :meth:`confirm` later
        while the role sends on."""
        sent, self._pending = self._pending, []
        return sent

    async def confirm(self, sent: list[tuple[str, asyncio.Future[Any]]]) -> None:
        """Every record of ``sent`` is acknowledged (as :meth:`acknowledged`)."""
        results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        for (topic, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                self.failed = True
                raise BrokerError(f"producing to {topic} failed: {result!r}") from result

def role_emitter(config: Config, shared: Emitter, writer: ChangelogWriter) -> Emitter:
    """What a role committing through ``writer`` sends with: the process's ``shared``
    emitter (at least once), or one in ``writer``'s transactions (exactly once)."""
    if config.kafka.processing_guarantee != "exactly_once":
        return shared
    return Emitter(config, writer.producer, transaction=writer)
