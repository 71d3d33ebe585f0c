"""The worker's public pages, served by faust's web server on ``metrics.host:metrics.port``.

``/healthz`` (alive), ``/readyz`` (partitions assigned and the broker answering:
a rebalance in progress does not make a worker unready), ``/status`` (role and
progress, for operators and tests), ``/metrics`` (Prometheus), ``/personas`` (the HTML page) and
``/personas.json`` (the cards followed; every worker). None of them returns an
identifier: the profiles are on the admin listener (:mod:`workers.service.admin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import faust
from faust.web import Request, Response

from workers.config import Config
from workers.core.features import FeatureSpec
from workers.core.touchpoints import format_time
from workers.service.metrics import CONTENT_TYPE_LATEST, Metrics
from workers.service.owner import InputProgress
from workers.service.persona_page import SizeHistory, render_page
from workers.service.state import WorkerState

# segment sizes for the /personas chart: a sample every 30 s, the last 24 h kept
# (2,880 small dicts, well under a megabyte)
HISTORY_INTERVAL = 30.0
HISTORY_SAMPLES = 2880


class Pages:
    """The pages and the segment-size history their chart draws."""

    def __init__(self, app: faust.App, config: Config, state: WorkerState, metrics: Metrics,
                 progress: InputProgress) -> None:
        self.app = app
        self.config = config
        self._spec = FeatureSpec(config.features)  # the features' readable names
        self.state = state
        self.metrics = metrics
        self.progress = progress
        self.history = SizeHistory(HISTORY_SAMPLES)

    def register(self) -> None:
        """Adds the pages, and the timer that samples the history, to the app."""
        app = self.app
        for path, handler in (("/healthz", self.healthz), ("/readyz", self.readyz),
                              ("/status", self.status), ("/metrics", self.metrics_page),
                              ("/personas", self.personas_page),
                              ("/personas.json", self.personas_json)):
            # faust makes the handler its view's ``get``; a bound method stays bound to
            # these pages, so it is called with the request (and the path's fields)
            app.page(path)(handler)  # type: ignore[arg-type]
        app.timer(HISTORY_INTERVAL)(self.sample_segment_sizes)

    async def sample_segment_sizes(self) -> None:
        cards = self.state.current_cards()
        if cards:
            self.history.sample(time.time(), {c["segment_id"]: c["size"] for c in cards})

    async def healthz(self, request: Request) -> Response:
        return self.app.web.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        # a rebalance in progress does not make a worker unready: it is routine, and
        # flapping readiness would only stall rolling updates
        broker = self.state.broker
        if not broker.reachable:
            return self.app.web.json({"status": "broker unreachable",
                                      "reason": broker.reason}, status=503)
        if self.state.router_assigned and self.app.started and not self.app.should_stop:
            return self.app.web.json({"status": "ready"})
        return self.app.web.json({"status": "starting"}, status=503)

    async def status(self, request: Request) -> Response:
        """Role and progress of this worker, for operators and tests."""
        state = self.state
        stage = state.stage  # the identity stage, where this worker holds it
        caught_up = None
        if stage is not None and state.broker.reachable:
            # every input record that exists now is processed, nothing held back; the
            # page answers within a second, also when the broker does not
            with contextlib.suppress(TimeoutError):
                fed_all = await asyncio.wait_for(self.progress.fed_all_input(stage), 1.0)
                caught_up = fed_all and stage.held == 0
        return self.app.web.json({
            "owner": state.owner, "model_version": state.model_version,
            "routed": state.routed, "input_partitions": state.input_partitions,
            "next_offset": state.next_offset,
            "restored_from": state.restored_from, "commits": state.commits,
            "committed_offset": state.committed_offset,
            "standby_offset": None if state.standby is None else state.standby.next_offset,
            "took_over_from_standby": state.took_over_from_standby,
            "kept_over_rebalance": state.kept_over_rebalance,
            "store": self.config.state.store,
            "events_read": stage.stats.events_read if stage is not None else None,
            "held": stage.held if stage is not None else None,
            # forget requests applied: profiles removed (by the profile partitions held
            # here), events dropped for naming one (by the identity stage)
            "profiles_forgotten": sum(t.stats.profiles_forgotten for t in state.tasks.values()),
            "events_forgotten": (stage.stats.events_forgotten if stage is not None
                                 else None),
            "caught_up": caught_up,
            # the profile partitions held here, the trainer
            "task_partitions": state.task_partitions, "tasks_waiting": state.tasks_waiting,
            "tasks_caught_up": state.tasks_caught_up, "task_commits": state.task_commits,
            "tasks_waiting_for": state.tasks_waiting_for, "tasks_read_to": state.tasks_read_to,
            "tasks_from_standby": state.tasks_from_standby, "tasks_kept": state.tasks_kept,
            "task_standbys": sorted(state.task_standbys),
            "trainer": state.trainer,
            "trainer_learned_through": state.trainer_learned_through,
            "broker": {"reachable": state.broker.reachable, "reason": state.broker.reason,
                       "since": (None if not state.broker.since
                                 else format_time(state.broker.since))}})

    async def metrics_page(self, request: Request) -> Response:
        return self.app.web.bytes(self.metrics.exposition(),
                                  headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def personas_page(self, request: Request) -> Response:
        return self.app.web.html(render_page(self.state.current_cards(), list(self.history),
                                             self._spec.label, time.time()))

    async def personas_json(self, request: Request) -> Response:
        return self.app.web.json(self.state.current_cards())
