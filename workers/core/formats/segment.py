"""Segment Spec / RudderStack calls read into touchpoints (docs/formats/segment.md).

One record is one call (track, identify, page, screen, alias, group) or a batch
envelope ``{"batch": [...]}`` (Segment's and RudderStack's), whose ``context``
and ``sentAt`` apply to every member that lacks its own.

API, and why: :meth:`SegmentAdapter.events` raises :class:`InvalidEvent` when
the *record* cannot be used (empty, too large, not a JSON object, ``batch`` not
an array, or a single call that cannot be read): the record is the dead letter.
A batch member that cannot be read does not spoil its neighbours: it is
*yielded* as an :class:`InvalidMember` (an ``InvalidEvent`` with the member's
index and its own bytes), so the caller dead-letters each bad member on its own
and goes on with the good ones. Everything else yielded is a touchpoint-shaped
dict for ``TouchpointParser.check``; :meth:`SegmentAdapter.vouch` gives the time of
each one the adapter saw nothing in to refuse, repair or bound while building it (the
usual call), and the intake then skips its checks. A record may be up to
``intake.segment.max_batch_bytes``, each call up to ``intake.max_event_bytes``;
the envelope's two levels of nesting are not counted against ``intake.max_depth``
(a single call, parsed before it is known not to be a batch, gets them too).

What is not mapped: ``context.ip`` (personal data, and no touchpoint field needs
it); a ``context.location.country`` that is not an ISO 3166-1 alpha-2 code
(Segment sends names such as "United States"); personal traits (names,
username, birthday, street address...: ``intake.segment.traits``). Values the
adapter cannot translate (an unlisted ``channel`` or ``context.device.type``, a
string revenue) are passed on as they are, for the intake to check and count.
Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import orjson

from workers.config import Config, SegmentConfig
from workers.core.formats import Adapter, InvalidMember
from workers.core.repair import CHANNELS, DEVICE_TYPES, OptionalFields
from workers.core.touchpoints import (
    TYPE_RE,
    IntakeLimits,
    TimeParser,
    check_size,
    decode_object,
    format_time,
    is_rfc3339,
    parse_time,
)
from workers.errors import InvalidEvent

CallType = Literal["track", "identify", "page", "screen", "alias", "group"]
CALL_TYPES: tuple[CallType, ...] = ("track", "identify", "page", "screen", "alias", "group")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_TYPE = re.compile(r"[^a-z0-9.:-]+")
# ISO 8601 forms trackers send beside RFC 3339: +0000, +00, no seconds, a comma, no
# offset at all (Segment's timestamps are UTC)
_ISO_RE = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2})(:\d{2}(?:[.,]\d+)?)?"
                     r"(?:([Zz])|([+-]\d{2}):?(\d{2})?)?")
_COMPANY_KEYS = {"name": "company_name", "id": "company_id"}
_NAMES_REMEMBERED = 10_000  # names, channels, countries: a small vocabulary; bounded all the same
_NAME_REMEMBERED_LEN = 256  # a longer value is worked out each time, not kept
_ENVELOPE_DEPTH = 2  # {"batch": [ ... ]}: a member sits two levels down
_KINDS: dict[str, CallType] = {kind: kind for kind in CALL_TYPES}  # the type as usually sent
_EMPTY: Mapping[str, Any] = {}
_PAGES = ("page", "screen")


@dataclass(frozen=True, slots=True)
class _Envelope:
    """What a batch gives each of its members."""

    context: Mapping[str, Any]
    sent_at: Any


_NO_ENVELOPE = _Envelope({}, None)


class _Remembered(dict[str, Any]):
    """What ``work_out`` makes of a value as sent (an event name, a channel, a country),
    remembered: such values are few, and a look-up costs less than the work (a ``lower()``
    and a table, a snake case...). Bounded in entries and in the length of a value kept."""

    __slots__ = ("work_out",)

    def __init__(self, work_out: Callable[[str], Any]) -> None:
        super().__init__()
        self.work_out = work_out

    def __missing__(self, value: str) -> Any:
        result = self.work_out(value)
        if len(self) < _NAMES_REMEMBERED and len(value) <= _NAME_REMEMBERED_LEN:
            self[value] = result
        return result


def snake_case(name: str) -> str:
    """An event name as a touchpoint type: "Video Played" and "videoPlayed" -> video_played."""
    return _NOT_TYPE.sub("_", _CAMEL.sub("_", name).lower()).strip("_")[:64].rstrip("_")


def parse_iso(value: Any) -> float:
    """An ISO 8601 time to epoch seconds; ValueError when it is none."""
    if type(value) is not str:
        raise ValueError(value)
    try:
        return parse_time(value)
    except ValueError:
        match = _ISO_RE.fullmatch(value.strip())
        if match is None:
            raise
    date, clock, seconds, zulu, hours, minutes = match.groups()
    offset = "Z" if zulu or hours is None else f"{hours}:{minutes or '00'}"
    return parse_time(f"{date}T{clock}{(seconds or ':00').replace(',', '.')}{offset}")


class SegmentAdapter(Adapter):
    """Reads Segment / RudderStack records; see the module docstring for the API."""

    def __init__(self, config: Config) -> None:
        seg = config.intake.segment
        self.limits = IntakeLimits.from_config(config)
        self._record_limits = replace(
            self.limits, max_event_bytes=max(seg.max_batch_bytes, self.limits.max_event_bytes),
            max_depth=self.limits.max_depth + _ENVELOPE_DEPTH)
        self._events = {snake_case(k): v for k, v in {**seg.events, **seg.custom_events}.items()}
        self._types = _Remembered(self._track_type)  # event name as sent -> type
        self._calls = {kind: seg.calls.get(kind, kind) for kind in CALL_TYPES}
        channels, devices = seg.channels, seg.device_types
        # a value not listed is passed on as it is, for the intake to check and count
        self._channels = _Remembered(lambda value: channels.get(value.lower(), value))
        self._library_channels = seg.library_channels
        self._device_types = _Remembered(lambda value: devices.get(value.lower(), value))
        self._countries = _Remembered(_country)
        self._time = TimeParser()
        self._identity_traits: Mapping[str, str] = seg.identity_traits
        self._trait_names = seg.traits
        self._bands = list(seg.employee_bands.items())
        self._revenue_keys = seg.revenue_keys
        self._alias_id = seg.alias_previous_id
        self._revenue = config.features.revenue_property
        self._conversions = frozenset(config.features.conversion_types)
        # the events of the record read last that need no check, and their times: a
        # single call's apart (the usual record), a batch's by id
        self._single: dict[str, Any] | None = None
        self._single_ts: float | None = None
        self._vouched: dict[int, tuple[dict[str, Any], float]] = {}

    def events(self, raw: bytes) -> Iterator[dict[str, Any] | InvalidMember]:
        """The record's touchpoints in order; bad batch members as InvalidMember."""
        self._single = None
        if self._vouched:
            self._vouched.clear()
        limits = self._record_limits
        data = decode_object(check_size(raw, limits), limits)
        if "batch" not in data:
            if len(raw) > self.limits.max_event_bytes:
                raise InvalidEvent("too_large", f"call is {len(raw)} bytes, limit is"
                                   f" {self.limits.max_event_bytes}")
            event, self._single_ts = self._adapt(data, _NO_ENVELOPE)
            self._single = event
            return iter((event,))
        return self._members(data)

    def _members(self, data: dict[str, Any]) -> Iterator[dict[str, Any] | InvalidMember]:
        """A batch's calls; a member that cannot be read as an InvalidMember."""
        vouched = self._vouched
        batch = data["batch"]
        if type(batch) is not list:
            raise InvalidEvent("wrong_type", "batch must be an array of calls")
        context = data.get("context")
        envelope = _Envelope(context if type(context) is dict else {}, data.get("sentAt"))
        for index, member in enumerate(batch):
            try:
                event, ts = self._member(member, envelope)
            except InvalidEvent as exc:
                yield InvalidMember(exc.code, f"batch[{index}]: {exc.detail}", index,
                                    orjson.dumps(member))
                continue
            if ts is not None:
                vouched[id(event)] = (event, ts)
            yield event

    def vouch(self, event: dict[str, Any]) -> float | None:
        """The time of an event of the record read last (as it was yielded), when
        :meth:`events` found, as it built it, nothing the intake would refuse, repair or
        bound (see :meth:`_adapt`); None otherwise. Held for one record only."""
        if event is self._single:
            return self._single_ts  # None when it was not vouched for
        entry = self._vouched.get(id(event))
        return entry[1] if entry is not None and entry[0] is event else None

    def _member(self, member: Any, envelope: _Envelope) -> tuple[dict[str, Any], float | None]:
        if type(member) is not dict:
            raise InvalidEvent("not_object", f"a JSON {type(member).__name__}, not a call")
        size = len(orjson.dumps(member))
        if size > self.limits.max_event_bytes:
            raise InvalidEvent("too_large", f"call is {size} bytes, limit is"
                               f" {self.limits.max_event_bytes}")
        return self._adapt(member, envelope)

    def _adapt(self, call: dict[str, Any],
               envelope: _Envelope) -> tuple[dict[str, Any], float | None]:
        """One call as a touchpoint-shaped dict, and its time when the intake would find
        nothing in it to refuse, repair or bound; InvalidEvent when it cannot be read.

        That verdict is cheap here, where each value is looked at anyway: ids and texts
        are strings, what a table maps to is valid; traits, which may have any keys and
        values, are vouched for when the intake's own repair would leave them as they are
        (``OptionalFields.leaves_traits``). In doubt (a value passed on as it is) the time
        is None and the intake checks the event as any touchpoint. Written for the usual
        call, a string in each field: one look per field, written out field by field (a
        loop over a table of fields, with its tuples, cost a tenth more per event,
        measured).
        """
        try:
            kind = _KINDS[call["type"]]
        except (KeyError, TypeError):  # none, not as usually sent, or not a string
            kind = _call_type(call)
        context = call.get("context")
        if type(context) is not dict:
            context = _EMPTY
        if envelope.context:
            context = {**envelope.context, **context}
        device = context.get("device")
        if type(device) is not dict:
            device = _EMPTY
        # the call's own ids (they win over ids found in traits, which come after);
        # ids_unsure: an id in identity may be other than a string of 1..256 characters
        identity: dict[str, Any] = {}
        ids_unsure = False
        for slot, value in (("device_id", device.get("id")),
                            ("anonymous_id", call.get("anonymousId")),
                            ("user_id", call.get("userId"))):
            if type(value) is str and 0 < len(value) <= 256:
                identity[slot] = value
            elif value is not None:
                _put(identity, slot, _identifier(value))
                ids_unsure = True
        if kind == "alias":
            # previousId is what the alias is about: it wins its slot over anonymousId
            _put(identity, self._alias_id, _identifier(call.get("previousId")))
            ids_unsure = True
        if "traits" in context or "traits" in call or kind == "group":
            traits = self._traits(call, kind, context, identity)
            ids_unsure = True
        else:
            traits = None
        if kind == "track":
            try:
                type_ = self._types[call["event"]]
            except (KeyError, TypeError):  # no name, or not a string
                type_ = self._track_type(call.get("event"))
        else:
            type_ = self._calls[kind]
        event_id = call.get("messageId")
        if type(event_id) is str and event_id:
            clean = len(event_id) <= 128
        else:
            event_id = _event_id(call)
            clean = type(event_id) is str and len(event_id) <= 128
        stamp = call.get("timestamp")
        ts = None
        if type(stamp) is str and len(stamp) <= 64:
            try:
                ts = self._time.read(stamp)  # RFC 3339 already: the intake reads it as it is
            except (ValueError, OverflowError):
                ts = None  # not (or not a real day): _occurred_at says what it is
        event: dict[str, Any] = {
            "event_id": event_id,
            "occurred_at": stamp if ts is not None else _occurred_at(call, envelope),
            "type": type_, "identity": identity}
        limits = self.limits
        clean = clean and ts is not None and limits.earliest <= ts <= limits.latest
        value = context.get("library")
        source = value.get("name") if type(value) is dict else None
        channel = call.get("channel")
        channel = self._channels[channel] if type(channel) is str and channel else None
        if channel is None and type(source) is str:
            channel = self._library_channels.get(source)
        if channel is not None:
            event["channel"] = channel
            clean = clean and channel in CHANNELS
        # device: what a table maps a type to is valid; the rest must be strings
        out: dict[str, Any] = {}
        value = device.get("type")
        if type(value) is str:
            value = self._device_types[value] if value else None
            if value:
                out["type"] = value
                clean = clean and value in DEVICE_TYPES
        elif value:  # not a string: passed on, for the intake to drop and count
            out["type"] = value
            clean = False
        value = context.get("os")
        value = value.get("name") if type(value) is dict else None
        if type(value) is str:
            if value:
                out["os"] = value
        elif value is not None:
            _put(out, "os", value)
            clean = False
        value = context.get("app")  # a mobile SDK's: often absent
        if value is not None:
            value = value.get("version") if type(value) is dict else None
            if type(value) is str:
                if value:
                    out["app_version"] = value
            elif value is not None:
                _put(out, "app_version", value)
                clean = False
        if out:
            event["device"] = out
            out = {}
        # context
        value = context.get("sessionId")
        if type(value) is str:
            if value:
                out["session_id"] = value
        elif value is not None:
            _put(out, "session_id", _identifier(value))
            clean = False
        page = context.get("page")
        if type(page) is not dict:
            page = _EMPTY
        props = call.get("properties")
        page_props = props if kind == "page" and type(props) is dict else _EMPTY
        value = page.get("url") or page_props.get("url")
        if type(value) is str:
            if value:
                out["page_url"] = value
        elif value is not None:
            _put(out, "page_url", value)
            clean = False
        value = page.get("referrer") or page_props.get("referrer")  # often absent
        if value is not None:
            if type(value) is str:
                if value:
                    out["referrer"] = value
            else:
                _put(out, "referrer", value)
                clean = False
        value = context.get("campaign")
        if type(value) is dict:
            picked: dict[str, Any] = {}
            clean = _strings(value, ("source", "medium", "name"), picked) and clean
            if picked:
                out["campaign"] = picked
        value = context.get("location")
        if type(value) is dict:
            picked = {}
            inner = value.get("country")
            inner = self._countries[inner] if type(inner) is str else None
            if inner is not None:
                picked["country"] = inner
            clean = _strings(value, ("region", "city"), picked) and clean
            if picked:
                out["geo"] = picked
        value = context.get("userAgent")
        if value is not None:
            _put(out, "user_agent", value)
            clean = clean and type(value) is str
        value = context.get("locale")
        if value is not None:
            _put(out, "locale", value)  # not a touchpoint field: not checked
        if out:
            event["context"] = out
        if props is not None and type(props) is not dict:
            _put(event, "properties", props)
            clean = False  # not an object: the intake says so
        else:
            if kind in _PAGES or type_ in self._conversions:
                props = self._additions(call, kind, type_, props)
            if props:
                event["properties"] = props
                clean = clean and len(props) <= limits.max_keys
                if clean and self._revenue in props:  # an amount the intake takes as it is
                    amount = props[self._revenue]
                    clean = ((type(amount) is int or type(amount) is float)
                             and math.isfinite(amount) and abs(amount) <= limits.max_amount)
        if traits:
            event["traits"] = traits
        if type(source) is str:
            if source:
                event["source"] = source
        elif source is not None:
            _put(event, "source", source)
            clean = False
        if not clean or not identity:
            return event, None
        # traits have any keys and values: the intake's own repair says whether it would
        # change them (the usual traits, from a tracker that sends them well, it would not)
        if traits and not (len(traits) <= limits.max_keys
                           and OptionalFields.leaves_traits(traits)):
            return event, None
        if ids_unsure:
            for value in identity.values():
                if type(value) is not str or len(value) > 256:
                    return event, None
        return event, ts

    def _track_type(self, name: Any) -> str:
        """A track call's type from its event name."""
        if type(name) is not str or not name:
            raise InvalidEvent("missing_field", "a track call needs its event name")
        key = snake_case(name)
        if not key:
            raise InvalidEvent("bad_value", f"event {name!r} has no letter or digit to"
                               " name a touchpoint type")
        return self._events.get(key, key)

    def _additions(self, call: Mapping[str, Any], kind: CallType, type_: str,
                   props: dict[str, Any] | None) -> dict[str, Any]:
        """A page's or a screen's properties with its name and category, a conversion's
        with its amount (each added on a copy: the call's own object stays as it was)."""
        props = props or {}
        if kind in _PAGES:
            props = _with(props, "name", call.get("name"))
            props = _with(props, "content_category", call.get("category"))
        if type_ in self._conversions and self._revenue not in props:
            amount = next((props[k] for k in self._revenue_keys if k in props), None)
            props = _with(props, self._revenue, amount)
        return props

    def _traits(self, call: Mapping[str, Any], kind: CallType, context: Mapping[str, Any],
                identity: dict[str, Any]) -> dict[str, Any]:
        """Person traits (context.traits, an identify's traits) and a group's firmographics.

        Identifier traits (email, phone) go to ``identity`` instead.
        """
        out: dict[str, Any] = {}
        traits = context.get("traits")
        if type(traits) is dict:
            self._person(traits, out, identity)
        traits = call.get("traits")
        if kind == "group":
            if type(traits) is dict:
                self._company(traits, out)
            _put(out, "company_id", _identifier(call.get("groupId")))
        elif type(traits) is dict:
            self._person(traits, out, identity)
        return out

    def _person(self, traits: Mapping[str, Any], out: dict[str, Any],
                identity: dict[str, Any]) -> None:
        for key, value in traits.items():
            id_type = self._identity_traits.get(key)
            if id_type is not None:
                if id_type in identity:
                    continue  # the call's own ids and earlier traits win
                if type(value) is str and value:
                    identity[id_type] = value
                else:
                    _put(identity, id_type, _identifier(value))
            elif key == "address" and type(value) is dict:
                _put(out, "city", value.get("city"))
                _put(out, "region", value.get("state") or value.get("region"))
                _put(out, "country", _country(value.get("country")))
            elif key == "company" and type(value) is dict:
                self._company(value, out)
            else:
                name = self._trait_names.get(key, key)
                if name is not None:  # None: personal data, left out
                    out[name] = value

    def _company(self, traits: Mapping[str, Any], out: dict[str, Any]) -> None:
        """Group (or traits.company) traits as the person's firmographics."""
        for key, value in traits.items():
            if key in ("employees", "employee_count") and type(value) in (int, float):
                _put(out, "company_size", self._band(value))
            elif key == "industry" and type(value) is str:
                out["industry"] = value.lower()
            elif key in _COMPANY_KEYS:
                out[_COMPANY_KEYS[key]] = value
            elif key in self._identity_traits or self._trait_names.get(key, "") is None:
                continue  # the company's contact details, or personal data
            else:
                out[f"company_{snake_case(key) or 'trait'}"] = value

    def _band(self, employees: float) -> str | None:
        return next((band for band, most in self._bands if employees <= most), None)



