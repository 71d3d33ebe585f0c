"""Input formats: what trackers really send, read into touchpoint-shaped events.

An adapter turns one raw record (a Kafka message value, or one line of a file)
into zero or more events in the shape of touchpoint v1 (docs/contracts.md
section 1): plain dicts that :class:`~workers.core.touchpoints.TouchpointParser`
then validates like any touchpoint. A record the adapter cannot read at all
raises :class:`~workers.errors.InvalidEvent` (a dead letter with its reason); a
batch envelope yields one event per member. Adapters are pure: no clock, no I/O.

``intake.format`` names the adapter (``touchpoint`` by default); each format's
module documents its mapping table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, Protocol

Format = Literal["touchpoint", "segment", "snowplow", "ga4", "csv", "auto"]


class Adapter(Protocol):
    """Reads one raw record of its format into touchpoint-shaped events."""

    def events(self, raw: bytes) -> Iterator[dict[str, Any]]:
        """The record's events, in order; InvalidEvent when the record is unreadable."""
        ...
