"""``persona-stream worker``: the Kafka shell around the same core ``run`` uses.

Every worker plays four roles (README "Scaling and recovery" has the diagram):

* **router**: members of the consumer group ``<app>.router`` share the input
  partitions. A router reads each record (formats, validation) and forwards what it
  read, a bundle per input partition and batch, to the one-partition topic
  ``<app>-sequenced``, and commits its input offsets every
  ``kafka.commit_interval_seconds`` once that topic holds them.
* **identity stage** (:mod:`~workers.service.owner`): the one member of
  ``<app>.owner`` that holds ``<app>-sequenced`` runs the
  :class:`~workers.core.identity_stage.IdentityStage` over it: de-duplication,
  event-time order and every identity decision, in one place and one order, so N
  workers on P partitions end with exactly the groups of one process. It re-keys each
  event to its profile id and sends it to ``<app>-profiles``.
* **profile tasks** (:mod:`~workers.service.tasks`): members of ``<app>.profiles``
  share the partitions of ``<app>-profiles``, one
  :class:`~workers.core.partitioned.profile_task.ProfileTask` per partition: features,
  assessment, segment changes;
* **trainer** (:mod:`~workers.service.trainer`): the member of ``<app>.trainer``
  holding ``<app>-samples`` learns the one model all tasks use.

Every stage's state is a function of the input offset it reached: it commits what
changed to compacted changelog topics, in one Kafka transaction with the offset
(:mod:`workers.service.changelog`), and a replacement (another worker, or the same
one restarted) restores the changelogs and replays from there, recomputing lost
outputs with the same ``event_id`` s. Outputs are acknowledged before the commit (at
least once, exactly repeatable records) or committed in its transaction
(``kafka.processing_guarantee: exactly_once``).

faust runs the service: lifecycle, signals, timers and the web server, and none of
its own Kafka clients (:class:`WithoutKafka`). The records do not go through a
faust agent: faust hands an agent one message at a
time through queues and tasks (~120 us of event-loop work per message, measured)
and its agent commits are where its known at-least-once bugs live. Both roles
read with aiokafka's ``getmany`` (the client faust itself uses) and commit
explicitly after their outputs are acknowledged.

Where each rule lives (this module only wires them into the faust app):

* :mod:`~workers.service.router`: forwarding input records, input ends, consumer lag.
* :mod:`~workers.service.owner`: the identity stage's takeover, batch loop, commits
  and idle flush.
* :mod:`~workers.service.changelog`: the state's changelog topics, written and read.
* :mod:`~workers.service.background`: a role's commit, run while it goes on.
* :mod:`~workers.service.batch`: one batch through the identity stage (pure).
* :mod:`~workers.service.standby`: the standby copy of the changelogs.
* :mod:`~workers.service.cards`: following the persona cards, and adding the profile
  partitions' reports up into them.
* :mod:`~workers.service.web`: the public HTTP pages; :mod:`~workers.service.admin`: the
  pages that return identifiers, on a listener of their own.
* :mod:`~workers.service.clients`: the Kafka clients; :mod:`~workers.service.state`:
  what the roles share.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import faust
from faust.app.base import BootStrategy

from workers import collector
from workers.config import Config
from workers.errors import ConfigError, PersonaStreamError
from workers.io.kafka import provision, worker_topics
from workers.service.admin import AdminPages
from workers.service.cards import CardFollower, CardReports
from workers.service.clients import Clients
from workers.service.health import BrokerProbe
from workers.service.logs import logging_config, worker_log
from workers.service.metrics import Metrics
from workers.service.owner import Owner
from workers.service.persona_page import SizeHistory
from workers.service.router import Router
from workers.service.standby import StandbyReplica
from workers.service.state import WorkerState
from workers.service.tasks import ProfileTasks
from workers.service.trainer import TrainerRole
from workers.service.web import Pages

# How long a stopping worker waits for its roles' last commits: well under a second on
# a broker that answers; bounded, so SIGTERM ends the worker within Kubernetes' grace
# period (60 s in deploy/) also when the broker is gone.
STOP_SECONDS = 30


class Loop(Protocol):
    """A role's loop: it runs until ``stopping`` is set, within one read's wait."""

    async def run(self, stopping: asyncio.Event) -> None: ...


class Holder(Protocol):
    """A role holding state: at shutdown it commits it, so its next holder replays nothing."""

    async def close(self) -> None: ...


class WithoutKafka(BootStrategy):
    """faust's services without its Kafka clients: every record goes through the roles'
    aiokafka clients, so faust's consumer (a thread of its own polling a group of its own,
    with no agent to feed) and its producer were only connections, a group a restarted
    worker had to rejoin, and security settings to pass twice."""

    enable_kafka = False


class WorkerApp(faust.App):
    """The faust app, plus what the tests and benchmarks read of the worker it runs."""

    BootStrategy = WithoutKafka
    worker_state: WorkerState
    metrics: Metrics
    size_history: SizeHistory


class Roles(faust.Service):
    """Runs the role loops; stops them in an order that loses nothing."""

    def __init__(self, loops: Sequence[Loop], holders: Sequence[Holder], clients: Clients,
                 probe: BrokerProbe) -> None:
        super().__init__()
        self.roles = list(loops)
        self.holders = list(holders)
        self.clients = clients
        self.probe = probe
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Future[None]] = []

    async def on_started(self) -> None:
        self.tasks = [asyncio.ensure_future(role.run(self.stopping)) for role in self.roles]
        for task in self.tasks:
            task.add_done_callback(self._crash_on_error)

    def _crash_on_error(self, task: asyncio.Future[None]) -> None:
        """A role's loop that failed stops the worker: an operator's error (a state made
        under other settings...) as one line, a defect with its traceback."""
        error = None if task.cancelled() else task.exception()
        if error is not None and not self.stopping.is_set():
            if isinstance(error, PersonaStreamError):
                worker_log.error("worker stopped: %s", error)
            else:
                worker_log.error("worker loop failed", exc_info=error)
            self.crashing = asyncio.ensure_future(self.crash(error))

    async def on_stop(self) -> None:
        """The roles' last commits, within :data:`STOP_SECONDS`: with the broker gone they
        would wait for it forever and SIGTERM would never end the worker; what is not
        committed is replayed by the next holder, so giving up loses nothing."""
        self.stopping.set()  # each loop ends within one getmany wait
        try:
            await asyncio.wait_for(self._close(), STOP_SECONDS)
        except TimeoutError:
            worker_log.warning("stopped without a last commit: the broker did not take it"
                               f" within {STOP_SECONDS} s; the next holders replay from the"
                               " commit before")
        await self.probe.close()

    async def _close(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for holder in self.holders:  # each next holder starts from here: nothing to replay
            await holder.close()
        await self.clients.stop()


def check_listen(host: str, port: int, section: str = "metrics") -> None:
    """The pages' address (``section``.host and .port) can be served: a ConfigError now,
    not a traceback from faust or aiohttp."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except socket.gaierror:
        raise ConfigError(f"{section}.host {host!r} is not a host name or address") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{section}.port {port} is in use on {host}: another worker or"
                              " program listens there") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{section}.host {host} is not an address of this machine"
                              " (0.0.0.0 listens on all of them)") from None
        raise ConfigError(f"cannot listen on {section}.host:{section}.port {host}:{port}:"
                          f" {exc.strerror}") from None


