"""Segment changes as the audience calls marketing tools take: Segment-spec track and identify.

Segment Engage and RudderStack audiences reach their destinations as an
``Audience Entered`` or ``Audience Exited`` *track* call and an *identify* call
with one boolean trait per audience, all keyed by an audience key a marketer
picked. Braze, Iterable, MoEngage and mParticle turn those into add/remove
membership calls. :func:`audience_calls` derives them from one
``segment_change/v1`` record, whatever produced it, so they follow a segment
change exactly (deterministic ``messageId``s; redeliveries are the same calls).

A segment's *audience key* must outlive the segment's generated name, which
changes when the model moves. :class:`AudienceKeys` gives each segment id the
key chosen in ``audiences.keys``, else a slug of the name it had when first
seen, recorded once in ``born`` (plain data, saved with the pipeline's state).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from workers.core.records import AudienceCall, SegmentChange, SegmentRef

ENTERED = "Audience Entered"
EXITED = "Audience Exited"
KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a trait name every destination accepts
LIBRARY = {"name": "persona-stream"}


def slug(name: str) -> str:
    """``"Deal Hunters (mobile)"`` -> ``"deal_hunters_mobile"``: a valid :data:`KEY_RE`."""
    text = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not text or not text[0].isalpha():
        text = f"segment_{text}".rstrip("_")
    return text[:64].rstrip("_")


class AudienceKeys:
    """The stable audience key of each segment id.

    ``born`` maps every segment id seen so far to the key it got at birth; it is all
    the state there is (ints and strings), so it pickles, and reads back, as data.
    """

    def __init__(self) -> None:
        self.born: dict[int, str] = {}

    def see(self, segment: SegmentRef, chosen: Mapping[int, str]) -> None:
        """Give a segment first seen now its default key: the slug of its current name,
        made unique with its id when another audience has that key already."""
        sid = segment["id"]
        if sid in self.born:
            return
        key = slug(segment["name"])
        taken = set(self.born.values()) | set(chosen.values())
        self.born[sid] = key if key not in taken else f"{key[:54]}_{sid}"

    def resolved(self, chosen: Mapping[int, str]) -> dict[int, str]:
        """Every seen segment's key: the marketer's choice over the key given at birth."""
        return {sid: chosen.get(sid, key) for sid, key in self.born.items()}


def audience_calls(change: SegmentChange, keys: Mapping[int, str]) -> list[AudienceCall]:
    """The calls one segment change makes: ``Audience Exited`` for the segment left (if
    any), ``Audience Entered`` for the one joined (none when a merge announces the same
    segment again, or a ``forget`` leaves no segment), then an identify whose traits
    say, for every audience in ``keys``, whether the person is in it now (so a merge
    that absorbed a member of another audience takes that membership back)."""
    new: SegmentRef | None = change["segment"]
    old = change["previous_segment"]
    who, email = _who(change)
    context: dict[str, Any] = {"library": LIBRARY}
    if email is not None:
        context["traits"] = {"email": email}
    base = {**who, "timestamp": change["occurred_at"], "context": context}
    calls: list[AudienceCall] = []
    now = None if new is None else new["id"]
    if old is not None and old["id"] != now:
        calls.append(_track(change, EXITED, old, keys[old["id"]], False, base))
    if new is not None and (old is None or old["id"] != now):
        calls.append(_track(change, ENTERED, new, keys[new["id"]], True, base))
    traits: dict[str, Any] = {key: sid == now for sid, key in sorted(keys.items())}
    if email is not None:
        traits["email"] = email
    identify: dict[str, Any] = {"type": "identify",
                                "messageId": f"{change['event_id']}:identify",
                                "traits": traits, **base}
    calls.append(cast(AudienceCall, identify))
    return calls


def _who(change: SegmentChange) -> tuple[dict[str, str], str | None]:
    """``userId`` when the profile has one, else its profile id as ``anonymousId`` (the
    spec needs one of them); and the email a destination matches on, if known. Both are
    SHA-256 hex when ``output.hash_identifiers`` hashed the change's identifiers."""
    ids = change["identifiers"]
    user = ids.get("user_id")
    who = {"userId": user[0]} if user else {"anonymousId": change["profile_id"]}
    emails = ids.get("email")
    return who, (emails[0] if emails else None)


def _track(change: SegmentChange, event: str, segment: SegmentRef, key: str, member: bool,
           base: dict[str, Any]) -> AudienceCall:
    suffix = "entered" if member else "exited"
    track: dict[str, Any] = {
        "type": "track", "event": event, "messageId": f"{change['event_id']}:{suffix}",
        "properties": {"audience_key": key, key: member, "audience_name": segment["name"],
                       "segment_id": segment["id"], "reason": change["reason"],
                       "model_version": change["model_version"]},
        **base}
    return cast(AudienceCall, track)
