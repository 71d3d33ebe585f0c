"""Input formats: what trackers really send, read into touchpoint-shaped events.

An adapter turns one raw record (a Kafka message value, or one line of a file)
into zero or more events in the shape of touchpoint v1 (docs/contracts.md
section 1): plain dicts that :class:`~workers.core.touchpoints.TouchpointParser`
then validates like any touchpoint. A record the adapter cannot read at all
raises :class:`~workers.errors.InvalidEvent` (one dead letter with its reason);
a batch envelope yields one item per member, and a member that cannot be read
is yielded as an :class:`InvalidMember` (its own dead letter; the batch goes
on). A line with no event (a CSV header) yields nothing. Adapters are pure: no
clock, no I/O. Each format's module documents its mapping table
(docs/formats/).

``intake.format`` names the format of every source, ``intake.formats`` a format
per input topic, and ``run``/``replay`` take ``--format``; ``auto`` tells the
format of each record from what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from workers.config import Config
from workers.config import InputFormat as Format
from workers.errors import InvalidEvent

Adapted = dict[str, Any]


class InvalidMember(InvalidEvent):
    """One batch member that cannot be read; the others of its batch still are."""

    def __init__(self, code: str, detail: str, index: int, raw: bytes) -> None:
        super().__init__(code, detail)
        self.index = index
        self.raw = raw  # the member alone, for its dead letter


class Adapter(Protocol):
    """Reads one raw record of its format into touchpoint-shaped events."""

    def events(self, raw: bytes) -> Iterator[Adapted | InvalidMember]:
        """The record's events, in order; InvalidEvent when the record is unreadable."""
        ...

    def vouch(self, event: Adapted) -> float | None:
        """The time of one of this adapter's events when the adapter vouches that the
        intake would find nothing to refuse, repair or bound in it, so that it need not
        look (``TouchpointParser.check(..., vouched=...)``); None: the intake checks it as
        any touchpoint. An adapter that builds no event it can vouch for keeps this."""
        return None


class Formats:
    """The adapter of each format, made on first use, and the choice of format."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.default: Format = config.intake.format
        self.by_topic: dict[str, Format] = dict(config.intake.formats)
        self._adapters: dict[str, Adapter] = {}

    def of(self, topic: str | None, asked: Format | None = None) -> Format:
        """The format of a record: asked for, else its topic's, else the default."""
        if asked is not None:
            return asked
        if topic is not None:
            return self.by_topic.get(topic, self.default)
        return self.default

    def adapter(self, fmt: Format, raw: bytes) -> Adapter | None:
        """The adapter for ``fmt`` (``auto``: for what ``raw`` looks like); None means
        the record is a touchpoint, for the parser itself."""
        if fmt == "auto":
            fmt = sniff(raw)
        if fmt == "touchpoint":
            return None
        adapter = self._adapters.get(fmt)
        if adapter is None:
            adapter = self._adapters[fmt] = _make(fmt, self.config)
        return adapter


def sniff(raw: bytes) -> Format:
    """The format a record looks like, from a few bytes: cheap, and wrong only for
    records no format reads (they become dead letters either way)."""
    head = raw[:4096]
    if head.lstrip()[:1] == b"{":
        if b'"occurred_at"' in head and b'"event_id"' in head:
            return "touchpoint"
        if b'"event_timestamp"' in head and b'"event_name"' in head:
            return "ga4"
        if b'"collector_tstamp"' in head or b'"app_id"' in head:
            return "snowplow"
        if (b'"messageId"' in head or b'"anonymousId"' in head or b'"userId"' in head
                or b'"batch"' in head):
            return "segment"
        return "touchpoint"
    if head.count(b"\t") >= 100:
        return "snowplow"
    return "csv" if b"," in head or b";" in head else "touchpoint"


def _make(fmt: Format, config: Config) -> Adapter:
    from workers.core.formats.csv import CsvAdapter
    from workers.core.formats.ga4 import Ga4Adapter
    from workers.core.formats.segment import SegmentAdapter
    from workers.core.formats.snowplow import SnowplowAdapter

    if fmt == "segment":
        return SegmentAdapter(config)
    if fmt == "snowplow":
        return SnowplowAdapter(config)
    if fmt == "ga4":
        return Ga4Adapter(config)
    return CsvAdapter(config)
