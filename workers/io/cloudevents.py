"""Every record the product writes to Kafka, as a message: key, JSON value, and
CloudEvents headers (the Kafka protocol binding's binary mode).

A consumer can route and filter on the headers without parsing the body, and
CloudEvents-aware tools read them as they are: ``ce_specversion``, ``ce_id``
(the record's ``event_id``; an audience call's ``messageId``; a hash of the
value for records with no id of their own), ``ce_type``, ``ce_source``,
``ce_time`` (when the record has an event time), ``content-type``, and
``schema``, the record's schema name (``segment_change/v1``...). Bodies are the
records of docs/contracts.md, unchanged. The constant headers of each kind are
built once; per record only the id and time are added.
"""

from __future__ import annotations

import hashlib
from typing import Literal, cast

import orjson

from workers.config import Config
from workers.core.records import (
    AudienceCall,
    Forget,
    IdentityMerge,
    Output,
    OutputKind,
    PersonaCard,
    SegmentChange,
    SegmentLineage,
)

Header = tuple[str, bytes]
Message = tuple[bytes | None, bytes, list[Header]]  # key, value, headers
Published = OutputKind | Literal["persona_card"]

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMAS: dict[Published, str] = {
    "segment_change": "segment_change/v1",
    "identity_merge": "identity_merge/v1",
    "dead_letter": "dead_letter/v1",
    "audience": "audience_call/v1",
    "segment_lineage": "segment_lineage/v1",
    "forget": "forget/v1",
    "persona_card": "persona_card/v1",
}


def event_type(kind: Published) -> str:
    """``ce_type``: ``persona-stream.segment_change.v1`` and so on."""
    return "persona-stream." + SCHEMAS[kind].replace("/", ".")


def source(config: Config) -> str:
    """``ce_source``: the deployment that wrote the record (its application id)."""
    return f"urn:persona-stream:{config.kafka.application_id}"


class Envelope:
    """Turns output records and persona cards into Kafka messages with their headers."""

    def __init__(self, config: Config) -> None:
        origin = source(config).encode()
        self._constant: dict[Published, list[Header]] = {
            kind: [("ce_specversion", SPEC_VERSION.encode()),
                   ("ce_type", event_type(kind).encode()), ("ce_source", origin),
                   ("content-type", CONTENT_TYPE.encode()), ("schema", name.encode())]
            for kind, name in SCHEMAS.items()}

    def message(self, out: Output) -> Message:
        value = orjson.dumps(out.record)
        kind = out.kind
        if kind == "audience":
            call = cast(AudienceCall, out.record)
            ident, time = call["messageId"], call["timestamp"]
        elif kind == "dead_letter":
            ident, time = _value_id(value), None
        elif kind == "forget":
            forget = cast(Forget, out.record)
            ident, time = forget["event_id"], forget["requested_at"]
        else:
            record = cast(SegmentChange | IdentityMerge | SegmentLineage, out.record)
            ident, time = record["event_id"], record["occurred_at"]
        headers = [*self._constant[kind], ("ce_id", ident.encode())]
        if time is not None:
            headers.append(("ce_time", time.encode()))
        return (None if out.key is None else out.key.encode()), value, headers

    def card(self, card: PersonaCard) -> Message:
        """A persona card for the compacted personas topic, keyed by its segment id."""
        value = orjson.dumps(card)
        return (str(card["segment_id"]).encode(), value,
                [*self._constant["persona_card"], ("ce_id", _value_id(value).encode())])


def _value_id(value: bytes) -> str:
    """An id for a record that has none: equal records (a card published again
    unchanged) share it, as CloudEvents duplicates should."""
    return hashlib.blake2b(value, digest_size=16).hexdigest()
