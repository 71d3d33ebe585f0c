"""The per-profile half of the pipeline: features, learning, assessment, segment changes.

What happens to an event once its profile is known (:mod:`workers.core.identity`
decided it) needs nothing but that profile's own state and the model in force:
so it can run next to the identity decisions (the :class:`~workers.core.pipeline.
Pipeline` of ``run``) or in partitions of profiles elsewhere. Two seams say what
differs between the two:

* :class:`Learner`: where a learn sample goes and which model version is in force
  (the :class:`~workers.core.segments.SegmentModel` itself, learning at once; or a
  task's copy of the versions one trainer publishes);
* :class:`Identifiers`: who knows a profile's identifiers (the identity graph; or
  the identifiers the identity stage sent with the profile's events).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from hashlib import blake2b, sha256
from typing import Any, Protocol

from workers.config import Config
from workers.core.audiences import AudienceKeys, audience_calls
from workers.core.downstream import Downstream
from workers.core.features import ColumnReader, FeatureSpec, ProfileState
from workers.core.forget import ForgetRequest
from workers.core.identity import ProfileId, Resolution
from workers.core.personas import (
    SegmentTotals,
    name_segments,
    persona_cards,
    segment_totals,
)
from workers.core.records import (
    ChangeReason,
    Forget,
    Output,
    PersonaCard,
    ProfileSnapshot,
    SegmentChange,
    SegmentRef,
)
from workers.core.registry import Lineage
from workers.core.segments import Placement, Snapshot, assign, explain
from workers.core.stats import Stats
from workers.core.touchpoints import Touchpoint, format_time
from workers.state.store import ProfileStore, open_store

KNOWN_IDENTIFIERS = ("user_id", "email", "crm_id", "phone")
_ZERO_HASH = bytes(8)
_ONE_HASH = (1).to_bytes(8, "little")
_ID_HASHER = blake2b(digest_size=8)  # what every event id hash starts from


class Learner(Protocol):
    """Where learn samples go, and the model version in force."""

    @property
    def snapshot(self) -> Snapshot | None: ...

    def learn(self, pid: ProfileId, vector: list[float], ts: float) -> Snapshot | None:
        """Learn from profile ``pid``; a version published at once, if any."""


class Identifiers(Protocol):
    """A profile's identifiers, by type."""

    def identifiers(self, profile_id: ProfileId) -> Mapping[str, list[str]]: ...


class Dirty:
    """A profile touched in this tick: the last event that touched it, and whether a
    merge did. One is made per event: a small class (C fields where compiled), as a
    NamedTuple's constructor is Python code."""

    __slots__ = ("merged", "trigger", "ts")

    def __init__(self, trigger: str, ts: float, merged: bool) -> None:
        self.trigger = trigger
        self.ts = ts
        self.merged = merged

    def fields(self) -> tuple[str, float, bool]:
        """What it is made of, for saved state: ``Dirty(*dirty.fields())`` is it again."""
        return (self.trigger, self.ts, self.merged)


