"""Forgetting a person (GDPR article 17): the forget list, and the requests that fill it.

The forget list holds one hash per identifier ever forgotten, never a raw value:
HMAC-SHA256 under ``identity.pseudonymise_key`` when one is configured, else
SHA-256, of ``type:value`` with the value as the identity graph holds it (so with
``identity.pseudonymise`` the hash of the keyed hash intake made). An event naming
a listed identifier is dropped at intake, so no backfill brings the person back.

A request names identifiers only as such hashes too: the ``forget-requests`` topic
(kept as long as history is) holds no identifier in the clear. The pipeline finds
the person by hashing the identifiers it holds (a scan, once per request: rare
work, paid when asked) rather than keeping a second index of every identifier.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from workers.config import Config
from workers.core.identity import IdentityGraph, IdentityRules, lookup_keys
from workers.core.privacy import Pseudonymiser
from workers.errors import InvalidEvent

REQUEST_SCHEMA = "forget_request/v1"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ForgetRequest:
    """``forget_request/v1``: forget the person these identifier hashes name."""

    request_id: str
    hashes: tuple[str, ...]
    requested_at: str  # RFC 3339, stamped by whoever asked
    reason: str

    def record(self) -> bytes:
        return orjson.dumps({"schema": REQUEST_SCHEMA, "request_id": self.request_id,
                             "identifier_hashes": list(self.hashes),
                             "requested_at": self.requested_at, "reason": self.reason})


def parse_request(raw: bytes | None) -> ForgetRequest:
    """A request record, or :class:`InvalidEvent` saying what is wrong with it."""
    try:
        data: Any = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        raise InvalidEvent("bad_forget_request", "a forget request is not JSON") from None
    if not isinstance(data, dict) or data.get("schema") != REQUEST_SCHEMA:
        raise InvalidEvent("bad_forget_request", f"a forget request has schema {REQUEST_SCHEMA}")
    hashes = data.get("identifier_hashes")
    fields = (data.get("request_id"), data.get("requested_at"), data.get("reason", ""))
    if (not isinstance(hashes, list) or not hashes
            or not all(isinstance(h, str) and len(h) == 64 and set(h) <= _HEX for h in hashes)
            or not all(isinstance(f, str) for f in fields) or not fields[0]):
        raise InvalidEvent("bad_forget_request", "a forget request needs request_id,"
                           " requested_at and identifier_hashes (64 hex digits each)")
    return ForgetRequest(str(fields[0]), tuple(hashes), str(fields[1]), str(fields[2]))


class ForgetList:
    """The hashes of every forgotten identifier, each with when it was asked for."""

    __slots__ = ("_key", "changed", "entries")

    @classmethod
    def for_config(cls, config: Config) -> ForgetList:
        """Keyed by ``identity.pseudonymise_key`` when there is one (pseudonymising or not)."""
        key = config.identity.pseudonymise_key
        return cls(None if key is None else key.reveal().encode())

    def __init__(self, key: bytes | None) -> None:
        self._key = None if key is None else hmac.new(key, digestmod=hashlib.sha256)
        self.entries: dict[str, str] = {}  # hash -> requested_at
        self.changed: set[str] = set()  # added since the state's last commit took them

    def __len__(self) -> int:
        return len(self.entries)

    def hash(self, id_type: str, value: str) -> str:
        text = f"{id_type}:{value}".encode()
        if self._key is None:
            return hashlib.sha256(text).hexdigest()
        mac = self._key.copy()
        mac.update(text)
        return mac.hexdigest()

    def names(self, identity: Mapping[str, str]) -> bool:
        """Whether any of these identifiers is forgotten (ask only when the list is not
        empty: it costs one hash per identifier)."""
        entries = self.entries
        return any(self.hash(t, v) in entries for t, v in identity.items())

    def add(self, hashes: Iterable[str], requested_at: str) -> None:
        entries = self.entries
        for h in hashes:
            if h not in entries:
                entries[h] = requested_at
                self.changed.add(h)

    def take_changed(self) -> list[tuple[str, str]]:
        changed, self.changed = self.changed, set()
        return [(h, self.entries[h]) for h in sorted(changed)]


def junk_keys(keys: Iterable[str], config: Config) -> list[str]:
    """The keys whose value is on the identity blocklist: no one's identifier, and one
    listed would drop the events of everyone whose tracker sends it."""
    ident = config.identity
    graph = IdentityGraph(IdentityRules.from_config(ident.limits, ident.blocklist_values,
                                                    ident.blocklist_patterns))
    return [key for key in keys
            if any(graph.is_junk(value) for _, value in lookup_keys(key, ident.limits))]


def request_hashes(keys: Iterable[str], config: Config) -> tuple[str, ...]:
    """The hashes a request for ``keys`` carries: each key ``type:value``, or a bare value
    of any type (one hash per type); pseudonymised, both the keyed hash of the value and
    the value itself (it may be such a hash already, as outputs show it)."""
    ident = config.identity
    types = list(ident.limits)
    forget_list = ForgetList.for_config(config)
    secret = ident.pseudonymise_key
    pseudonymiser = None if secret is None or not ident.pseudonymise else Pseudonymiser(
        secret.reveal().encode(), IdentityGraph(IdentityRules.from_config(ident.limits, (), ())))
    out: list[str] = []
    for key in keys:
        for id_type, value in lookup_keys(key, types):
            values = (value,) if pseudonymiser is None else (pseudonymiser.value(value), value)
            out.extend(forget_list.hash(id_type, v) for v in values)
    return tuple(dict.fromkeys(out))
