"""Reading a raw record into events: format adapters, then touchpoint validation.

Reading needs nothing but the record and the configuration: no state that
another record changes, no order. So it can run wherever records enter (each
router of a worker deployment reads its own input partitions, in parallel)
while the identity stage, which decides in one order, only admits what was
read (:meth:`~workers.core.identity_stage.IdentityStage.feed_read`). ``run``
and ``replay`` read and admit in one step, with the same results.

A record reads as a list of items, each one event to count: a
:class:`~workers.core.touchpoints.Touchpoint`, or a :class:`Rejected` with the
dead letter's reason. An empty list is a record without an event (a CSV
header).
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from workers.config import Config
from workers.core.formats import Adapter, Format, Formats, InvalidMember
from workers.core.touchpoints import IntakeLimits, Touchpoint, TouchpointParser
from workers.errors import InvalidEvent


class Rejected(NamedTuple):
    """An event refused as read: the bytes for its dead letter, and why."""

    raw: bytes | None
    code: str
    detail: str


Item = Touchpoint | Rejected


class Intake:
    """Reads records of the configured formats into validated touchpoints.

    Its parser's counts of optional fields dropped or coerced (``parser.optional``)
    are of the records this intake read.
    """

    def __init__(self, config: Config) -> None:
        self.parser = TouchpointParser(IntakeLimits.from_config(config))
        self.formats = Formats(config)
        self._format = self.formats.of(None)  # of a record read from no topic (run, replay)

    def read(self, raw: bytes | None, topic: str | None = None,
             fmt: Format | None = None) -> list[Item]:
        """The events of one record from ``topic`` (its format is ``fmt``, else the
        topic's, else ``intake.format``)."""
        if fmt is None:
            fmt = self._format if topic is None else self.formats.of(topic)
        adapter = None if fmt == "touchpoint" or not raw else self.formats.adapter(fmt, raw)
        if adapter is not None:
            return self._adapted(adapter, raw or b"")
        try:
            return [self.parser.parse(raw)]
        except InvalidEvent as exc:
            return [Rejected(raw, exc.code, exc.detail)]

    def _adapted(self, adapter: Adapter, raw: bytes) -> list[Item]:
        """A record of another format: each of its events is an item (a batch member that
        cannot be read is a rejection of its own)."""
        try:
            members = list(adapter.events(raw))
        except InvalidEvent as exc:
            return [Rejected(raw, exc.code, exc.detail)]
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # a record shaped in a way the adapter did not foresee: a dead letter that says
            # so (a bug to report), never a stopped worker
            return [Rejected(raw, "unreadable", f"the {type(adapter).__name__} could not"
                             f" read this record ({type(exc).__name__}: {exc})")]
        items: list[Item] = []
        for member in members:
            if isinstance(member, InvalidMember):
                items.append(Rejected(member.raw, member.code, member.detail))
                continue
            own = raw if len(members) == 1 else orjson.dumps(member)
            try:
                items.append(self.parser.check(member, own, adapter.vouch(member)))
            except InvalidEvent as exc:
                items.append(Rejected(own, exc.code, exc.detail))
        return items
