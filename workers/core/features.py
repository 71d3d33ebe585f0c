"""Per-profile features, declared in configuration.

Counts of event types, channels and devices decay with event time: each is kept
as ``S = sum(exp(lam * (t_i - base)))`` against a per-profile ``base`` time, so
adding events is order-independent and two profiles merge by aligning their
bases and adding. Shares (a type's part of all activity) are ratios of such
sums, so they need no "now" and are the same in a replay as live.

The same counts are kept a second time with a short half-life (``recent.*``), with
payments and order values decayed too: what a person does these days, for the model
to segment on, while the slower counts and the lifetime figures still describe their
history. A person who changed habits moves with what they do now, not with a blend of
the old and the new; both sets merge the same way.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

from workers.config import FeaturesConfig
from workers.core.touchpoints import Touchpoint

# exp() of more than this would overflow soon; rebase before (e^50 ~ 5e21)
_REBASE_EXPONENT = 50.0
_RECENT_PRODUCTS = 8  # repeat views are counted against this many recent products
# the newest sessions kept as spans: an event older than all of them is not placed exactly
_KEPT_SESSIONS = 8
# A profile remembers the ids of its last 16 events (8-byte hashes): the event-time
# de-dup window cannot see a duplicate that arrives after the stream moved past its
# time (a partition catching up a backlog behind the others); this ring can, in 128 B.
# Oldest first: an event's hash joins at the end as the first one leaves (one slice and
# one concatenation; states of earlier versions, which wrote at event_count % 16, hold
# the same ids in another order, and only the order the next ones leave in differs).
_RECENT_IDS = 16
# the prefix of the recent set's feature names
RECENT = "recent."
# share groups as (first, end, wanted?); empty when none is wanted
_Groups = tuple[tuple[int, int, bool], ...]
# a one-element array repeated to size: array(typecode, bytes) over-allocates by ~1/8
_DOUBLE = array("d", [0.0])
_NO_ID = bytes(8)
_NO_IDS = _NO_ID * _RECENT_IDS
_NEVER = -math.inf  # one float for every profile not learned from yet, not one each


class FeatureSpec:
    """Index maps and derived feature names compiled once from configuration."""

    def __init__(self, cfg: FeaturesConfig) -> None:
        self.cfg = cfg
        self.lam = math.log(2) / (cfg.half_life_days * 86400.0)
        self.recent_lam = math.log(2) / (cfg.recent_half_life_days * 86400.0)
        # both sets of sums share a base time, rebased when the faster decay needs it
        self.rebase_rate = max(self.lam, self.recent_lam)
        self.session_gap = cfg.session_gap_minutes * 60.0
        self.types = {t: i for i, t in enumerate(cfg.event_types)}
        n_types = len(cfg.event_types) + 1  # + other
        self.channel_base = n_types
        self.channels = {c: i + self.channel_base for i, c in enumerate(cfg.channels)}
        self.device_base = self.channel_base + len(cfg.channels) + 1
        self.devices = {d: i + self.device_base for i, d in enumerate(cfg.devices)}
        self.payment_base = self.device_base + len(cfg.devices) + 1
        self.payments = {p: i + self.payment_base for i, p in enumerate(cfg.payment_methods)}
        self.size = self.payment_base + len(cfg.payment_methods) + 1
        self.conversions = frozenset(cfg.conversion_types)
        self.engagements = frozenset(cfg.engagement_types)
        self.product_view = "product_view"
        # read as an event is folded in: C fields where compiled, not a config's attributes
        self.product_property = cfg.product_property
        self.revenue_property = cfg.revenue_property
        self.payment_property = cfg.payment_property
        self.max_traits = cfg.max_traits
        names = [f"type.{t}" for t in cfg.event_types] + ["type.other"]
        names += [f"channel.{c}" for c in cfg.channels] + ["channel.other"]
        names += [f"device.{d}" for d in cfg.devices] + ["device.other"]
        names += [f"payment.{p}" for p in cfg.payment_methods] + ["payment.other"]
        names += ["monetary_log", "aov_log", "orders_log", "frequency_log", "sessions_log",
                  "session_minutes", "repeat_view_ratio", "traits_disclosed"]
        for trait, values in cfg.traits.categorical.items():
            names += [f"trait.{trait}={v}" for v in values]
        names += [f"trait.{trait}" for trait in cfg.traits.numeric]
        # the recent set: the shares' names again, and the recent basket; after the traits
        self.recent_base = len(names)
        names += [f"{RECENT}{n}" for n in names[:self.size]] + [f"{RECENT}aov_log"]
        self.names: list[str] = names
        self.groups = ((0, self.channel_base), (self.channel_base, self.device_base),
                       (self.device_base, self.payment_base), (self.payment_base, self.size))
        # the vector of someone who did nothing (each vector starts as a copy of it): no
        # shares, no figures, and as traits, none declared (a numeric one's middle value)
        no_traits = [0.0] * sum(len(v) for v in cfg.traits.categorical.values())
        no_traits += [0.5] * len(cfg.traits.numeric)
        self.blank = [0.0] * (self.size + 8) + no_traits + [0.0] * (self.size + 1)
        self.index = {n: i for i, n in enumerate(names)}
        self.every = frozenset(range(len(names)))
        # which share groups a set of wanted columns reads, per set (see wanted_groups)
        self._plans: dict[frozenset[int], tuple[_Groups, _Groups, bool]] = {}
        # the declared traits' columns, after the counts' shares and 8 derived features
        self.trait_columns = frozenset(range(self.size + 8, self.recent_base))

    def wanted_groups(self, wanted: frozenset[int]) -> tuple[_Groups, _Groups, bool]:
        """The share groups ``wanted`` reads any column of, in the slower and in the recent
        set, and whether it reads a trait (worked out once per set of columns: this runs
        per vector)."""
        plan = self._plans.get(wanted)
        if plan is None:
            slow, fast = (tuple((lo, hi, not wanted.isdisjoint(range(offset + lo, offset + hi)))
                                for lo, hi in self.groups) for offset in (0, self.recent_base))
            plan = self._plans[wanted] = (slow if any(on for *_, on in slow) else (),
                                          fast if any(on for *_, on in fast) else (),
                                          not wanted.isdisjoint(self.trait_columns))
        return plan

    def label(self, name: str) -> str:
        """Words for a feature; a recent one reads as its slower twin unless labelled."""
        if name.startswith(RECENT) and name not in self.cfg.labels:
            name = name[len(RECENT):]
        return self.cfg.labels.get(name, name)


class ProfileState:
    """Everything a profile accumulates; kept small (see BENCHMARKS.md, memory)."""

    __slots__ = ("base", "closed_seconds", "closed_sessions", "conversions", "counts",
                 "engaged", "event_count", "first_seen", "last_learned", "last_seen", "orders",
                 "product_views", "recent_ids", "recent_products", "repeat_views", "revenue",
                 "segment", "spans", "traits")

    def __init__(self, size: int, ts: float) -> None:
        # the counts (14-day decay; payments lifetime), then the recent set: the same with
        # the short half-life (payments too) and the decayed orders and revenue. One array:
        # a second would cost its own header in every profile
        self.counts = _DOUBLE * (2 * size + 2)
        self.base = ts
        self.event_count = 0
        self.first_seen = ts
        self.last_seen = ts
        # sessions as [start, end] spans in event time, flat and sorted: a late event
        # lands in (or joins) the session it belongs to, so the count and the lengths
        # do not depend on arrival order; the oldest spans beyond _KEPT_SESSIONS are
        # only counted (closed_*)
        self.spans: list[float] = []
        self.closed_sessions = 0
        self.closed_seconds = 0.0
        self.revenue = 0.0
        self.orders = 0
        self.conversions = 0
        self.engaged = 0
        self.product_views = 0
        self.repeat_views = 0
        # a tuple: no product viewed costs nothing (the one empty tuple), a few their size
        self.recent_products: tuple[str, ...] = ()
        # 8-byte hashes in one bytes object: 32 B less than an array (and its buffer)
        self.recent_ids = _NO_IDS
        self.traits: dict[str, tuple[float, Any]] | None = None
        self.segment: int | None = None
        self.last_learned = _NEVER

    def __getstate__(self) -> list[Any]:
        """Compact and store-independent: arrays as bytes, then the other slots in order.

        Lists, not tuples, all through (the recent products, each trait's (time, value)):
        msgpack packs a list as it is and a tuple as an extension value of its own, which
        made packing a profile's state cost 12 µs instead of 5 (``bench.py codec``; a
        changelog writes every profile changed since its last commit). Earlier versions
        wrote tuples: read alike.
        """
        scalars = [getattr(self, name) for name in _SCALARS]
        scalars[_PRODUCTS] = list(self.recent_products)
        traits = self.traits
        if traits:
            scalars[_TRAITS] = {key: list(stated) for key, stated in traits.items()}
        return [self.counts.tobytes(), self.recent_ids, *scalars]

    def __setstate__(self, state: Sequence[Any]) -> None:
        self.counts = _doubles(state[0])
        self.recent_ids = bytes(state[1])
        for name, value in zip(_SCALARS, state[2:], strict=True):
            setattr(self, name, value)
        self.recent_products = tuple(self.recent_products)
        traits = self.traits
        if traits:
            self.traits = {key: tuple(stated) for key, stated in traits.items()}

    @property
    def sessions(self) -> int:
        return self.closed_sessions + len(self.spans) // 2

    @property
    def session_seconds(self) -> float:
        spans = self.spans
        return self.closed_seconds + math.fsum(spans[i + 1] - spans[i]
                                               for i in range(0, len(spans), 2))

    def seen(self, id_hash: bytes) -> bool:
        """Is this 8-byte event id hash among the profile's recent ones (8 zero bytes
        never are)?"""
        ring = self.recent_ids
        first = id_hash[0]
        # each slot's first byte read in place (compiled: a C comparison, where a substring
        # search cost ~900 instructions an event); the slot itself compared only on a match
        for at in range(0, len(ring), 8):
            if ring[at] == first and ring[at:at + 8] == id_hash:
                return True
        return False

    def update(self, spec: FeatureSpec, tp: Touchpoint, id_hash: bytes = b"") -> int:
        """Fold one event in. Called in event-time order except for very late events.

        Returns how many of its trait keys were not kept (``features.max_traits``).
        """
        if id_hash:
            self.recent_ids = self.recent_ids[8:] + id_hash
        event = tp  # compiled, a Touchpoint: its time and type are C fields ...
        ts = event.ts
        type_ = event.type
        data = tp.data  # ... while data is an attribute (a property of CarriedTouchpoint)
        counts = self.counts
        size = spec.size  # where the recent set starts
        age = ts - self.base
        if age * spec.rebase_rate > _REBASE_EXPONENT:
            self._rebase(spec, ts)
            age = 0.0
        w = math.exp(spec.lam * age)
        r = math.exp(spec.recent_lam * age)
        i = spec.types.get(type_, spec.channel_base - 1)
        counts[i] += w
        counts[size + i] += r
        channel = data.get("channel")
        if channel is not None:
            i = spec.channels.get(channel, spec.device_base - 1)
            counts[i] += w
            counts[size + i] += r
        device = data.get("device")
        if device is not None:
            dtype = device.get("type")
            if dtype is not None:
                i = spec.devices.get(dtype, spec.payment_base - 1)
                counts[i] += w
                counts[size + i] += r
        self.event_count += 1
        if ts < self.first_seen:
            self.first_seen = ts
        if ts > self.last_seen:
            self.last_seen = ts
        self._session(ts, spec.session_gap)
        props = data.get("properties")
        if type_ in spec.conversions:
            self.conversions += 1
            if props is not None:
                self._purchase(spec, props, r)
        elif type_ in spec.engagements:
            self.engaged += 1
        elif type_ == spec.product_view and props is not None:
            self._product_view(props.get(spec.product_property))
        traits = data.get("traits")
        if traits:
            return self._declare(traits, ts, spec.max_traits)
        return 0

    def _session(self, ts: float, gap: float) -> None:
        """Fold an event time into the session spans (events <= gap apart share one)."""
        spans = self.spans
        if spans:
            begin = spans[-2]
            if ts >= begin:  # the usual case: in or after the latest session
                latest = spans[-1]
                if ts - latest > gap:
                    spans += (ts, ts)
                    self._close_oldest()
                elif ts > latest:
                    spans[-1] = ts
                return
        start = end = ts
        keep: list[float] = []
        for i in range(0, len(spans), 2):
            if spans[i] - gap <= ts <= spans[i + 1] + gap:  # joins (and may bridge) these
                start, end = min(start, spans[i]), max(end, spans[i + 1])
            else:
                keep += spans[i:i + 2]
        self.spans = _merged([*keep, start, end], gap)
        self._close_oldest()

    def _close_oldest(self) -> None:
        spans = self.spans
        while len(spans) > 2 * _KEPT_SESSIONS:
            self.closed_sessions += 1
            self.closed_seconds += spans[1] - spans[0]
            del spans[:2]

    def _purchase(self, spec: FeatureSpec, props: Mapping[str, Any], r: float) -> None:
        """An order at recent weight ``r``: lifetime figures, and the recent set's."""
        counts = self.counts
        size = spec.size
        revenue = props.get(spec.revenue_property)
        if (isinstance(revenue, int | float) and not isinstance(revenue, bool)
                and math.isfinite(revenue) and revenue > 0):
            self.revenue += revenue
            counts[2 * size + 1] += r * revenue
        self.orders += 1
        counts[2 * size] += r
        method = props.get(spec.payment_property)
        i = spec.payments.get(method, size - 1) if type(method) is str else size - 1
        counts[i] += 1.0
        counts[size + i] += r

    def _product_view(self, product: Any) -> None:
        if type(product) is not str:
            return
        self.product_views += 1
        recent = self.recent_products
        if product in recent:
            self.repeat_views += 1
            recent = tuple([p for p in recent if p != product])  # a loop where compiled
        elif len(recent) >= _RECENT_PRODUCTS:
            recent = recent[1:]
        self.recent_products = (*recent, product)

    def _declare(self, traits: Mapping[str, Any], ts: float, limit: int) -> int:
        """Explicit data: the latest statement in event time wins, per trait.

        At most ``limit`` distinct keys are kept, so a tracker that sends a new key
        on every event cannot grow a profile without bound; returns how many were not.
        """
        held = self.traits
        if held is None:
            held = self.traits = {}
        dropped = 0
        for key, value in traits.items():
            old = held.get(key)
            if old is None:
                if len(held) >= limit:
                    dropped += 1
                    continue
                held[key] = (ts, value)
            elif ts >= old[0]:
                held[key] = (ts, value)
        return dropped

    def _rebase(self, spec: FeatureSpec, new_base: float) -> None:
        scale = math.exp(spec.lam * (self.base - new_base))
        counts = self.counts
        for i in range(spec.payment_base):
            counts[i] *= scale
        scale = math.exp(spec.recent_lam * (self.base - new_base))
        for i in range(spec.size, len(counts)):
            counts[i] *= scale
        self.base = new_base

    def absorb(self, spec: FeatureSpec, other: ProfileState) -> int:
        """Merge another profile's state into this one: counts add, traits by time.

        Returns how many trait keys were not kept (``features.max_traits``).
        """
        if other.base > self.base:
            self._rebase(spec, other.base)
        scale = math.exp(spec.lam * (other.base - self.base))
        counts, theirs = self.counts, other.counts
        for i in range(spec.payment_base):
            counts[i] += theirs[i] * scale
        for i in range(spec.payment_base, spec.size):
            counts[i] += theirs[i]
        scale = math.exp(spec.recent_lam * (other.base - self.base))
        for i in range(spec.size, len(counts)):
            counts[i] += theirs[i] * scale
        ids = [ring[at:at + 8] for ring in (self.recent_ids, other.recent_ids)
               for at in range(0, len(ring), 8) if ring[at:at + 8] != _NO_ID][-_RECENT_IDS:]
        self.event_count += other.event_count
        self.recent_ids = _NO_ID * (_RECENT_IDS - len(ids)) + b"".join(ids)
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        # a session both profiles were active in (a device, then a login) counts once
        self.spans = _merged(self.spans + other.spans, spec.session_gap)
        self.closed_sessions += other.closed_sessions
        self.closed_seconds += other.closed_seconds
        self._close_oldest()
        self.revenue += other.revenue
        self.orders += other.orders
        self.conversions += other.conversions
        self.engaged += other.engaged
        self.product_views += other.product_views
        self.repeat_views += other.repeat_views
        mine = self.recent_products
        self.recent_products = (*mine, *(p for p in other.recent_products
                                         if p not in mine))[-_RECENT_PRODUCTS:]
        dropped = 0
        if other.traits:
            for key, (ts, value) in other.traits.items():
                dropped += self._declare({key: value}, ts, spec.max_traits)
        self.last_learned = max(self.last_learned, other.last_learned)
        return dropped

    def vector(self, spec: FeatureSpec, wanted: frozenset[int] | None = None) -> list[float]:
        """Derived features in ``spec.names`` order. With ``wanted``, the features outside
        it are not worked out (0.0, or the no-traits part): the assessment of every
        touched profile reads only the model's columns."""
        want = spec.every if wanted is None else wanted
        slow, fast, traits_wanted = spec.wanted_groups(want)
        out = spec.blank[:]  # written in place: no list grows, no zeros are copied twice
        c = self.counts
        if slow:
            _shares(out, 0, c, 0, slow)
        t = spec.size  # the first derived feature after the counts' shares
        sessions = self.sessions if t + 4 in want or t + 5 in want else 0
        if t in want:
            out[t] = math.log1p(self.revenue)
        if self.orders and t + 1 in want:
            out[t + 1] = math.log1p(self.revenue / self.orders)
        if t + 2 in want:
            out[t + 2] = math.log1p(self.orders)
        if t + 3 in want:
            out[t + 3] = math.log1p(self.event_count / max(1.0, (self.last_seen - self.first_seen)
                                                          / 604800.0))
        if t + 4 in want:
            out[t + 4] = math.log1p(sessions)
        if sessions and t + 5 in want:
            out[t + 5] = self.session_seconds / 60.0 / sessions
        if self.product_views and t + 6 in want:
            out[t + 6] = self.repeat_views / self.product_views
        traits = self.traits
        if traits:
            if t + 7 in want:
                out[t + 7] = float(len(traits))
            if traits_wanted:
                out[t + 8:spec.recent_base] = self._traits(spec, traits)
        if fast:
            _shares(out, spec.recent_base, c, t, fast)
        if spec.recent_base + t in want:
            out[spec.recent_base + t] = _basket(c, t)
        return out

    @staticmethod
    def _traits(spec: FeatureSpec, traits: dict[str, tuple[float, Any]]) -> list[float]:
        """The declared traits one-hot (categorical) and scaled to [0, 1] (numeric)."""
        out: list[float] = []
        for trait, values in spec.cfg.traits.categorical.items():
            held = traits.get(trait)
            declared = held[1] if held is not None else None
            out.extend([1.0 if declared == v else 0.0 for v in values])
        for trait, (low, high) in spec.cfg.traits.numeric.items():
            held = traits.get(trait)
            value = held[1] if held is not None else None
            if isinstance(value, int | float) and not isinstance(value, bool) and high > low:
                out.append(min(1.0, max(0.0, (float(value) - low) / (high - low))))
            else:
                out.append(0.5)  # unknown: the middle of the range, not a made-up extreme
        return out

    def named(self, spec: FeatureSpec) -> dict[str, float]:
        return {n: round(v, 6) for n, v in zip(spec.names, self.vector(spec), strict=True)}


