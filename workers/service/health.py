"""Whether the broker answers, and holds the output topics, asked every few seconds.

The roles' clients retry by themselves through an outage and lose nothing; what
an operator needs is to be told. This probe keeps ``state.broker`` current:
``/readyz`` answers 503 with the reason while the broker does not answer,
``/status`` shows since when, and one WARNING line marks each change (down,
then back up with how long it was away), instead of the client libraries'
thousands of retry lines (rate-limited in :mod:`workers.service.logs`).

The same answer lists the output topics. One deleted under the running worker
is created again with its partitions, and one the broker's auto-create brought
back with fewer partitions than it had is given them back, with a WARNING each.
"""

from __future__ import annotations

import asyncio
import time

import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata

from workers.config import Config
from workers.io.kafka import (
    TopicSpec,
    aiokafka_security,
    live_output_topics,
    output_topic_specs,
    restore_topic,
)
from workers.service.logs import worker_log
from workers.service.state import BrokerHealth, WorkerState

PROBE_INTERVAL = 5.0  # seconds between probes; a probe waits at most as long


class BrokerProbe:
    """Asks the cluster for its metadata; records and logs every change of the answer."""

    def __init__(self, config: Config, state: WorkerState) -> None:
        self.config = config
        self.state = state
        self.timeout = min(PROBE_INTERVAL, config.kafka.connect_timeout_seconds)
        self._client: AIOKafkaClient | None = None
        # each output topic's partitions when first seen: what it is restored to
        self._partitions: dict[str, int] = {}

    def register(self, app: faust.App) -> None:
        app.timer(PROBE_INTERVAL)(self.probe)

    async def probe(self) -> None:
        try:
            cluster = await asyncio.wait_for(self._ask(), self.timeout)
        except Exception as exc:  # anything the client raises means: no answer
            self._record(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
            return
        self._record(True, None)
        await self._watch_topics(cluster)

    async def _ask(self) -> ClusterMetadata:
        if self._client is None:
            client = AIOKafkaClient(bootstrap_servers=self.config.kafka.bootstrap_servers,
                                    client_id="persona-stream-health",
                                    **aiokafka_security(self.config))
            await client.bootstrap()
            self._client = client
        return await self._client.fetch_all_metadata()

    async def _watch_topics(self, cluster: ClusterMetadata) -> None:
        for name in live_output_topics(self.config).values():
            partitions = cluster.partitions_for_topic(name)
            count = len(partitions) if partitions else 0
            expected = self._partitions.setdefault(
                name, count or self.config.kafka.partitions)
            if count >= expected:
                continue
            spec = output_topic_specs(self.config, [name])[0]
            spec = TopicSpec(spec.name, expected, spec.settings)
            try:
                done = await asyncio.to_thread(restore_topic, self.config, spec)
            except Exception as exc:  # a timer must not crash the worker: the next probe
                done = f"not restored yet: {exc!r}"  # tries again
            worker_log.warning("an output topic was missing or lost partitions",
                               extra={"topic": name, "what": done})

    def _record(self, reachable: bool, reason: str | None) -> None:
        health = self.state.broker
        if reachable == health.reachable:
            health.reason = reason
            return
        now = time.time()
        if reachable:
            worker_log.warning("the broker answers again",
                               extra={"unreachable_seconds": round(now - health.since, 1)})
        else:
            worker_log.warning("the broker does not answer; outputs wait, nothing is lost",
                               extra={"bootstrap_servers": self.config.kafka.bootstrap_servers,
                                      "reason": reason})
        self.state.broker = BrokerHealth(reachable, now, reason)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