class ProfileWork(Downstream):
    """Profiles' features, and what the model makes of them, one tick of event time at
    a time; outputs go to ``out``, counts to ``stats``."""

    def __init__(self, config: Config, spec: FeatureSpec, learner: Learner,
                 identifiers: Identifiers, stats: Stats, out: list[Output],
                 wanted: frozenset[int], announces: bool = True) -> None:
        self.config = config
        seg = config.segmentation
        # read at every tick (most hold one event): C fields where compiled
        self._min_events = seg.min_events
        self._learn_min_events = seg.learn_min_events
        self._learn_interval = seg.learn_interval_seconds
        self._hysteresis = seg.hysteresis
        self.spec = spec
        self.learner = learner
        self.who = identifiers
        self.stats = stats
        self.out = out
        self._wanted = wanted  # the features a learn reads
        # what an assessment reads of a profile (the columns of the version in force) and
        # where it places it, and the version they are of: taken again when it changes
        self._reader: ColumnReader | None = None
        self._placement: Placement | None = None
        self._held: Snapshot | None = None
        # whether this work announces each model version (lineage records, the count): one
        # place does, where profiles are spread over several works
        self._announces = announces
        self.profiles = open_store(config.state)
        self.names: dict[int, str] = {}
        self.sizes: dict[int, int] = {}
        self.audience_keys = AudienceKeys()
        # the marketer's keys, read at every change (the config's property builds a dict)
        self._chosen = config.audiences.chosen
        self.dirty: dict[ProfileId, Dirty] = {}
        # profiles changed (or absorbed) since the state's last commit took them; None
        # while no changelog takes them (run, replay), as a set of every profile a stream
        # touched would only grow
        self.changed_profiles: set[ProfileId] | None = None

    @property
    def profiles(self) -> ProfileStore:
        return self._profiles

    @profiles.setter
    def profiles(self, store: ProfileStore) -> None:
        self._profiles = store
        # its look-up and sync, bound once: looked up on the store at every event and
        # tick, compiled, they cost ~470 instructions a call
        self._get = store.get
        self._sync = store.sync

    # ---- per event, in event-time order -------------------------------------

    def event(self, tp: Touchpoint, res: Resolution) -> None:
        """An event the identity stage resolved, in the same process."""
        assert res.profile_id is not None  # the stage dead-letters the unattributable
        self.apply(res.profile_id, tp, res.merged)

    def apply(self, pid: ProfileId, tp: Touchpoint, absorbed: Sequence[ProfileId],
              moved: Mapping[ProfileId, ProfileState | None] | None = None) -> None:
        """One event of profile ``pid``, which absorbed the profiles ``absorbed`` on the
        way: their states are here, or in ``moved`` (sent from another partition)."""
        merged = bool(absorbed)
        if merged:
            self.merge(pid, [(other, self.take(other) if moved is None or other not in moved
                              else moved[other]) for other in absorbed])
        state = self._get(pid)
        ts = tp.ts
        if state is None:
            state = self.profiles[pid] = ProfileState(self.spec.size, ts)
        id_hash = _id_hash(tp.event_id)
        stats = self.stats
        if state.seen(id_hash):  # a duplicate the event-time window had already forgotten
            stats.events_valid -= 1
            stats.events_duplicate += 1
            return
        dropped = state.update(self.spec, tp, id_hash)
        if dropped:
            stats.traits_dropped += dropped
        self._touch(pid)
        previous = self.dirty.get(pid)
        self.dirty[pid] = Dirty(tp.event_id, ts, merged or (previous is not None
                                                            and previous.merged))

    def merge(self, survivor: ProfileId, absorbed: Iterable[tuple[ProfileId,
                                                              ProfileState | None]]) -> None:
        """Profiles the identity stage merged into ``survivor``, with their states (taken
        from this work's store, or moved here from another partition)."""
        profiles = self.profiles
        state = profiles.get(survivor)
        for _, other in absorbed:
            if other is None:  # a profile whose every event is still held back
                continue
            if state is None:  # the survivor is a new id: the first absorbed becomes it
                state = other
                continue
            if other.segment is not None:
                self.sizes[other.segment] -= 1
                if state.segment is None:
                    state.segment = other.segment
                    self.sizes[other.segment] += 1
            self.stats.traits_dropped += state.absorb(self.spec, other)
        if state is not None:
            profiles[survivor] = state

    def absorb_held(self, survivor: ProfileId,
                    absorbed: Iterable[tuple[ProfileId, ProfileState | None]],
                    trigger: str, ts: float) -> None:
        """States of profiles ``survivor`` absorbed earlier (at event ``trigger``, time
        ``ts``), merged now: it is re-assessed at this tick's end, as after a merge."""
        self.merge(survivor, absorbed)
        self._touch(survivor)
        previous = self.dirty.get(survivor)
        self.dirty[survivor] = (Dirty(trigger, ts, True) if previous is None
                                else Dirty(previous.trigger, previous.ts, True))

    def _touch(self, pid: ProfileId) -> None:
        """``pid`` changed: the next commit writes it, where one will."""
        if self.changed_profiles is not None:
            self.changed_profiles.add(pid)

    def take(self, pid: ProfileId) -> ProfileState | None:
        """Remove a profile merged into another (its state goes with it)."""
        self._touch(pid)
        self.dirty.pop(pid, None)
        return self.profiles.pop(pid) if pid in self.profiles else None

    def forget(self, pid: ProfileId, members: Mapping[str, list[str]],
               request: ForgetRequest) -> None:
        """Forget a profile whose identifiers the identity stage removed: its features,
        its place in a segment's size; a ``forget/v1`` tells subscribers to delete too."""
        state = self.take(pid)
        self.stats.profiles_forgotten += 1
        previous = None if state is None else state.segment
        if previous is not None and previous in self.sizes:
            self.sizes[previous] -= 1
        record: Forget = {
            "schema": "forget/v1",
            "event_id": digest("forget", pid, request.request_id),
            "profile_id": pid,
            "previous_segment": (None if previous is None
                                 else {"id": previous, "name": self._name(previous)}),
            "identifiers": {t: sorted(hash_value(v) for v in values)
                            for t, values in sorted(members.items()) if values},
            "request_id": request.request_id,
            "reason": request.reason,
            "requested_at": request.requested_at,
        }
        self.out.append(Output("forget", pid, record))

    # ---- per tick ------------------------------------------------------------

    def run_tick(self, final: bool = False) -> None:
        """Learn from and re-assess the profiles touched since the last tick, in
        profile-id order (a flush, ``final``, changes nothing here)."""
        if not self.dirty:
            return
        dirty, self.dirty = self.dirty, {}
        if self.changed_profiles is not None:  # learning and assessing change them too
            self.changed_profiles.update(dirty)
        min_events = self._min_events
        learn_min_events = self._learn_min_events
        learn_interval = self._learn_interval
        hysteresis = self._hysteresis
        spec = self.spec
        learner = self.learner
        # the version in force changes within a tick only by a learn that publishes one;
        # its reader and placement are taken at the first profile assessed (a tick often
        # holds one event, of a profile too young to assess)
        snapshot = learner.snapshot
        reader = None
        for pid in sorted(dirty) if len(dirty) > 1 else dirty:  # most ticks hold one
            state = self._get(pid)
            if state is None or state.event_count < min_events:
                continue
            trigger = dirty[pid]
            if (state.event_count >= learn_min_events
                    and trigger.ts - state.last_learned >= learn_interval):
                state.last_learned = trigger.ts
                published = learner.learn(pid, state.vector(spec, self._wanted), trigger.ts)
                if published is not None:
                    self.publish(published, trigger.ts)
                    snapshot = published  # in force from this profile on
                    reader = None
            if snapshot is None:
                continue
            if reader is None:
                reader, placement = self._assessing(snapshot)
            reader.fill(state)
            # most touched profiles provably stay where they are: no output, nothing to do
            if trigger.merged or not placement.stays(reader.view, state.segment, hysteresis):
                self._assess(pid, state, reader.scratch.tolist(), snapshot,
                             "merge" if trigger.merged else "assignment", trigger.trigger,
                             trigger.ts, trigger.merged)
        self._sync()

    def publish(self, snapshot: Snapshot, ts: float) -> None:
        """A new model version in force: name it (announcing its lineage, where this work
        does), then re-assess every profile it may move."""
        first = snapshot.version == 1
        before_names = self.names
        self.names = name_segments(snapshot, self.spec, before_names)
        if self._announces:
            self.stats.model_updates += 1
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
        self._reassess(snapshot, known, first, ts)

    def _reassess(self, snapshot: Snapshot, known: set[int], first: bool, ts: float) -> None:
        """Every profile a new version may move. Most provably stay where they are: those
        are found in the store's own order (no sort of every id), and only the others are
        assessed, in profile-id order (their outputs'), and written back."""
        min_events = self._min_events
        hysteresis = self._hysteresis
        profiles = self.profiles
        read, placement = self._assessing(snapshot)
        moving = []
        for pid, state in profiles.items():
            if state.event_count < min_events:
                continue
            before = state.segment
            if before is not None and before not in known:
                state.segment = None  # retired segment: re-assigned below like a newcomer
            read.fill(state)
            if not placement.stays(read.view, state.segment, hysteresis):
                moving.append((pid, before, state))
        moving.sort()  # by id: no two share one, so states are never compared
        for pid, before, state in moving:
            read.fill(state)
            self._assess(pid, state, read.scratch.tolist(), snapshot, "assignment"
                         if first or state.segment is None else "model_update", None, ts,
                         False)
            if state.segment != before:
                profiles[pid] = state  # a store that is not a dict writes it back
                self._touch(pid)

    def _lineage(self, event: Lineage, version: int, before_names: dict[int, str],
                 ts: float) -> None:
        def ref(sid: int) -> SegmentRef:
            return {"id": sid, "name": self.names.get(sid) or before_names.get(
                sid, f"Segment {sid}")}

        key = digest("lineage", event.kind, str(event.segment_id), str(version))
        self.out.append(Output("segment_lineage", key, {
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

    def _assessing(self, snapshot: Snapshot) -> tuple[ColumnReader, Placement]:
        """What an assessment under ``snapshot`` reads of a profile (its columns' values)
        and where it places them: taken once per version, not at every tick (most hold
        one profile to assess)."""
        reader, placement = self._reader, self._placement
        if snapshot is not self._held or reader is None or placement is None:
            if reader is None or reader.columns != snapshot.columns:
                reader = self._reader = ColumnReader(self.spec, snapshot.columns)
            placement = self._placement = snapshot.placement
            self._held = snapshot
        return reader, placement

    def _assess(self, pid: ProfileId, state: ProfileState, values: list[float],
                snapshot: Snapshot, reason: ChangeReason, trigger: str | None, ts: float,
                announce: bool) -> None:
        """Place a profile, from its ``values`` of the snapshot's columns."""
        z = snapshot.transform(values)
        previous = state.segment
        result = assign(snapshot, z, previous, self._hysteresis)
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
            "event_id": digest("change", pid, str(sid), str(snapshot.version),
                               trigger or "", reason),
            "profile_id": pid,
            "previous_segment": (None if previous is None
                                 else {"id": previous, "name": self._name(previous)}),
            "segment": {"id": sid, "name": self._name(sid)},
            "reason": reason,
            "model_version": snapshot.version,
            "score": result.score,
            "explanation": explain(snapshot, z, sid, values, self.spec.names,
                                   self.config.output.explanation_size),
            "identifiers": self.identifiers(pid, KNOWN_IDENTIFIERS),
            "trigger_event_id": trigger,
            "occurred_at": format_time(ts),
        }
        self.out.append(Output("segment_change", pid, change))
        # keys are born with the segment even while audience calls are off, so turning
        # them on later gives the keys of the segments' first names
        chosen = self._chosen
        for segment in (change["segment"], change["previous_segment"]):
            if segment is not None:
                self.audience_keys.see(segment, chosen)
        if self.config.audiences.enabled:
            self.out.extend([Output("audience", pid, call) for call in audience_calls(
                change, self.audience_keys.resolved(chosen))])

    def _name(self, segment_id: int) -> str:
        return self.names.get(segment_id, f"Segment {segment_id}")

    def identifiers(self, pid: ProfileId, types: Iterable[str]) -> dict[str, list[str]]:
        return identifiers_of(self.who.identifiers(pid), types,
                              self.config.output.hash_identifiers)

    # ---- state as data, read side ---------------------------------------------

    def meta_state(self) -> dict[str, Any]:
        return {"names": self.names, "sizes": self.sizes,
                "dirty": {pid: d.fields() for pid, d in self.dirty.items()},
                "audience_keys": self.audience_keys.born}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.names, self.sizes = meta["names"], meta["sizes"]
        self.dirty = {pid: Dirty(*d) for pid, d in meta["dirty"].items()}
        self.audience_keys.born = meta["audience_keys"]

    def profile_snapshot(self, pid: ProfileId, types: Iterable[str]) -> ProfileSnapshot:
        """A profile as ``profiles.jsonl`` and the admin pages show it (identifiers of
        ``types``)."""
        state = self.profiles[pid]
        seg = state.segment
        return {
            "profile_id": pid,
            "identifiers": self.identifiers(pid, types),
            "segment": None if seg is None else {"id": seg, "name": self._name(seg)},
            "event_count": state.event_count,
            "first_seen": format_time(state.first_seen),
            "last_seen": format_time(state.last_seen),
            "features": state.named(self.spec),
        }

    def personas(self) -> list[PersonaCard]:
        snapshot = self.learner.snapshot
        if snapshot is None:
            return []
        return persona_cards(snapshot, self.names, self.spec, self.segment_totals())

    def segment_totals(self) -> dict[int, SegmentTotals]:
        """The KPI sums of each segment of the version in force, over these profiles."""
        snapshot = self.learner.snapshot
        return {} if snapshot is None else segment_totals(snapshot, self.profiles.values())


def identifiers_of(held: Mapping[str, list[str]], types: Iterable[str],
                   hashing: bool) -> dict[str, list[str]]:
    """Identifiers of ``types`` as outputs show them: sorted, hashed when
    ``output.hash_identifiers``."""
    out = {}
    for id_type in types:
        values = held.get(id_type)
        if values:
            out[id_type] = sorted(hash_value(v) for v in values) if hashing else sorted(values)
    return out


def digest(*parts: str) -> str:
    """Deterministic output ids: same input, same id, so consumers de-duplicate exactly."""
    return blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def _id_hash(event_id: str) -> bytes:
    """A stable 8-byte hash, never all zero (not hash(): that changes between processes).
    As a little-endian int 64 it is what states of earlier versions hold."""
    hasher = _ID_HASHER.copy()  # a copy costs less than a new hash's keyword arguments
    hasher.update(event_id.encode())
    data = hasher.digest()
    return data if data != _ZERO_HASH else _ONE_HASH


def hash_value(value: str) -> str:
    return sha256(value.encode()).hexdigest()