class ColumnReader:
    """The values of a few columns (a model's) read straight from a profile's state:
    float for float what ``[state.vector(spec, wanted)[c] for c in columns]`` gives,
    without building the hundred-odd features an assessment does not read (it runs for
    every profile touched in a tick). The recent set's shares and basket are read from
    the counts; a model with any other column reads the whole vector."""

    def __init__(self, spec: FeatureSpec, columns: Sequence[int]) -> None:
        self.spec = spec
        self.columns = tuple(columns)
        self.wanted = frozenset(self.columns)
        size, base = spec.size, spec.recent_base
        groups = [(size + lo, size + hi) for lo, hi in spec.groups]
        basket = base + size  # recent.aov_log
        # per column, the share group it reads (its place in ``used``) and its count's
        # index, or group -1 for the recent basket; when some column is neither, fill() reads
        # the whole vector
        group_of: list[int] = []
        count_of: list[int] = []
        used: list[tuple[int, int]] = []
        for column in self.columns:
            count = column - base + size  # the column's count in the recent set
            group = next((g for g in groups if g[0] <= count < g[1]), None)
            if column == basket:
                group_of.append(-1)
                count_of.append(0)
            elif base <= column < base + size and group is not None:
                if group not in used:
                    used.append(group)
                group_of.append(used.index(group))
                count_of.append(count)
        self.direct = len(group_of) == len(self.columns)  # every column read from the counts
        # flat arrays of C integers and doubles where compiled: fill() runs no Python
        # object per column
        self.group_of = array("q", group_of)
        self.count_of = array("q", count_of)
        self.group_lo = array("q", [lo for lo, _ in used])
        self.group_hi = array("q", [hi for _, hi in used])
        self.inverses = _DOUBLE * len(used)

        # where fill() writes: one per reader, not one per profile; ``view`` is the same
        # array, a typed view the compiled build acquires once, not at every call
        self.scratch = _DOUBLE * len(self.columns)
        self.view = self.scratch

    def __call__(self, state: ProfileState) -> list[float]:
        self.fill(state)
        return self.scratch.tolist()

    def fill(self, state: ProfileState) -> None:
        """The columns' values of ``state`` into :attr:`scratch`, overwritten by the next
        call: an assessment that provably changes nothing allocates no list for them."""
        out = self.view
        if not self.direct:
            vector = state.vector(self.spec, self.wanted)
            for n, column in enumerate(self.columns):
                out[n] = vector[column]
            return
        counts = state.counts
        inverses = self.inverses
        group_lo, group_hi = self.group_lo, self.group_hi
        for group in range(len(inverses)):
            total = _total(counts, group_lo[group], group_hi[group])  # as _shares sums them
            inverses[group] = 1.0 / total if total > 0 else 0.0  # counts >= 0: 0.0 * v = 0.0
        group_of, count_of = self.group_of, self.count_of
        for n in range(len(group_of)):
            group = group_of[n]
            if group >= 0:
                out[n] = counts[count_of[n]] * inverses[group]
            else:
                out[n] = _basket(counts, self.spec.size)


