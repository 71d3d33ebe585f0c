"""Every worker follows the owner's persona cards: one model version shown everywhere.

The owner publishes the cards of each model version (and their sizes now and
then) to the compacted personas topic; each worker reads it from the start, so
``/status``, ``/personas`` and ``persona-stream personas --url`` agree on every
worker, owner or not.
"""

from __future__ import annotations

import asyncio

import orjson

from workers.config import Config
from workers.service.clients import Batches, Clients, read_until
from workers.service.state import WorkerState


class CardFollower:
    """Keeps :attr:`WorkerState.cards` up to date from the personas topic."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState) -> None:
        self.config = config
        self.clients = clients
        self.state = state

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.clients.consumer(self.config.kafka.personas_topic)  # no group
        await read_until(stopping, consumer, self._follow)

    async def _follow(self, batches: Batches) -> None:
        for records in batches.values():
            for r in records:
                card = orjson.loads(r.value)
                self.state.cards[int(card["segment_id"])] = card
