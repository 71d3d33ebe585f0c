"""The processing core: raw records in, output records out. No Kafka, no clock.

``run``, ``replay`` and the Kafka worker all drive a :class:`Pipeline`; what
they add is only where bytes come from and where records go (plus the
wall-clock ``emitted_at`` a sink stamps on each record).

Order of work for one record: validate -> de-duplicate -> hold in an
event-time buffer -> (once the watermark passes it, in event-time order)
resolve identity -> update features -> mark the profile dirty. Dirty profiles
are learned from and re-assessed once per tick of event time, in profile-id
order, so a burst of a person's clicks costs one assessment and the result
does not depend on how records were batched on the way in.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from workers.config import Config
from workers.core.audiences import AudienceKeys, audience_calls
from workers.core.clock import FarFuture, StreamClock
from workers.core.dedup import Deduplicator
from workers.core.features import FeatureSpec, ProfileState
from workers.core.forget import ForgetList, ForgetRequest
from workers.core.formats import Adapter, Format, Formats, InvalidMember
from workers.core.identity import IdentityGraph, IdentityRules, ProfileId, lookup_keys
from workers.core.personas import name_segments, persona_cards
from workers.core.privacy import Pseudonymiser, redact
from workers.core.records import (
    ChangeReason,
    DeadLetter,
    Forget,
    Origin,
    Output,
    PersonaCard,
    ProfileSnapshot,
    SegmentChange,
    SegmentRef,
)
from workers.core.registry import Lineage
from workers.core.segments import SegmentModel, Snapshot, assign, explain
from workers.core.touchpoints import (
    IntakeLimits,
    Touchpoint,
    TouchpointParser,
    format_time,
)
from workers.errors import InvalidEvent
from workers.state.store import ProfileStore, open_store

KNOWN_IDENTIFIERS = ("user_id", "email", "crm_id", "phone")


@dataclass
class Stats:
    events_read: int = 0
    events_valid: int = 0
    events_invalid: int = 0
    events_duplicate: int = 0
    segment_changes: int = 0
    identity_merges: int = 0
    invalid_by_error: dict[str, int] = field(default_factory=dict)
    merges_refused: dict[str, int] = field(default_factory=dict)
    changes_by_reason: dict[str, int] = field(default_factory=dict)
    identifiers_blocked: int = 0
    identifiers_dropped: int = 0
    traits_dropped: int = 0
    records_without_events: int = 0  # read but holding no event (a CSV header line)
    model_updates: int = 0
    events_forgotten: int = 0  # naming a forgotten identifier: dropped, never dead letters
    profiles_forgotten: int = 0


class _Dirty(NamedTuple):
    trigger: str
    ts: float
    merged: bool


class Pipeline:
    """Stateful core shared by every shell."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.parser = TouchpointParser(IntakeLimits.from_config(config))
        self.formats = Formats(config)
        self.dedup = Deduplicator(config.intake.dedup_window_seconds)
        ident = config.identity
        self.graph = IdentityGraph(IdentityRules.from_config(
            ident.limits, ident.blocklist_values, ident.blocklist_patterns))
        key = ident.pseudonymise_key if ident.pseudonymise else None
        self.pseudonymiser = (None if key is None
                              else Pseudonymiser(key.reveal().encode(), self.graph))
        self._redact = config.intake.dead_letter_raw == "redact"
        self.forgotten = ForgetList.for_config(config)
        self.spec = FeatureSpec(config.features)
        self.model = SegmentModel(config.segmentation, self.spec)
        # the features an assessment or a learn reads: the others are not worked out
        self._wanted = frozenset(self.model.columns)
        self.profiles: ProfileStore = open_store(config.state)
        self.stats = Stats()
        self.names: dict[int, str] = {}
        self.sizes: dict[int, int] = {}
        self.audience_keys = AudienceKeys()
        self._buffer: list[tuple[float, str, Touchpoint]] = []
        self.clock = StreamClock(config.intake.future_tolerance_seconds)
        self._far = FarFuture()
        self._window = config.intake.reorder_window_seconds
        self._tick = config.segmentation.assign_tick_seconds
        self._tick_end = -math.inf
        self._dirty: dict[ProfileId, _Dirty] = {}
        self._out: list[Output] = []
        # per input (topic, partition): the offset after the last record fed from it
        self.positions: dict[tuple[str, int], int] = {}
        # profiles changed (or absorbed) since the state's last commit took them
        self.changed_profiles: set[ProfileId] = set()

    # ---- intake -------------------------------------------------------------

    def feed(self, raw: bytes | None, origin: Origin | None = None,
             fmt: Format | None = None) -> list[Output]:
        """Take one raw record; returns the outputs it (or the watermark it moved) caused.

        With an ``origin``, a record at or before an offset already fed from its input
        partition is a re-delivery (a router re-forwards its uncommitted records after a
        rebalance) and counts as a duplicate: exact, whatever its event time. ``fmt``
        overrides the configured format (``intake.format``, ``intake.formats``).
        """
        if origin is not None:
            where = (origin.topic, origin.partition)
            if origin.offset < self.positions.get(where, 0):
                self.stats.events_read += 1
                self.stats.events_duplicate += 1
                return []
            self.positions[where] = origin.offset + 1
        fmt = self.formats.of(None if origin is None else origin.topic, fmt)
        adapter = None if fmt == "touchpoint" or not raw else self.formats.adapter(fmt, raw)
        if adapter is not None:
            self._feed_adapted(adapter, raw or b"", origin)
            return self._take()
        self.stats.events_read += 1
        try:
            tp = self.parser.parse(raw)
        except InvalidEvent as exc:
            self._dead_letter(raw, exc.code, exc.detail, origin)
            return self._take()
        self.accept(tp, origin)
        return self._take()

    def _feed_adapted(self, adapter: Adapter, raw: bytes, origin: Origin | None) -> None:
        """A record of another format: each of its events counts and ends like a touchpoint
        (a batch member that cannot be read is a dead letter of its own)."""
        stats = self.stats
        try:
            items = list(adapter.events(raw))
        except InvalidEvent as exc:
            stats.events_read += 1
            self._dead_letter(raw, exc.code, exc.detail, origin)
            return
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            # a record shaped in a way the adapter did not foresee: a dead letter that says
            # so (a bug to report), never a stopped worker
            stats.events_read += 1
            self._dead_letter(raw, "unreadable", f"the {type(adapter).__name__} could not"
                              f" read this record ({type(exc).__name__}: {exc})", origin)
            return
        if not items:  # a line without an event, such as a CSV header
            stats.records_without_events += 1
            return
        for item in items:
            stats.events_read += 1
            if isinstance(item, InvalidMember):
                self._dead_letter(item.raw, item.code, item.detail, origin)
                continue
            member = raw if len(items) == 1 else orjson.dumps(item)
            try:
                tp = self.parser.check(item, member, adapter.vouch(item))
            except InvalidEvent as exc:
                self._dead_letter(member, exc.code, exc.detail, origin)
                continue
            self.accept(tp, origin)

    def feed_many(self, raws: Iterable[bytes]) -> Iterator[Output]:
        for raw in raws:
            yield from self.feed(raw)

    def accept(self, tp: Touchpoint, origin: Origin | None = None) -> None:
        """A validated event: de-duplicate, then hold until the watermark passes it.

        One dated beyond the clock's limit waits aside (:class:`FarFuture`) until the
        stream confirms the jump, or becomes a dead letter at the next flush. With
        ``identity.pseudonymise``, its identifiers are hashed first: nothing after this
        line sees a raw one.
        """
        if self.pseudonymiser is not None:
            tp = self.pseudonymiser.event(tp)
        if self.forgotten.entries and self.forgotten.names(tp.identity):
            self.stats.events_forgotten += 1
            return
        if tp.ts <= self.clock.limit:
            self._admit(tp)
        elif tp.event_id in self._far:
            self.stats.events_duplicate += 1
        else:
            pushed_out = self._far.hold(tp, origin)
            if pushed_out is not None:
                self._dead_letter(pushed_out[0].record(), "future_time", _FUTURE_DETAIL,
                                  pushed_out[1])
            # a second event near this one says the stream itself moved there
            for confirmed in self._far.confirmed(tp.ts, self.clock.tolerance):
                self._admit(confirmed)

    def _clock_moved(self) -> None:
        """Forget ids the window left behind; admit far-future events the clock reached."""
        self.dedup.expire(self.clock.now)
        if self._far:
            for tp in self._far.release(self.clock.limit):
                self._admit(tp, observed=True)

    def _admit(self, tp: Touchpoint, observed: bool = False) -> None:
        ts = tp.ts
        if self.dedup.seen(tp.event_id, ts):
            self.stats.events_duplicate += 1
            return
        self.stats.events_valid += 1
        clock = self.clock
        if not observed and clock.observe(ts):
            self._clock_moved()
        watermark = clock.now - self._window
        if ts < watermark:  # later than the window allows: apply now, out of order
            self._process(tp)
        else:
            heapq.heappush(self._buffer, (ts, tp.event_id, tp))
        buffer = self._buffer
        while buffer and buffer[0][0] <= watermark:
            self._process(heapq.heappop(buffer)[2])

    def flush(self) -> list[Output]:
        """End of input (or an idle stream): process everything held, close the tick.

        Events that arrived before the stream had a clock are checked against it now:
        one far-future record among the first few is not processed either.
        """
        for tp, origin in self._far.drain():  # the stream never followed them there
            self._dead_letter(tp.record(), "future_time", _FUTURE_DETAIL, origin)
        horizon = self.clock.limit
        while self._buffer:
            tp = heapq.heappop(self._buffer)[2]
            if tp.ts > horizon:
                self.stats.events_valid -= 1
                self._dead_letter(tp.record(), "future_time", _FUTURE_DETAIL, None)
            else:
                self._process(tp)
        self._run_tick()
        return self._take()

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def _dead_letter(self, raw: bytes | None, code: str, detail: str,
                     origin: Origin | None) -> None:
        self.stats.events_invalid += 1
        self.stats.invalid_by_error[code] = self.stats.invalid_by_error.get(code, 0) + 1
        record: DeadLetter = {"schema": "dead_letter/v1", "error": code, "detail": detail}
        raw = raw or b""
        if self._redact:
            raw = redact(raw)
        keep = self.config.output.dead_letter_raw_bytes
        if len(raw) > keep:  # the dead letter must fit on its topic: keep a head, say the rest
            record["raw_bytes"] = len(raw)
            record["raw_sha256"] = hashlib.sha256(raw).hexdigest()
            raw = raw[:keep]
        try:
            record["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if "raw_bytes" in record and exc.start >= len(raw) - 3:  # a character cut in two
                record["raw"] = raw[:exc.start].decode("utf-8")
            else:
                record["raw_base64"] = base64.b64encode(raw).decode("ascii")
        if origin is not None:
            record["topic"] = origin.topic
            record["partition"] = origin.partition
            record["offset"] = origin.offset
        self._out.append(Output("dead_letter", None, record))

    # ---- per event, in event-time order -------------------------------------

    def _process(self, tp: Touchpoint) -> None:
        ts = tp.ts
        if ts >= self._tick_end:
            self._run_tick()
            self._tick_end = (ts // self._tick + 1) * self._tick
        res = self.graph.resolve(tp.identity)
        stats = self.stats
        if res.blocked:
            stats.identifiers_blocked += res.blocked
        pid = res.profile_id
        if pid is None:
            # every identifier was junk: nobody to attribute it to, so it is not lost silently
            stats.events_valid -= 1
            self._dead_letter(tp.record(), "unattributable",
                              "every identifier of the event is on the blocklist", None)
            return
        if res.refused is not None:
            stats.merges_refused[res.refused] = stats.merges_refused.get(res.refused, 0) + 1
        stats.identifiers_dropped += res.dropped
        state = self.profiles.get(pid)
        merged = bool(res.merged)
        if merged:
            state = self._merge(pid, res.merged, tp)
        elif state is None:
            state = self.profiles[pid] = ProfileState(self.spec.size, ts)
        id_hash = _id_hash(tp.event_id)
        if state.seen(id_hash):  # a duplicate the event-time window had already forgotten
            stats.events_valid -= 1
            stats.events_duplicate += 1
            return
        stats.traits_dropped += state.update(self.spec, tp, id_hash)
        self.changed_profiles.add(pid)
        previous = self._dirty.get(pid)
        self._dirty[pid] = _Dirty(tp.event_id, ts, merged or (previous is not None
                                                             and previous.merged))

    def _merge(self, survivor: ProfileId, absorbed: list[ProfileId],
               tp: Touchpoint) -> ProfileState:
        profiles = self.profiles
        state = profiles.get(survivor)
        self.changed_profiles.update(absorbed)
        for pid in absorbed:
            other = profiles.pop(pid)
            self._dirty.pop(pid, None)
            if state is None:  # the survivor is a new id: the first absorbed becomes it
                state = other
                continue
            if other.segment is not None:
                self.sizes[other.segment] -= 1
                if state.segment is None:
                    state.segment = other.segment
                    self.sizes[other.segment] += 1
            self.stats.traits_dropped += state.absorb(self.spec, other)
        assert state is not None
        profiles[survivor] = state
        self.stats.identity_merges += 1
        merged_ids = sorted(absorbed)
        self._out.append(Output("identity_merge", survivor, {
            "schema": "identity_merge/v1",
            "event_id": _digest("merge", survivor, *merged_ids, tp.event_id),
            "profile_id": survivor,
            "merged_profile_ids": merged_ids,
            "identifiers": self._identifiers(survivor, KNOWN_IDENTIFIERS),
            "trigger_event_id": tp.event_id,
            "occurred_at": format_time(tp.ts),
        }))
        return state

    # ---- per tick ------------------------------------------------------------

    def _run_tick(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        self.changed_profiles.update(dirty)  # learning and assessing change them too
        cfg = self.config.segmentation
        spec = self.spec
        for pid in sorted(dirty):
            state = self.profiles.get(pid)
            if state is None or state.event_count < cfg.min_events:
                continue
            trigger = dirty[pid]
            vector = state.vector(spec, self._wanted)
            if (state.event_count >= cfg.learn_min_events
                    and trigger.ts - state.last_learned >= cfg.learn_interval_seconds):
                state.last_learned = trigger.ts
                snapshot = self.model.learn(vector, trigger.ts)
                if snapshot is not None:
                    self._publish(snapshot, trigger.ts)
            snapshot = self.model.snapshot
            if snapshot is not None:
                self._assess(pid, state, vector, snapshot, "merge" if trigger.merged
                             else "assignment", trigger.trigger, trigger.ts, trigger.merged)
        self.profiles.sync()

    def _publish(self, snapshot: Snapshot, ts: float) -> None:
        """A new model version: name it, announce its lineage, then re-assess every
        profile it may move."""
        self.stats.model_updates += 1
        first = snapshot.version == 1
        before_names = self.names
        self.names = name_segments(snapshot, self.spec, before_names)
        renames = [Lineage("rename", sid, previous_name=old)
                   for sid, old in sorted(before_names.items())
                   if sid in self.names and self.names[sid] != old]
        for event in (*snapshot.lineage, *renames):
            self._lineage(event, snapshot.version, before_names, ts)
        known = {s.id for s in snapshot.segments}
        for sid in list(self.sizes):
            if sid not in known:
                del self.sizes[sid]
        for sid in known:
            self.sizes.setdefault(sid, 0)
        min_events = self.config.segmentation.min_events
        hysteresis = self.config.segmentation.hysteresis
        profiles = self.profiles
        eligible = ((pid, state) for pid, state in profiles.sorted_items()
                    if state.event_count >= min_events)
        while chunk := list(itertools.islice(eligible, _PUBLISH_CHUNK)):
            befores = [state.segment for _, state in chunk]
            for _, state in chunk:
                if state.segment is not None and state.segment not in known:
                    state.segment = None  # retired segment: re-assigned below like a newcomer
            vectors = [state.vector(self.spec, self._wanted) for _, state in chunk]
            # most profiles provably stay where they are: only the others are assessed
            stays = snapshot.keeps([state.segment for _, state in chunk], vectors, hysteresis)
            for (pid, state), before, vector, stay in zip(chunk, befores, vectors, stays,
                                                          strict=True):
                if stay:
                    continue
                self._assess(pid, state, vector, snapshot, "assignment" if first
                             or state.segment is None else "model_update", None, ts, False)
                if state.segment != before:
                    profiles[pid] = state  # a store that is not a dict writes it back
                    self.changed_profiles.add(pid)

    def _lineage(self, event: Lineage, version: int, before_names: dict[int, str],
                 ts: float) -> None:
        def ref(sid: int) -> SegmentRef:
            return {"id": sid, "name": self.names.get(sid) or before_names.get(
                sid, f"Segment {sid}")}

        key = _digest("lineage", event.kind, str(event.segment_id), str(version))
        self._out.append(Output("segment_lineage", key, {
            "schema": "segment_lineage/v1",
            "event_id": key,
            "kind": event.kind,
            "segment": ref(event.segment_id),
            "parents": [ref(p) for p in event.parents],
            "successor": None if event.successor is None else ref(event.successor),
            "previous_name": event.previous_name,
            "share": event.share,
            "model_version": version,
            "occurred_at": format_time(ts),
        }))

    def _assess(self, pid: ProfileId, state: ProfileState, vector: list[float],
                snapshot: Snapshot, reason: ChangeReason, trigger: str | None, ts: float,
                announce: bool) -> None:
        z = snapshot.transform(vector)
        previous = state.segment
        result = assign(snapshot, z, previous, self.config.segmentation.hysteresis)
        if not result.changed and not announce:
            return
        if result.changed:
            if previous is not None and previous in self.sizes:
                self.sizes[previous] -= 1
            self.sizes[result.segment_id] = self.sizes.get(result.segment_id, 0) + 1
            state.segment = result.segment_id
        if previous is None and reason == "merge":
            reason = "assignment"
        self.stats.segment_changes += 1
        self.stats.changes_by_reason[reason] = self.stats.changes_by_reason.get(reason, 0) + 1
        sid = result.segment_id
        change: SegmentChange = {
            "schema": "segment_change/v1",
            "event_id": _digest("change", pid, str(sid), str(snapshot.version),
                                trigger or "", reason),
            "profile_id": pid,
            "previous_segment": (None if previous is None
                                 else {"id": previous, "name": self._name(previous)}),
            "segment": {"id": sid, "name": self._name(sid)},
            "reason": reason,
            "model_version": snapshot.version,
            "score": result.score,
            "explanation": explain(snapshot, z, sid, vector, self.spec.names,
                                   self.config.output.explanation_size),
            "identifiers": self._identifiers(pid, KNOWN_IDENTIFIERS),
            "trigger_event_id": trigger,
            "occurred_at": format_time(ts),
        }
        self._out.append(Output("segment_change", pid, change))
        # keys are born with the segment even while audience calls are off, so turning
        # them on later gives the keys of the segments' first names
        audiences = self.config.audiences
        for segment in (change["segment"], change["previous_segment"]):
            if segment is not None:
                self.audience_keys.see(segment, audiences.chosen)
        if audiences.enabled:
            self._out.extend(Output("audience", pid, call) for call in audience_calls(
                change, self.audience_keys.resolved(audiences.chosen)))

    def _name(self, segment_id: int) -> str:
        return self.names.get(segment_id, f"Segment {segment_id}")

    def _identifiers(self, pid: ProfileId, types: Iterable[str]) -> dict[str, list[str]]:
        held = self.graph.identifiers(pid)
        hashing = self.config.output.hash_identifiers
        out = {}
        for id_type in types:
            values = held.get(id_type)
            if values:
                out[id_type] = sorted(_hash(v) for v in values) if hashing else sorted(values)
        return out

    # ---- forgetting a person (workers.core.forget) ------------------------------------

    def forget(self, request: ForgetRequest) -> list[Output]:
        """Forget whoever the request's identifier hashes name, now (at this point of the
        stream, so a replay of it forgets at the same place).

        Each profile holding one of them goes whole: its features, every identifier of its
        group (their hashes join the forget list, so no later event names them again), its
        events waiting in the event-time buffer or far ahead, its place in a segment's
        size. A ``forget/v1`` per profile tells subscribers to delete too. The hashes join
        the list even when no profile holds them: the person's events may come later.
        """
        forgotten = self.forgotten
        wanted = set(request.hashes)
        forgotten.add(request.hashes, request.requested_at)
        found = sorted({pid for id_type, value, pid in self.graph.every_identifier()
                        if forgotten.hash(id_type, value) in wanted})
        for pid in found:
            self._forget_profile(pid, request)
        self._drop_forgotten_events()
        return self._take()

    def reject(self, raw: bytes | None, exc: InvalidEvent) -> list[Output]:
        """A record that is no event (an unreadable forget request): its dead letter."""
        self._dead_letter(raw, exc.code, exc.detail, None)
        return self._take()

    def _forget_profile(self, pid: ProfileId, request: ForgetRequest) -> None:
        members = self.graph.remove(pid)
        self.forgotten.add((self.forgotten.hash(t, v) for t, values in members.items()
                            for v in values), request.requested_at)
        state = self.profiles.pop(pid) if pid in self.profiles else None
        self._dirty.pop(pid, None)
        self.changed_profiles.add(pid)
        self.stats.profiles_forgotten += 1
        previous = None if state is None else state.segment
        if previous is not None and previous in self.sizes:
            self.sizes[previous] -= 1
        record: Forget = {
            "schema": "forget/v1",
            "event_id": _digest("forget", pid, request.request_id),
            "profile_id": pid,
            "previous_segment": (None if previous is None
                                 else {"id": previous, "name": self._name(previous)}),
            "identifiers": {t: sorted(_hash(v) for v in values)
                            for t, values in sorted(members.items()) if values},
            "request_id": request.request_id,
            "reason": request.reason,
            "requested_at": request.requested_at,
        }
        self._out.append(Output("forget", pid, record))

    def _drop_forgotten_events(self) -> None:
        """Events held back (reorder window, far future) that name a forgotten identifier."""
        names = self.forgotten.names
        kept = [item for item in self._buffer if not names(item[2].identity)]
        dropped = len(self._buffer) - len(kept)
        if dropped:
            heapq.heapify(kept)
            self._buffer = kept
            self.stats.events_valid -= dropped  # counted valid when they entered the buffer
        far = self._far.drop(lambda tp: names(tp.identity))
        self.stats.events_forgotten += dropped + far

    # ---- state as data (workers.state.changelog writes and reads it) ----------------

    def meta_state(self) -> dict[str, Any]:
        """Everything but the keyed stores (profiles, identities, de-dup ids, held events)
        and the model (:meth:`SegmentModel.state`, written when it learned): small, written
        whole at every commit."""
        return {
            "stats": self.stats, "names": self.names, "sizes": self.sizes,
            "clock": self.clock, "tick_end": self._tick_end,
            "dirty": {pid: tuple(d) for pid, d in self._dirty.items()},
            "positions": self.positions, "dedup": self.dedup.meta(),
            "fields_dropped": self.parser.optional.dropped,
            "values_coerced": self.parser.optional.coerced,
            "audience_keys": self.audience_keys.born,
        }

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.stats, self.names, self.sizes = meta["stats"], meta["names"], meta["sizes"]
        self.clock, self._tick_end = meta["clock"], meta["tick_end"]
        self._dirty = {pid: _Dirty(*d) for pid, d in meta["dirty"].items()}
        self.positions = meta["positions"]
        self.dedup.load_meta(meta["dedup"])
        self.parser.optional.dropped = meta["fields_dropped"]
        self.parser.optional.coerced = meta["values_coerced"]
        self.audience_keys.born = meta["audience_keys"]

    def held_events(self) -> dict[str, tuple[bool, Touchpoint, Origin | None]]:
        """Events not processed yet, by id: (far ahead?, event, origin)."""
        held: dict[str, tuple[bool, Touchpoint, Origin | None]] = {
            tp.event_id: (False, tp, None) for _, _, tp in self._buffer}
        for tp, origin in self._far.waiting():
            held[tp.event_id] = (True, tp, origin)
        return held

    def hold_again(self, far: bool, tp: Touchpoint, origin: Origin | None) -> None:
        """An event of :meth:`held_events` read back from the changelog."""
        if far:
            self._far.hold(tp, origin)
        else:
            heapq.heappush(self._buffer, (tp.ts, tp.event_id, tp))

    # ---- read side ------------------------------------------------------------

    @property
    def held(self) -> int:
        """Events whose outcome is not final yet: in the event-time buffer (valid so far),
        or waiting as far-future events (not counted yet)."""
        return len(self._buffer) + len(self._far)

    @property
    def buffered(self) -> int:
        """Valid events in the event-time buffer (counted valid, not processed yet)."""
        return len(self._buffer)

    def personas(self) -> list[PersonaCard]:
        snapshot = self.model.snapshot
        if snapshot is None:
            return []
        return persona_cards(snapshot, self.names, self.spec, self.profiles.values())

    def profile_snapshot(self, pid: ProfileId) -> ProfileSnapshot:
        state = self.profiles[pid]
        seg = state.segment
        return {
            "profile_id": pid,
            "identifiers": self._identifiers(pid, self.graph.rules.limits),
            "segment": None if seg is None else {"id": seg, "name": self._name(seg)},
            "event_count": state.event_count,
            "first_seen": format_time(state.first_seen),
            "last_seen": format_time(state.last_seen),
            "features": state.named(self.spec),
        }

    def profile_snapshots(self) -> Iterator[ProfileSnapshot]:
        """Every profile in profile-id order: ``profiles.jsonl``, the same for every store."""
        for pid in sorted(self.profiles):
            yield self.profile_snapshot(pid)

    def lookup(self, key: str) -> ProfileId | None:
        """A profile by its id or by any identifier, written ``value`` or ``type:value``."""
        if key in self.profiles:
            return key
        hashed = self.pseudonymiser
        for id_type, value in lookup_keys(key, self.graph.rules.limits):
            # pseudonymised, the graph holds hashes: the hash of the key, or the key itself
            # when it is one (as an output's identifiers show it)
            for candidate in (value,) if hashed is None else (hashed.value(value), value):
                pid = self.graph.owner(id_type, candidate)
                if pid is not None:
                    return pid
        return None

    def summary(self) -> dict[str, Any]:
        s = self.stats
        snapshot = self.model.snapshot
        return {
            "events_read": s.events_read,
            "events_valid": s.events_valid,
            "events_invalid": s.events_invalid,
            "events_duplicate": s.events_duplicate,
            "profiles": len(self.profiles),
            "segment_changes": s.segment_changes,
            "identity_merges": s.identity_merges,
            "segments": 0 if snapshot is None else len(snapshot.segments),
            "model_version": 0 if snapshot is None else snapshot.version,
            "invalid_by_error": dict(sorted(s.invalid_by_error.items())),
            "merges_refused": dict(sorted(s.merges_refused.items())),
            "changes_by_reason": dict(sorted(s.changes_by_reason.items())),
            "identifiers_blocked": s.identifiers_blocked,
            "identifiers_dropped": s.identifiers_dropped,
            "traits_dropped": s.traits_dropped,
            # optional fields left out, and values made usable, by field (docs/contracts.md)
            "fields_dropped": dict(sorted(self.parser.optional.dropped.items())),
            "values_coerced": dict(sorted(self.parser.optional.coerced.items())),
            "records_without_events": s.records_without_events,
            # events naming a forgotten identifier (dropped), and profiles forgotten
            "events_forgotten": s.events_forgotten,
            "profiles_forgotten": s.profiles_forgotten,
            # valid events more than intake.dedup_window_seconds behind the stream's clock:
            # checked for duplicates only against their profile's recent event ids
            "events_beyond_dedup_window": self.dedup.beyond_window,
        }


# profiles a new model version re-assesses as one numpy batch
_PUBLISH_CHUNK = 4096

_FUTURE_DETAIL = ("occurred_at is further ahead of the stream's clock than"
                  " intake.future_tolerance_seconds")


def _digest(*parts: str) -> str:
    """Deterministic output ids: same input, same id, so consumers de-duplicate exactly."""
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def _id_hash(event_id: str) -> int:
    """A stable, non-zero 64-bit hash (not hash(): that changes between processes)."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