def _total(counts: array[float], lo: int, hi: int) -> float:
    """``counts[lo:hi]`` summed left to right (as ``sum()`` of floats did before Python
    3.12: the same float compiled or not, on every version)."""
    total = 0.0
    for i in range(lo, hi):
        total += counts[i]
    return total


def _basket(c: array[float], size: int) -> float:
    """recent.aov_log: the decayed revenue per decayed order, 0.0 without a recent order."""
    orders = c[2 * size]
    return math.log1p(c[2 * size + 1] / orders) if orders > 0 else 0.0


def _shares(out: list[float], at: int, c: array[float], offset: int,
            groups: _Groups) -> None:
    """Each wanted group's counts (from ``offset`` in ``c``) as shares of the group's
    total, written into ``out`` from ``at``; the other groups', and a group's without a
    count, are left as they are (0.0)."""
    for lo, hi, on in groups:
        if not on:
            continue
        total = _total(c, offset + lo, offset + hi)
        if total > 0:
            inverse = 1.0 / total
            for i in range(lo, hi):  # a C loop where compiled: no slice
                out[at + i] = c[offset + i] * inverse


def _merged(spans: list[float], gap: float) -> list[float]:
    """Flat [start, end] spans sorted, those less than ``gap`` apart joined into one."""
    pairs = sorted(zip(spans[::2], spans[1::2], strict=True))
    out: list[float] = []
    for start, end in pairs:
        if out and start - out[-1] <= gap:
            out[-1] = max(out[-1], end)
        else:
            out += (start, end)
    return out[:]  # a copy is allocated to size: most profiles hold one session, 2 of 8 slots


_SCALARS = tuple(s for s in ProfileState.__slots__ if s not in ("counts", "recent_ids"))
_PRODUCTS = _SCALARS.index("recent_products")
_TRAITS = _SCALARS.index("traits")


def _doubles(data: bytes) -> array[float]:
    """An array of the doubles in ``data``, allocated to its exact size."""
    out = _DOUBLE * (len(data) // _DOUBLE.itemsize)
    memoryview(out).cast("B")[:] = data
    return out
