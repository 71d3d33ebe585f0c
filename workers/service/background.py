"""A role's commit, run in a task of its own while the role goes on with its next batch.

The owner, the profile tasks and the routers send a batch's records, then await their
acknowledgements and commit in the background: the broker writes one batch while the
role works on the next. One commit at a time, in order; a failed one is raised at the
role's next step (or logged, where the role is letting its partitions go).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from workers.service.logs import worker_log

Role = TypeVar("Role")


def skipped_while_the_broker_is_away(
        timer: Callable[[Role], Awaitable[None]]) -> Callable[[Role], Awaitable[None]]:
    """A timer that sends a snapshot (persona cards, card reports): a round the broker
    does not take is skipped, and the next one sends afresh. Its error would otherwise
    stop the whole worker about a minute into an outage (aiokafka's send gives up
    waiting for the topic's metadata after 40 s); the broker probe already says the
    broker is gone."""

    @functools.wraps(timer)
    async def round_of(role: Role) -> None:
        with contextlib.suppress(KafkaError):  # the next interval sends again
            await timer(role)

    return round_of


class CommitInterval:
    """When a role's next commit is due: ``kafka.commit_interval_seconds`` (wall clock)
    after its last one. Every role commits at this pace; a role that must commit at once
    (another stage waits for what it sent) does so besides."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.seconds

    def restart(self) -> None:
        """A commit is taken now: the next is due an interval later."""
        self._last = time.monotonic()


class BackgroundCommit:
    """The commit under way, if any. ``failed``: a commit was refused (a refused output
    marks its :class:`~workers.service.emitter.Emitter` failed), so the state is ahead of
    what is durable: it is not committed, nor any after it, and the role's partitions are
    replayed by their next holder."""

    def __init__(self, lost: str) -> None:
        self._lost = lost  # the warning when a failure is logged rather than raised
        self._task: asyncio.Task[None] | None = None
        self.failed = False

    def start(self, commit: Coroutine[Any, Any, None]) -> None:
        """Run ``commit``; the one before must be :meth:`settled` first."""
        assert self._task is None, "one commit at a time"
        self._task = asyncio.create_task(commit)

    async def check(self) -> None:
        """Raise a failure of a commit that has ended, without waiting for one under way."""
        if self._task is not None and self._task.done():
            await self.settled()

    async def settled(self, *, quiet: bool = False) -> None:
        """The commit under way, if any, is done; its failure is raised (logged: ``quiet``)."""
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await task
        except Exception as exc:
            self.failed = True
            if not quiet:
                raise
            worker_log.warning(self._lost, extra={"error": repr(exc)})
