"""Keeping identifiers in: pseudonymised at intake, redacted from dead letters.

* :class:`Pseudonymiser` replaces an event's identifier values by
  ``HMAC-SHA256(key, value)`` (hex) before the event reaches the de-dup window, the
  event-time buffer, the identity graph or any output, so raw emails and phone
  numbers never sit in state. The same value always gives the same hash, so stitching
  makes the same groups as on the raw values. Values on the identity blocklist are
  left as they are, for the identity step to recognise and drop (they are junk, no
  one's identifier).
* :func:`redact` takes identifier values out of a dead letter's raw record
  (``intake.dead_letter_raw: redact``): whatever the record's format, and also when it
  is not JSON or was cut.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from workers.core.identity import IdentityGraph
from workers.core.touchpoints import Touchpoint

REDACTED = b"[redacted]"

# the members whose values are identifiers, in every input format: the touchpoint's
# identity types, Segment's userId/anonymousId/previousId, Snowplow's user and cookie
# ids, GA4's user_pseudo_id; matched case-insensitively, in JSON ("key": "value")
IDENTIFIER_KEYS = ("user_id", "userid", "anonymous_id", "anonymousid", "previousid",
                   "email", "phone", "crm_id", "device_id", "deviceid", "domain_userid",
                   "network_userid", "user_pseudo_id")
_MEMBER = re.compile(
    rb'("(?:' + b"|".join(k.encode() for k in IDENTIFIER_KEYS) + rb')"\s*:\s*)'
    rb'"(?:[^"\\]|\\.)*"', re.IGNORECASE)
# an email address anywhere (also URL-encoded, name%40example.com)
_EMAIL = re.compile(rb"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# a phone number in international form anywhere: "+", then 7..15 digits, at most two
# spaces, dots, dashes or brackets between two of them (+44 (0)20 7946 0958); a time
# offset such as +01:00 is not one
_PHONE = re.compile(rb"\+\d(?:[ ().-]{0,2}\d){6,14}")


def redact(raw: bytes) -> bytes:
    """``raw`` with identifier values replaced by ``[redacted]``: the values of JSON members
    named in :data:`IDENTIFIER_KEYS` (the value becomes the string ``"[redacted]"``), then
    every email address and ``+``-prefixed phone number left, in any text."""
    raw = _MEMBER.sub(rb'\1"' + REDACTED + rb'"', raw)
    raw = _EMAIL.sub(REDACTED, raw)
    return _PHONE.sub(REDACTED, raw)


class Pseudonymiser:
    """Keyed hashes of identifier values; one per pipeline, built from its configured key."""

    __slots__ = ("_graph", "_keyed")

    def __init__(self, key: bytes, graph: IdentityGraph) -> None:
        # the HMAC with its key already absorbed: a copy per value costs half a new one
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self._graph = graph

    def value(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` under the key, as 64 hex digits."""
        mac = self._keyed.copy()
        mac.update(value.encode())
        return mac.hexdigest()

    def event(self, tp: Touchpoint) -> Touchpoint:
        """``tp`` with its identity hashed, in the event and its data; the bytes it came in
        are let go (a later dead letter shows the data: :meth:`Touchpoint.record`)."""
        graph = self._graph
        identity = {}
        for id_type, value in tp.identity.items():
            hashed = self.value(value)
            # a hash the graph knows came from a value that was no junk: the blocklist is
            # only asked about the others, as the identity step itself does
            known = graph.owner(id_type, hashed) is not None
            identity[id_type] = hashed if known or not graph.is_junk(value) else value
        return Touchpoint({**tp.data, "identity": identity}, tp.event_id, tp.ts, tp.type,
                          identity)
