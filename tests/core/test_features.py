"""Per-profile features (workers/features.py): decayed shares, merges, RFM, sessions, traits.

Fast: no broker. Touchpoints are built through the real parser so the tests see
exactly what the pipeline feeds ``ProfileState.update``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import random
from array import array
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.core.features import ColumnReader, FeatureSpec, ProfileState
from workers.core.touchpoints import Touchpoint, TouchpointParser, format_time, parse_time

CONFIG = load()
SPEC = FeatureSpec(CONFIG.features)
PARSER = TouchpointParser()
T0 = parse_time("2025-03-01T00:00:00Z")
DAY = 86400.0
HALF_LIFE = CONFIG.features.half_life_days * DAY
RECENT_HALF_LIFE = CONFIG.features.recent_half_life_days * DAY
_ids = itertools.count()


def tp(type_: str, t: float, **extra: Any) -> Touchpoint:
    data: dict[str, Any] = {"event_id": f"e{next(_ids)}", "occurred_at": format_time(t),
                            "type": type_, "identity": {"user_id": "u1"}}
    data.update(extra)
    return PARSER.parse(orjson.dumps(data))


def state_of(events: list[Touchpoint], spec: FeatureSpec = SPEC) -> ProfileState:
    state = ProfileState(spec.size, events[0].ts)
    for event in events:
        state.update(spec, event)
    return state


def feats(state: ProfileState, spec: FeatureSpec = SPEC) -> dict[str, float]:
    return dict(zip(spec.names, state.vector(spec), strict=True))


def close(a: dict[str, float], b: dict[str, float], keys: list[str] | None = None,
          tol: float = 1e-9) -> list[str]:
    """Names of features that differ by more than ``tol``."""
    return [k for k in (keys or list(a)) if abs(a[k] - b[k]) > tol]


def mixed_events(rng: random.Random, n: int = 40) -> list[Touchpoint]:
    """Events over three weeks with types, channels, devices, purchases and traits."""
    types = ["page_view", "product_view", "search", "purchase", "email_open", "ad_click"]
    channels = ["web", "email", "mobile_app", "ads"]
    devices = ["mobile", "desktop", "tablet"]
    out = []
    for i in range(n):
        t = T0 + rng.uniform(0, 21 * DAY)
        type_ = rng.choice(types)
        extra: dict[str, Any] = {"channel": rng.choice(channels),
                                 "device": {"type": rng.choice(devices)}}
        if type_ == "purchase":
            extra["properties"] = {"revenue": round(rng.uniform(5, 200), 2),
                                   "payment_method": rng.choice(["card", "paypal", "cash"])}
        elif type_ == "product_view":
            extra["properties"] = {"product_id": f"sku{rng.randrange(4)}"}
        if i % 7 == 0:
            extra["traits"] = {"gender": rng.choice(["female", "male"]),
                               "age": rng.randrange(18, 80)}
        out.append(tp(type_, t, **extra))
    return out


# order-independent features: everything but the session ones and repeat views
DECAYED = [n for n in SPEC.names if n.split(".")[0] in ("type", "channel", "device", "payment")]
RECENT = [n for n in SPEC.names if n.startswith("recent.")]
ORDER_FREE = DECAYED + RECENT + ["monetary_log", "aov_log", "orders_log", "frequency_log",
                                 "traits_disclosed"] + [n for n in SPEC.names
                                                        if n.startswith("trait.")]


# ---- decayed shares ---------------------------------------------------------------


def test_type_shares_reflect_the_event_mix() -> None:
    events = [tp("page_view", T0 + i) for i in range(3)] + [tp("purchase", T0 + 5)]
    f = feats(state_of(events))
    assert f["type.page_view"] == pytest.approx(0.75, abs=1e-6)
    assert f["type.purchase"] == pytest.approx(0.25, abs=1e-6)
    assert sum(f[n] for n in SPEC.names if n.startswith("type.")) == pytest.approx(1.0)
    assert f["type.search"] == 0.0


def test_recent_events_weigh_more_by_half_life() -> None:
    # one page_view, then one search a half-life later: the search counts twice as much
    events = [tp("page_view", T0), tp("search", T0 + HALF_LIFE)]
    f = feats(state_of(events))
    assert f["type.search"] == pytest.approx(2 / 3, rel=1e-9)
    assert f["type.page_view"] == pytest.approx(1 / 3, rel=1e-9)
    # two half-lives: 4 to 1
    f = feats(state_of([tp("page_view", T0), tp("search", T0 + 2 * HALF_LIFE)]))
    assert f["type.search"] == pytest.approx(0.8, rel=1e-9)


def test_the_recent_set_weighs_by_its_own_shorter_half_life() -> None:
    events = [tp("page_view", T0), tp("search", T0 + RECENT_HALF_LIFE)]
    f = feats(state_of(events))
    assert RECENT_HALF_LIFE < HALF_LIFE
    assert f["recent.type.search"] == pytest.approx(2 / 3, rel=1e-9)
    assert f["type.search"] < f["recent.type.search"]


def test_a_changed_habit_shows_in_the_recent_set_and_its_basket() -> None:
    """Ten days of web purchases paid by card, then twenty of app purchases with a
    wallet: the recent set is the new habit; the 14-day shares still hold some of the
    old one, lifetime payments and basket a third of it."""
    assert RECENT_HALF_LIFE <= 5 * DAY
    old = [tp("purchase", T0 + i * DAY, channel="web",
              properties={"revenue": 500, "payment_method": "card"}) for i in range(10)]
    new = [tp("purchase", T0 + (10 + i) * DAY, channel="mobile_app",
              properties={"revenue": 20, "payment_method": "wallet"}) for i in range(20)]
    f = feats(state_of(old + new))
    assert f["payment.wallet"] == pytest.approx(2 / 3)
    assert f["recent.payment.wallet"] > 0.9
    assert f["recent.channel.mobile_app"] > 0.9 > f["channel.mobile_app"]
    assert f["aov_log"] == pytest.approx(math.log1p(5400 / 30))
    assert math.log1p(20) < f["recent.aov_log"] < math.log1p(100)


def test_the_recent_basket_is_the_decayed_revenue_per_decayed_order() -> None:
    events = [tp("purchase", T0, properties={"revenue": 100, "payment_method": "card"}),
              tp("purchase", T0 + RECENT_HALF_LIFE,
                 properties={"revenue": 10, "payment_method": "paypal"})]
    f = feats(state_of(events))
    assert f["recent.aov_log"] == pytest.approx(math.log1p((100 + 2 * 10) / 3), rel=1e-9)
    assert f["recent.payment.paypal"] == pytest.approx(2 / 3, rel=1e-9)
    assert f["recent.type.purchase"] == 1.0


def test_channel_and_device_shares() -> None:
    events = [tp("page_view", T0, channel="web", device={"type": "mobile"}),
              tp("page_view", T0 + 1, channel="web", device={"type": "mobile"}),
              tp("page_view", T0 + 2, channel="email", device={"type": "desktop"}),
              tp("page_view", T0 + 3)]  # no channel, no device: not counted in their mix
    f = feats(state_of(events))
    assert f["channel.web"] == pytest.approx(2 / 3)
    assert f["channel.email"] == pytest.approx(1 / 3)
    assert f["device.mobile"] == pytest.approx(2 / 3)
    assert f["device.desktop"] == pytest.approx(1 / 3)


def test_no_channel_or_device_gives_zero_shares_not_nan() -> None:
    f = feats(state_of([tp("page_view", T0)]))
    for name in SPEC.names:
        assert math.isfinite(f[name]), name
        if name.startswith(("channel.", "device.", "payment.")):
            assert f[name] == 0.0, name


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_events_in_any_order_give_the_same_order_free_features(seed: int) -> None:
    rng = random.Random(seed)
    events = mixed_events(rng)
    reference = feats(state_of(sorted(events, key=lambda e: e.ts)))
    for _ in range(5):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert close(reference, feats(state_of(shuffled)), ORDER_FREE) == []
    assert close(reference, feats(state_of(events[::-1])), ORDER_FREE) == []


def test_session_features_do_not_depend_on_arrival_order() -> None:
    events = [tp("page_view", T0), tp("page_view", T0 + 600),  # session 1: 10 min
              tp("page_view", T0 + 7200), tp("page_view", T0 + 7800)]  # session 2: 10 min
    in_order = feats(state_of(events))
    late_first_session = feats(state_of(events[2:] + events[:2]))
    assert close(in_order, late_first_session, ["sessions_log", "session_minutes"]) == []
    assert state_of(events[2:] + events[:2]).sessions == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sessions_in_any_arrival_order_equal_the_time_ordered_ones(seed: int) -> None:
    """Shuffled clicks of six visits (as many sessions as a profile keeps exactly), some
    visits close enough that one late click bridges two of them."""
    rng = random.Random(seed)
    times = []
    for visit in range(6):
        start = T0 + visit * 3 * 3600.0 + rng.uniform(0, 2 * 3600.0)
        times += [start + rng.uniform(0, 1500.0) for _ in range(rng.randint(1, 6))]
    times.append(max(times) + 1700.0)
    events = [tp("page_view", t) for t in times]
    ordered = state_of(sorted(events, key=lambda e: e.ts))
    for _ in range(5):
        shuffled = events[:]
        rng.shuffle(shuffled)
        state = state_of(shuffled)
        assert state.sessions == ordered.sessions
        assert state.session_seconds == pytest.approx(ordered.session_seconds, abs=1e-6)


# ---- merging ----------------------------------------------------------------------


def _split_merge(events_a: list[Touchpoint], events_b: list[Touchpoint],
                 absorb_into_a: bool = True) -> tuple[ProfileState, ProfileState]:
    a, b = state_of(events_a), state_of(events_b)
    if absorb_into_a:
        a.absorb(SPEC, b)
        merged = a
    else:
        b.absorb(SPEC, a)
        merged = b
    whole = state_of(sorted(events_a + events_b, key=lambda e: e.ts))
    return merged, whole


@pytest.mark.parametrize("into_a", [True, False])
def test_absorb_equals_one_profile_fed_all_events(into_a: bool) -> None:
    rng = random.Random(11)
    # a: the first ten days, b: days 12..30 (sessions do not overlap across the two)
    a_events = [e for e in mixed_events(rng, 60) if e.ts < T0 + 10 * DAY]
    b_events = [tp(e.type, e.ts + 12 * DAY, **{k: v for k, v in e.data.items() if k in
                                               ("channel", "device", "properties", "traits")})
                for e in mixed_events(rng, 60)]
    merged, whole = _split_merge(sorted(a_events, key=lambda e: e.ts),
                                 sorted(b_events, key=lambda e: e.ts), into_a)
    fm, fw = feats(merged), feats(whole)
    assert close(fw, fm, ORDER_FREE) == []
    assert close(fw, fm, ["sessions_log", "session_minutes"], tol=1e-6) == []
    assert merged.event_count == whole.event_count == len(a_events) + len(b_events)
    assert merged.revenue == pytest.approx(whole.revenue)
    assert merged.orders == whole.orders
    assert merged.sessions == whole.sessions
    assert merged.conversions == whole.conversions
    assert merged.engaged == whole.engaged
    assert merged.first_seen == whole.first_seen
    assert merged.last_seen == whole.last_seen
    assert [merged.counts[i] * math.exp(SPEC.lam * (merged.base - whole.base))
            for i in range(SPEC.payment_base)] == pytest.approx(
        list(whole.counts[:SPEC.payment_base]), rel=1e-9, abs=1e-12)
    assert [v * math.exp(SPEC.recent_lam * (merged.base - whole.base))
            for v in merged.counts[SPEC.size:]] == pytest.approx(
        list(whole.counts[SPEC.size:]), rel=1e-9, abs=1e-12)


def test_absorb_of_interleaved_sessions_counts_the_session_once() -> None:
    a = [tp("page_view", T0), tp("page_view", T0 + 300)]
    b = [tp("page_view", T0 + 120), tp("page_view", T0 + 600)]
    merged, whole = _split_merge(a, b)
    assert whole.sessions == 1
    assert close(feats(whole), feats(merged), ["sessions_log", "session_minutes"],
                 tol=1e-6) == []


@pytest.mark.parametrize("into_a", [True, False])
def test_absorb_keeps_the_latest_trait_statement(into_a: bool) -> None:
    # the newer statement sits in a; b (older) is absorbed into a, or a into b
    a = [tp("page_view", T0 + 5 * DAY, traits={"gender": "female", "age": 30})]
    b = [tp("page_view", T0, traits={"gender": "male", "age": 70, "income_band": "high"})]
    merged, whole = _split_merge(a, b, into_a)
    f = feats(merged)
    assert f["trait.gender=female"] == 1.0
    assert f["trait.gender=male"] == 0.0
    assert f["trait.age"] == pytest.approx((30 - 16) / (90 - 16))
    assert f["trait.income_band=high"] == 1.0  # only b said it: kept
    assert close(feats(whole), f, [n for n in SPEC.names if n.startswith("trait")]) == []


def test_absorb_across_a_very_long_gap_stays_finite() -> None:
    years = 365 * DAY
    a = [tp("page_view", T0), tp("page_view", T0 + 1)]
    b = [tp("search", T0 + 10 * years), tp("purchase", T0 + 10 * years,
                                             properties={"revenue": 10})]
    for into_a in (True, False):
        merged, whole = _split_merge(a, b, into_a)
        fm = feats(merged)
        assert all(math.isfinite(v) for v in fm.values())
        assert close(feats(whole), fm, DECAYED + RECENT) == []
        assert fm["type.search"] == pytest.approx(0.5, abs=1e-12)
        assert fm["recent.type.search"] == pytest.approx(0.5, abs=1e-12)


# ---- recent event ids -------------------------------------------------------------


def _hash(n: int) -> bytes:
    return hashlib.blake2b(str(n).encode(), digest_size=8).digest()


def _with_ids(ids: range) -> ProfileState:
    state = ProfileState(SPEC.size, T0)
    for n in ids:
        state.update(SPEC, tp("page_view", T0 + n), _hash(n))
    return state


def test_a_profile_remembers_its_last_16_event_ids() -> None:
    state = _with_ids(range(20))
    assert [state.seen(_hash(n)) for n in range(20)] == [False] * 4 + [True] * 16
    assert not state.seen(bytes(8))  # an empty slot is no event


def test_bytes_across_two_remembered_ids_are_not_an_id() -> None:
    state = _with_ids(range(2))
    assert not state.seen(_hash(0)[4:] + _hash(1)[:4])
    assert not state.seen(_hash(0)[1:] + _hash(1)[:1])


def test_absorb_keeps_the_newest_ids_of_both_profiles() -> None:
    a, b = _with_ids(range(10)), _with_ids(range(100, 110))
    a.absorb(SPEC, b)
    kept = [n for n in [*range(10), *range(100, 110)] if a.seen(_hash(n))]
    assert kept == [*range(4, 10), *range(100, 110)]
    a.update(SPEC, tp("page_view", T0 + 200), _hash(200))  # the oldest kept goes first
    assert not a.seen(_hash(4)) and a.seen(_hash(5)) and a.seen(_hash(200))


def test_ids_a_state_of_an_earlier_version_holds_are_still_seen() -> None:
    """Earlier states held the ids as an array of little-endian signed 64-bit ints."""
    state = _with_ids(range(3))
    ints = [int.from_bytes(_hash(n), "little", signed=True) for n in range(3)]
    old = state.__getstate__()
    state.__setstate__((old[0], array("q", ints + [0] * 13).tobytes(), *old[2:]))
    assert all(state.seen(_hash(n)) for n in range(3))


def test_a_ring_of_an_earlier_version_keeps_its_ids_and_takes_new_ones() -> None:
    """Earlier states wrote event n's id at slot n % 16: read as they are, every id is
    still seen, and each new event pushes out one id and no more."""
    state = _with_ids(range(20))
    old = state.__getstate__()
    positional = b"".join(_hash(n) for n in [*range(16, 20), *range(4, 16)])  # slot n % 16
    state.__setstate__((old[0], positional, *old[2:]))
    assert [n for n in range(20) if state.seen(_hash(n))] == list(range(4, 20))
    state.update(SPEC, tp("page_view", T0 + 200), _hash(200))
    assert state.seen(_hash(200)) and sum(state.seen(_hash(n)) for n in range(4, 20)) == 15


# ---- long gaps --------------------------------------------------------------------


def test_rebase_after_years_keeps_shares_and_does_not_overflow() -> None:
    years = 365 * DAY
    assert 3 * years > 50 * HALF_LIFE
    state = state_of([tp("page_view", T0)])
    state.update(SPEC, tp("search", T0 + 3 * years))
    state.update(SPEC, tp("search", T0 + 3 * years))
    state.update(SPEC, tp("purchase", T0 + 3 * years + HALF_LIFE))
    f = feats(state)
    # the page_view is 2^-78 old: gone; the purchase counts twice each search
    assert f["type.page_view"] < 1e-20
    assert f["type.search"] == pytest.approx(0.5, rel=1e-9)
    assert f["type.purchase"] == pytest.approx(0.5, rel=1e-9)
    assert all(math.isfinite(c) for c in state.counts)


def test_decades_of_steady_activity_never_overflow() -> None:
    # an event every 10 days for 60 years: without rebasing exp() would overflow
    state = state_of([tp("page_view", T0)])
    t = T0
    for i in range(2200):
        t += 10 * DAY
        state.update(SPEC, tp("page_view" if i % 2 else "search", t))
    assert all(math.isfinite(c) for c in state.counts)
    assert max(state.counts) < 1e30
    f = feats(state)
    # alternating with period 20 days: shares of the last two events, 10 days apart
    w = 2 ** (10 / CONFIG.features.half_life_days)
    # the last event (i = 2199, odd) is a page_view
    assert f["type.page_view"] == pytest.approx(w / (1 + w), rel=1e-6)


# ---- purchases ------------------------------------------------------------------


def test_revenue_aov_orders_and_payment_shares() -> None:
    events = [tp("purchase", T0, properties={"revenue": 100, "payment_method": "card"}),
              tp("purchase", T0 + DAY, properties={"revenue": 50.5, "payment_method": "paypal"}),
              tp("purchase", T0 + 2 * DAY, properties={"revenue": 9.5, "payment_method": "card"}),
              tp("page_view", T0 + 3 * DAY)]
    f = feats(state_of(events))
    assert f["monetary_log"] == pytest.approx(math.log1p(160))
    assert f["aov_log"] == pytest.approx(math.log1p(160 / 3))
    assert f["orders_log"] == pytest.approx(math.log1p(3))
    assert f["payment.card"] == pytest.approx(2 / 3)
    assert f["payment.paypal"] == pytest.approx(1 / 3)
    assert f["payment.other"] == 0.0


def test_bad_revenue_and_unknown_payment_method() -> None:
    """A negative revenue adds nothing; a numeric string was coerced at intake (counted
    there); an unknown payment method is "other"."""
    events = [tp("purchase", T0, properties={"revenue": -20, "payment_method": "crypto"}),
              tp("purchase", T0 + 1, properties={"revenue": "100", "payment_method": 3}),
              tp("purchase", T0 + 2, properties={"revenue": 40})]
    state = state_of(events)
    f = feats(state)
    assert state.revenue == 140
    assert state.orders == 3
    assert f["aov_log"] == pytest.approx(math.log1p(140 / 3))
    assert f["payment.other"] == 1.0  # the two named ones are unknown; the third names none


def test_no_purchase_gives_zero_monetary_features() -> None:
    f = feats(state_of([tp("page_view", T0), tp("add_to_cart", T0 + 5)]))
    assert f["monetary_log"] == f["aov_log"] == f["orders_log"] == 0.0


# ---- product views, sessions ---------------------------------------------------------


def test_repeat_product_views() -> None:
    products = ["a", "b", "a", "a", "c", "b"]
    events = [tp("product_view", T0 + i, properties={"product_id": p})
              for i, p in enumerate(products)]
    events.append(tp("product_view", T0 + 99))  # no product id: not a product view
    f = feats(state_of(events))
    assert f["repeat_view_ratio"] == pytest.approx(3 / 6)


def test_repeat_views_are_counted_against_recent_products_only() -> None:
    products = [f"p{i}" for i in range(9)] + ["p0", "p8"]  # p0 fell out of the recent 8
    events = [tp("product_view", T0 + i, properties={"product_id": p})
              for i, p in enumerate(products)]
    f = feats(state_of(events))
    assert f["repeat_view_ratio"] == pytest.approx(1 / 11)


def test_sessions_split_on_the_30_minute_gap() -> None:
    minute = 60.0
    times = [0, 10, 20,            # session 1: 20 minutes
             51, 56,               # 31 minutes later: session 2, 5 minutes
             85]                   # 29 minutes later: still session 2 -> 34 minutes
    f = feats(state_of([tp("page_view", T0 + m * minute) for m in times]))
    assert f["sessions_log"] == pytest.approx(math.log1p(2))
    assert f["session_minutes"] == pytest.approx((20 + 34) / 2)


def test_single_event_is_one_session_of_zero_minutes() -> None:
    f = feats(state_of([tp("page_view", T0)]))
    assert f["sessions_log"] == pytest.approx(math.log1p(1))
    assert f["session_minutes"] == 0.0


def test_frequency_is_events_per_week() -> None:
    events = [tp("page_view", T0 + i * DAY) for i in range(15)]  # 15 events over 2 weeks
    f = feats(state_of(events))
    assert f["frequency_log"] == pytest.approx(math.log1p(15 / 2))
    # less than a week counts as one week
    f = feats(state_of([tp("page_view", T0 + i) for i in range(6)]))
    assert f["frequency_log"] == pytest.approx(math.log1p(6))


# ---- traits -----------------------------------------------------------------------


def test_traits_one_hot_and_numeric_scaling() -> None:
    f = feats(state_of([tp("signup", T0, traits={"gender": "female", "age": 53,
                                                 "industry": "finance", "country": "DE"})]))
    assert f["trait.gender=female"] == 1.0
    assert f["trait.gender=male"] == f["trait.gender=other"] == 0.0
    assert f["trait.industry=finance"] == 1.0
    assert sum(f[n] for n in SPEC.names if n.startswith("trait.industry=")) == 1.0
    assert sum(f[n] for n in SPEC.names if n.startswith("trait.income_band=")) == 0.0
    assert f["trait.age"] == pytest.approx((53 - 16) / (90 - 16))
    assert f["traits_disclosed"] == 4.0


@pytest.mark.parametrize(("age", "expected"), [(16, 0.0), (90, 1.0), (5, 0.0), (120, 1.0),
                                               (34.5, 0.25)])
def test_age_is_scaled_and_clamped(age: float, expected: float) -> None:
    f = feats(state_of([tp("signup", T0, traits={"age": age})]))
    assert f["trait.age"] == pytest.approx(expected)


def test_unknown_age_and_unknown_category() -> None:
    f = feats(state_of([tp("signup", T0, traits={"gender": "nonbinary"})]))
    assert f["trait.age"] == 0.5
    assert sum(f[n] for n in SPEC.names if n.startswith("trait.gender=")) == 0.0
    f = feats(state_of([tp("page_view", T0)]))
    assert f["trait.age"] == 0.5
    assert f["traits_disclosed"] == 0.0


def test_latest_trait_statement_wins_whatever_the_arrival_order() -> None:
    new = tp("page_view", T0 + DAY, traits={"gender": "male"})
    old = tp("page_view", T0, traits={"gender": "female"})
    for events in ([old, new], [new, old]):
        f = feats(state_of(events))
        assert f["trait.gender=male"] == 1.0
        assert f["trait.gender=female"] == 0.0


# ---- other buckets, names ----------------------------------------------------------


def test_unknown_type_channel_and_device_go_to_other() -> None:
    f = feats(state_of([tp("webinar_join", T0, channel="other", device={"type": "other"}),
                        tp("page_view", T0 + 1, channel="web", device={"type": "mobile"})]))
    assert f["type.other"] == pytest.approx(0.5)
    assert f["channel.other"] == pytest.approx(0.5)
    assert f["device.other"] == pytest.approx(0.5)


def test_channel_missing_from_configuration_goes_to_other() -> None:
    cfg = dataclasses.replace(CONFIG.features, channels=["web", "email"],
                              event_types=["page_view"])
    spec = FeatureSpec(cfg)
    f = feats(state_of([tp("search", T0, channel="sms"), tp("page_view", T0 + 1, channel="web")],
                       spec), spec)
    assert f["channel.other"] == pytest.approx(0.5)
    assert f["channel.web"] == pytest.approx(0.5)
    assert f["type.other"] == pytest.approx(0.5)
    assert "channel.sms" not in f


def test_named_keys_equal_spec_names() -> None:
    state = state_of(mixed_events(random.Random(4)))
    named = state.named(SPEC)
    assert list(named) == SPEC.names
    # the counts' shares, 8 derived, the traits, then the recent shares and basket
    assert len(SPEC.names) == len(set(SPEC.names)) == SPEC.size + 8 + sum(
        len(v) for v in CONFIG.features.traits.categorical.values()) + len(
        CONFIG.features.traits.numeric) + SPEC.size + 1
    vector = state.vector(SPEC)
    assert all(named[n] == pytest.approx(v, abs=1e-6) for n, v in zip(SPEC.names, vector,
                                                                      strict=True))


def test_a_vector_of_some_columns_has_those_of_the_whole_vector_float_for_float() -> None:
    """A learn reads the model's columns of ``vector(spec, wanted)``: each must be the
    whole vector's, bit for bit, whichever columns are wanted (a column is placed where
    its name says: a slip of one place fails here); the others are 0.0, or what someone
    who declared no trait has there."""
    rng = random.Random(8)
    states = [state_of(mixed_events(rng, rng.randrange(1, 60))) for _ in range(100)]
    states.append(state_of([tp("page_view", T0)]))
    blank = ProfileState(SPEC.size, T0).vector(SPEC, frozenset())
    for state in states:
        whole = state.vector(SPEC)
        for size in (1, 5, 30, len(SPEC.names)):
            wanted = frozenset(rng.sample(range(len(SPEC.names)), size))
            some = state.vector(SPEC, wanted)
            assert len(some) == len(whole)
            assert [some[c].hex() for c in sorted(wanted)] == [
                whole[c].hex() for c in sorted(wanted)]
            assert all(some[c] in (0.0, blank[c], whole[c]) for c in range(len(some)))


# ---- reading a model's columns --------------------------------------------------------


@pytest.mark.parametrize("names", [
    # the default model's: recent shares and the recent basket
    [n for n in SPEC.names if n.startswith(("recent.type.", "recent.channel.", "recent.device.",
                                            "recent.payment.")) or n == "recent.aov_log"],
    ["recent.aov_log", "recent.channel.email"],  # out of order, groups left out
    ["recent.type.purchase", "monetary_log", "trait.age"],  # columns read from the vector
])
def test_a_reader_gives_a_vectors_columns_float_for_float(names: list[str]) -> None:
    """What an assessment reads of a profile must be what the whole vector says, bit for
    bit: outputs are the same with either."""
    columns = [SPEC.index[n] for n in names]
    read = ColumnReader(SPEC, columns)
    rng = random.Random(5)
    states = [state_of(mixed_events(rng, rng.randrange(1, 60))) for _ in range(200)]
    states.append(state_of([tp("page_view", T0)]))  # no channel, device or order: zeros
    for state in states:
        vector = state.vector(SPEC, frozenset(columns))
        values = read(state)
        assert [v.hex() for v in values] == [vector[c].hex() for c in columns]
    assert (not read.direct) == ("monetary_log" in names)