def _call_type(call: Mapping[str, Any]) -> CallType:
    """The call's ``type``; a call posted to /v1/track etc. may have none: inferred."""
    kind = call.get("type")
    if kind is None:
        kind = ("track" if "event" in call else "alias" if "previousId" in call
                else "group" if "groupId" in call else None)
        if kind is None:
            raise InvalidEvent("missing_field", "the call has no type (track, identify,"
                               " page, screen, alias, group)")
    if type(kind) is not str or kind.lower() not in CALL_TYPES:
        raise InvalidEvent("bad_value", f"type {kind!r} is not a Segment call type")
    return cast(CallType, kind.lower())


def _event_id(call: Mapping[str, Any]) -> Any:
    """messageId, else a hash of the call (sorted keys: the same call, the same id)."""
    message_id = _identifier(call.get("messageId"))
    if message_id is not None:
        return message_id
    digest = hashlib.sha256(orjson.dumps(call, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"seg-{digest[:32]}"


def _occurred_at(call: Mapping[str, Any], envelope: _Envelope) -> str:
    """Segment's rule: timestamp; else originalTimestamp corrected for the device's clock
    by receivedAt - sentAt when both are there; else originalTimestamp; else receivedAt."""
    try:
        stamp = call.get("timestamp")
        if stamp is not None:
            if type(stamp) is str and is_rfc3339(stamp):
                return stamp  # the common case: the intake reads it as it is
            return format_time(parse_iso(stamp))
        original = call.get("originalTimestamp")
        received = call.get("receivedAt")
        sent = call.get("sentAt", envelope.sent_at)
        if original is not None:
            ts = parse_iso(original)
            if received is not None and sent is not None:
                ts += parse_iso(received) - parse_iso(sent)
            return format_time(ts)
        if received is not None:
            return format_time(parse_iso(received))
    except (ValueError, OverflowError, OSError):
        raise InvalidEvent("bad_timestamp", "timestamp, originalTimestamp, sentAt or"
                           " receivedAt is not an ISO 8601 time") from None
    raise InvalidEvent("missing_field", "the call has no timestamp, originalTimestamp or"
                       " receivedAt")


def _country(value: Any) -> str | None:
    """ISO 3166-1 alpha-2 only: a country name cannot be told from a typo here."""
    if type(value) is str and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _identifier(value: Any) -> Any:
    """An id as a string: a number (userId 42) becomes "42"; null and "" are no id."""
    if value is None or value == "":
        return None
    if type(value) is int or (type(value) is float and value.is_integer()):
        return str(int(value))
    return value  # a string, or something the intake will refuse with its reason


def _with(obj: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``obj`` with ``value`` at ``key`` (as :func:`_put` sets it) on a copy, unless ``obj``
    has a value there already or there is no value: then ``obj`` itself."""
    if value is None or key in obj:
        return obj
    copy = dict(obj)
    _put(copy, key, value)
    return copy


def _strings(source: Mapping[str, Any], keys: tuple[str, ...], into: dict[str, Any]) -> bool:
    """``keys`` of ``source`` copied ``into``: a string when not empty, anything else as it
    is, for the intake to refuse with its reason; False when something else was copied."""
    clean = True
    for key in keys:
        inner = source.get(key)
        if type(inner) is str:
            if inner:
                into[key] = inner
        elif inner is not None:
            into[key] = inner
            clean = False
    return clean


def _put(obj: dict[str, Any], key: str, value: Any) -> None:
    """Set when there is something to say."""
    if value is None or value == "" or value == {}:
        return
    obj[key] = value


def problems(seg: SegmentConfig) -> Iterator[str]:
    """Every value the Segment tables can produce must be valid in a touchpoint."""
    where = "intake.segment"
    for key in ("events", "custom_events", "calls"):
        for name, type_ in getattr(seg, key).items():
            if TYPE_RE.fullmatch(type_) is None:
                yield f"{where}.{key}.{name}: {type_!r} must match [a-z0-9_.:-]{{1,64}}"
    for key in ("channels", "library_channels"):
        for name, channel in getattr(seg, key).items():
            if channel is not None and channel not in CHANNELS:
                yield f"{where}.{key}.{name}: {channel!r} is not one of {sorted(CHANNELS)}"
    for name, device in seg.device_types.items():
        if device is not None and device not in DEVICE_TYPES:
            yield (f"{where}.device_types.{name}: {device!r} is not one of"
                   f" {sorted(DEVICE_TYPES)}")
    bounds = list(seg.employee_bands.values())
    if not bounds or bounds != sorted(set(bounds)) or bounds[0] < 1:
        yield f"{where}.employee_bands must be ascending upper bounds >= 1, got {bounds}"
    if seg.max_batch_bytes < 1:
        yield f"{where}.max_batch_bytes must be >= 1"
    if seg.alias_previous_id == "user_id":
        yield (f"{where}.alias_previous_id cannot be user_id: an alias's userId holds that"
               " slot of the event")
