"""Persona cards on the personas topic, and every worker following them.

No process holds every profile, so :class:`CardReports` adds the profile
partitions' reports up and the trainer's holder publishes the cards of each model
version (and their sizes now and then) to the compacted personas topic. Each worker
reads the topic from the start, so ``/status``, ``/personas`` and ``persona-stream
personas --url`` agree on every worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import orjson

from workers.config import Config
from workers.core.partitioned.cards import CardAssembly, CardReport
from workers.core.records import PersonaCard
from workers.io.cloudevents import Envelope
from workers.io.kafka import card_reports_topic
from workers.service.background import skipped_while_the_broker_is_away
from workers.service.clients import Batches, Clients, read_until
from workers.service.logs import worker_log
from workers.service.state import WorkerState

PERSONA_INTERVAL = 10.0  # seconds between publications of the cards' sizes


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


class CardReports:
    """The cards of every profile partition, added up.

    Every :data:`PERSONA_INTERVAL` each worker sends the cards and KPI totals of the
    partitions it holds to ``<app>-card-reports`` (compacted: the newest per
    partition); every worker follows that topic, and the one holding the trainer
    publishes the cards the reports add up to when they changed
    (:class:`~workers.core.partitioned.cards.CardAssembly`). Sizes are as of the
    reports, at most an interval old.
    """

    def __init__(self, config: Config, clients: Clients, state: WorkerState) -> None:
        self.config = config
        self.clients = clients
        self.state = state
        self.topic = card_reports_topic(config)
        self.assembly = CardAssembly(config.kafka.partitions)
        self.envelope = Envelope(config)
        self._published: list[PersonaCard] = []

    def register(self, app: faust.App) -> None:
        app.timer(PERSONA_INTERVAL)(self.report)
        app.timer(PERSONA_INTERVAL)(self.publish)

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.clients.consumer(self.topic)  # no group: every report, every worker
        await read_until(stopping, consumer, self._follow)

    async def _follow(self, batches: Batches) -> None:
        for records in batches.values():
            for r in records:
                if r.value is not None:
                    self.assembly.offer(_report(orjson.loads(r.value)))

    @skipped_while_the_broker_is_away
    async def report(self) -> None:
        """The partitions this worker holds, each as it stands now."""
        reports = [report for _, task in sorted(self.state.tasks.items())
                   if (report := task.card_report()) is not None]
        if not reports:
            return
        send = (await self.clients.producer()).send
        futures = [await send(self.topic, key=str(r.partition).encode(),
                              value=orjson.dumps(_fields(r))) for r in reports]
        await asyncio.gather(*futures)

    @skipped_while_the_broker_is_away
    async def publish(self) -> None:
        """The trainer's holder: the cards, when every partition reported and they changed."""
        if not self.state.trainer:
            return
        cards = self.assembly.cards()
        if not cards or cards == self._published:
            return
        send = (await self.clients.producer()).send
        topic = self.config.kafka.personas_topic
        futures = []
        for card in cards:
            key, value, headers = self.envelope.card(card)
            futures.append(await send(topic, key=key, value=value, headers=headers))
        await asyncio.gather(*futures)
        self._published = cards


def _fields(report: CardReport) -> dict[str, Any]:
    return {"partition": report.partition, "version": report.version, "cards": report.cards,
            "totals": {str(sid): counts for sid, counts in report.totals.items()}}


def _report(fields: dict[str, Any]) -> CardReport:
    return CardReport(fields["partition"], fields["version"], fields["cards"],
                      {int(sid): counts for sid, counts in fields["totals"].items()})
