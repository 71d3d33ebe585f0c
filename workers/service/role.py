"""What every role of a worker is built from.

A role (the router, the owner, the profile tasks, the trainer) is a member of a
consumer group of its own, and so its own rebalance listener; each reads the same
configuration, makes its clients from the worker's one :class:`Clients`, and reports
to the worker's one state and one set of metrics.
"""

from __future__ import annotations

from aiokafka.abc import ConsumerRebalanceListener

from workers.config import Config
from workers.service.clients import Clients
from workers.service.metrics import Metrics
from workers.service.state import WorkerState


class Role(ConsumerRebalanceListener):
    """A role of the worker: its configuration, clients, state and metrics."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState,
                 metrics: Metrics) -> None:
        self.config = config
        self.clients = clients
        self.state = state
        self.metrics = metrics
