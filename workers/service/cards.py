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
from workers.service.logs import worker_log
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
        """A tombstone deletes its segment's card; a lineage record (the same topic) is not
        a card; anything else that is no card is skipped with a warning."""
        cards = self.state.cards
        for records in batches.values():
            for r in records:
                if r.value is None:
                    if r.key is not None and r.key.isdigit():
                        cards.pop(int(r.key), None)
                    continue
                try:
                    card = orjson.loads(r.value)
                    if card.get("schema") == "segment_lineage/v1":
                        continue
                    cards[int(card["segment_id"])] = card
                except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                    worker_log.warning("skipped a record on the personas topic that is not a"
                                       " persona card", extra={"offset": r.offset})
