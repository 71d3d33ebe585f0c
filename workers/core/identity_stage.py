"""The first half of the processing core: raw records in, events of known profiles out.

Order of work for one record: validate -> de-duplicate -> hold in an
event-time buffer -> (once the watermark passes it, in event-time order)
resolve identity -> hand the event, with the profile it belongs to, to a
:class:`Downstream`. The stage also cuts event time into ticks (a tick ends
when an event of a later one arrives, or at a flush): downstream, the profiles
touched in a tick are learned from and re-assessed once, in profile-id order,
so a burst of a person's clicks costs one assessment and the result does not
depend on how records were batched on the way in.

Identity decisions need every event in one order, so one stage makes them;
what follows for a profile needs nothing of the other profiles. The downstream
is :class:`~workers.core.profile_work.ProfileWork` in the same process (the
:class:`~workers.core.pipeline.Pipeline`), or the partitions of profiles
(:mod:`workers.core.partitioned`).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from workers.config import Config
from workers.core.clock import FarFuture, StreamClock
from workers.core.dedup import Deduplicator
from workers.core.downstream import Downstream
from workers.core.forget import ForgetList, ForgetRequest
from workers.core.formats import Format
from workers.core.identity import (
    IdentityGraph,
    IdentityRules,
    ProfileId,
    lookup_keys,
)
from workers.core.intake import Intake, Item, Rejected
from workers.core.privacy import Pseudonymiser, redact
from workers.core.profile_work import KNOWN_IDENTIFIERS, digest, identifiers_of
from workers.core.records import DeadLetter, Origin, Output
from workers.core.reorder import ReorderBuffer
from workers.core.stats import Stats
from workers.core.touchpoints import Touchpoint, format_time
from workers.errors import InvalidEvent


class IdentityStage:
    """Intake and identity decisions, in one order, for one downstream."""

    def __init__(self, config: Config,
                 downstream: Callable[[IdentityStage], Downstream]) -> None:
        self.config = config
        self.intake = Intake(config)
        self.dedup = Deduplicator(config.intake.dedup_window_seconds)
        ident = config.identity
        self.graph = IdentityGraph(IdentityRules.from_config(
            ident.limits, ident.blocklist_values, ident.blocklist_patterns))
        key = ident.pseudonymise_key if ident.pseudonymise else None
        self.pseudonymiser = (None if key is None
                              else Pseudonymiser(key.reveal().encode(), self.graph))
        self._redact = config.intake.dead_letter_raw == "redact"
        self.forgotten = ForgetList.for_config(config)
        self.stats = Stats()
        self.downstream = downstream(self)
        self._out = self.downstream.out
        self._held = ReorderBuffer()  # valid events the watermark has not passed yet
        self.clock = StreamClock(config.intake.future_tolerance_seconds)
        self._far = FarFuture()
        self._window = config.intake.reorder_window_seconds
        self._tick = config.segmentation.assign_tick_seconds
        self._tick_end = -math.inf
        # per input (topic, partition): the offset after the last record fed from it
        self.positions: dict[tuple[str, int], int] = {}

    # ---- intake -------------------------------------------------------------

    def feed(self, raw: bytes | None, origin: Origin | None = None,
             fmt: Format | None = None) -> list[Output]:
        """Take one raw record; returns the outputs it (or the watermark it moved) caused.

        With an ``origin``, a record at or before an offset already fed from its input
        partition is a re-delivery (a router re-forwards its uncommitted records after a
        rebalance) and counts as a duplicate: exact, whatever its event time. ``fmt``
        overrides the configured format (``intake.format``, ``intake.formats``).
        """
        if self._redelivered(origin):
            return []
        self._admit_read(self.intake.read(raw, None if origin is None else origin.topic, fmt),
                         origin)
        return self._take()

    def feed_read(self, items: list[Item], origin: Origin | None = None) -> list[Output]:
        """As :meth:`feed`, for a record already read (:mod:`workers.core.intake`) where it
        entered: the same outputs as feeding its bytes here."""
        if self._redelivered(origin):
            return []
        self._admit_read(items, origin)
        return self._take()

    def _redelivered(self, origin: Origin | None) -> bool:
        if origin is None:
            return False
        where = (origin.topic, origin.partition)
        if origin.offset < self.positions.get(where, 0):
            self.stats.events_read += 1
            self.stats.events_duplicate += 1
            return True
        self.positions[where] = origin.offset + 1
        return False

    def _admit_read(self, items: list[Item], origin: Origin | None) -> None:
        """Each event of a record counts as read; a refused one is a dead letter."""
        stats = self.stats
        if not items:  # a line without an event, such as a CSV header
            stats.records_without_events += 1
            return
        for item in items:
            stats.events_read += 1
            # a NamedTuple nobody subclasses: its type, not an isinstance walk, tells it
            if type(item) is Rejected:
                self._dead_letter(item.raw, item.code, item.detail, origin)
            else:  # the rest of Item: a Touchpoint (mypy narrows isinstance only)
                self.accept(item, origin)  # type: ignore[arg-type]

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
            self._held.push(tp)
        held = self._held
        while (ready := held.pop(watermark)) is not None:
            self._process(ready)

    def flush(self) -> list[Output]:
        """End of input (or an idle stream): process everything held, close the tick.

        Events that arrived before the stream had a clock are checked against it now:
        one far-future record among the first few is not processed either.
        """
        for tp, origin in self._far.drain():  # the stream never followed them there
            self._dead_letter(tp.record(), "future_time", _FUTURE_DETAIL, origin)
        horizon = self.clock.limit
        while (waiting := self._held.pop(math.inf)) is not None:
            if waiting.ts > horizon:
                self.stats.events_valid -= 1
                self._dead_letter(waiting.record(), "future_time", _FUTURE_DETAIL, None)
            else:
                self._process(waiting)
        self.downstream.run_tick(final=True)
        return self._take()

    def _take(self) -> list[Output]:
        out = self._out
        if not out:  # most records cause none: the list both halves append to stays
            return []
        self._out = self.downstream.out = []  # the downstream appends to it as well
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
            self.downstream.run_tick()
            # ts // tick, by Python's rule for floats (C arithmetic where compiled, whose
            # "//" would be floor(ts / tick): not always the same double)
            ticks, _ = divmod(ts, self._tick)
            self._tick_end = (ticks + 1) * self._tick
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
        if res.dropped:  # a counter's attribute is read and written only when it moves
            stats.identifiers_dropped += res.dropped
        if res.merged:
            self._merged(pid, res.merged, tp)
        self.downstream.event(tp, res)

    def _merged(self, survivor: ProfileId, absorbed: Sequence[ProfileId],
                tp: Touchpoint) -> None:
        """An ``identity_merge/v1``: ``tp`` linked the profiles ``absorbed`` to
        ``survivor``."""
        self.stats.identity_merges += 1
        merged_ids = sorted(absorbed)
        self._out.append(Output("identity_merge", survivor, {
            "schema": "identity_merge/v1",
            "event_id": digest("merge", survivor, *merged_ids, tp.event_id),
            "profile_id": survivor,
            "merged_profile_ids": merged_ids,
            "identifiers": identifiers_of(self.graph.identifiers(survivor), KNOWN_IDENTIFIERS,
                                          self.config.output.hash_identifiers),
            "trigger_event_id": tp.event_id,
            "occurred_at": format_time(tp.ts),
        }))

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
        self.downstream.forget(pid, members, request)

    def _drop_forgotten_events(self) -> None:
        """Events held back (reorder window, far future) that name a forgotten identifier."""
        names = self.forgotten.names
        dropped = self._held.drop(lambda tp: names(tp.identity))
        self.stats.events_valid -= dropped  # counted valid when they entered the buffer
        far = self._far.drop(lambda tp: names(tp.identity))
        self.stats.events_forgotten += dropped + far

    # ---- state as data (workers.state.changelog writes and reads it) ----------------

    def meta_state(self) -> dict[str, Any]:
        """Everything but the keyed stores (identities, de-dup ids, held events; the
        downstream's profiles) and the model: small, written whole at every commit."""
        return {
            "stats": self.stats, "clock": self.clock, "tick_end": self._tick_end,
            "positions": self.positions, "dedup": self.dedup.meta(),
            "fields_dropped": self.intake.parser.optional.dropped,
            "values_coerced": self.intake.parser.optional.coerced,
            **self.downstream.meta_state(),
        }

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.stats = meta["stats"]
        self.downstream.load_meta(meta)
        self.clock, self._tick_end = meta["clock"], meta["tick_end"]
        self.positions = meta["positions"]
        self.dedup.load_meta(meta["dedup"])
        self.intake.parser.optional.dropped = meta["fields_dropped"]
        self.intake.parser.optional.coerced = meta["values_coerced"]

    def held_events(self) -> dict[str, tuple[bool, Touchpoint, Origin | None]]:
        """Events not processed yet, by id: (far ahead?, event, origin)."""
        held: dict[str, tuple[bool, Touchpoint, Origin | None]] = {
            tp.event_id: (False, tp, None) for tp in self._held}
        for tp, origin in self._far.waiting():
            held[tp.event_id] = (True, tp, origin)
        return held

    def hold_again(self, far: bool, tp: Touchpoint, origin: Origin | None) -> None:
        """An event of :meth:`held_events` read back from the changelog."""
        if far:
            self._far.hold(tp, origin)
        else:
            self._held.push(tp)

    # ---- read side ------------------------------------------------------------

    @property
    def held(self) -> int:
        """Events whose outcome is not final yet: in the event-time buffer (valid so far),
        or waiting as far-future events (not counted yet)."""
        return len(self._held) + len(self._far)

    @property
    def buffered(self) -> int:
        """Valid events in the event-time buffer (counted valid, not processed yet)."""
        return len(self._held)

    def lookup(self, key: str) -> ProfileId | None:
        """A profile by its id or by any identifier, written ``value`` or ``type:value``."""
        if key in self.graph.profiles():
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


_FUTURE_DETAIL = ("occurred_at is further ahead of the stream's clock than"
                  " intake.future_tolerance_seconds")