def provision_topics(config: Config) -> None:
    """Create the contract's topics and the internal ones if missing."""
    provision(config, worker_topics(config))


def _faust_directory(config: Config) -> Path:
    """Where faust keeps its (unused: no faust tables) folder: with the state's store, or in
    the system's temporary folder; never the working directory it was started from."""
    base = config.state.directory or tempfile.gettempdir()
    return Path(base) / f"faust-{config.kafka.application_id}"


def build_app(config: Config) -> WorkerApp:
    """The faust app with the worker's roles, timers and pages; tests start it in-process."""
    k = config.kafka
    clients = Clients(config)
    app = WorkerApp(k.application_id, store="memory://", datadir=_faust_directory(config),
                    web_port=config.metrics.port, web_bind=config.metrics.host)
    state, metrics = WorkerState(), Metrics()
    router = Router(config, clients, state, metrics)
    owner = Owner(config, clients, state, metrics, router)
    pages = Pages(app, config, state, metrics, router)
    tasks = ProfileTasks(config, clients, state, metrics)
    trainer = TrainerRole(config, clients, state, metrics)
    reports = CardReports(config, clients, state)
    reports.register(app)
    loops: list[Loop] = [router, owner, CardFollower(config, clients, state), tasks,
                         trainer, reports]
    holders: list[Holder] = [owner, tasks, trainer]
    if config.state.standby:
        loops.append(StandbyReplica(config, clients, state))
    probe = BrokerProbe(config, state)
    router.register(app)
    owner.register(app)
    probe.register(app)
    pages.register()
    # an instance, started with the app like a decorated class (App._prepare_subservice)
    app.service(Roles(loops, holders, clients, probe))  # type: ignore[arg-type]
    app.service(AdminPages(config, state))  # type: ignore[arg-type]
    app.worker_state, app.metrics, app.size_history = state, metrics, pages.history
    return app



def run_worker(config: Config) -> int:
    """Blocks until SIGTERM/SIGINT; faust shuts down gracefully on either. A role that
    stopped the worker with an operator's error (:meth:`Roles._crash_on_error`) ends it
    with that error, so the CLI says it in one line with its exit code (mode's worker
    exits 1 with no message)."""
    check_listen(config.metrics.host, config.metrics.port)
    check_listen(config.admin.host, config.admin.port, "admin")
    provision_topics(config)  # an unreachable broker: BrokerError, one line from the CLI
    collector.freeze_after_full_collections()
    app = build_app(config)
    worker = faust.Worker(app, loglevel=config.metrics.log_level.lower(),
                          logging_config=logging_config(config.metrics.log_level))
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if isinstance(worker.crash_reason, PersonaStreamError):
            raise worker.crash_reason from None
        raise
    return 0
