"""Whether the broker answers, asked every few seconds by a client of its own.

The roles' clients retry by themselves through an outage and lose nothing; what
an operator needs is to be told. This probe keeps ``state.broker`` current:
``/readyz`` answers 503 with the reason while the broker does not answer,
``/status`` shows since when, and one WARNING line marks each change (down,
then back up with how long it was away), instead of the client libraries'
thousands of retry lines (rate-limited in :mod:`workers.service.logs`).
"""

from __future__ import annotations

import asyncio
import time

import faust
from aiokafka.client import AIOKafkaClient

from workers.config import Config
from workers.io.kafka import aiokafka_security
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

    def register(self, app: faust.App) -> None:
        app.timer(PROBE_INTERVAL)(self.probe)

    async def probe(self) -> None:
        try:
            await asyncio.wait_for(self._ask(), self.timeout)
        except Exception as exc:  # anything the client raises means: no answer
            self._record(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        else:
            self._record(True, None)

    async def _ask(self) -> None:
        if self._client is None:
            client = AIOKafkaClient(bootstrap_servers=self.config.kafka.bootstrap_servers,
                                    client_id="persona-stream-health",
                                    **aiokafka_security(self.config))
            await client.bootstrap()
            self._client = client
        await self._client.fetch_all_metadata()

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
