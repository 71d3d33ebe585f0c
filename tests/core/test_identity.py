"""Identity stitching with the default limits and blocklist (ARCHITECTURE.md "Identity"),
then order-independence of the whole Pipeline on generated populations."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.config import Config, load
from workers.core.identity import IdentityGraph, IdentityRules, lookup_keys, profile_id_for
from workers.core.pipeline import Pipeline
from workers.core.touchpoints import format_time
from workers.state.codec import pack, unpack
from workers.testing import pipeline_over

CONFIG: Config = load(env={})
LIMITS = CONFIG.identity.limits
TYPES = list(LIMITS)  # strongest first
JUNK = ["undefined", "null", "test@test.com", "0000", "{{user.id}}", "NULL", "Undefined",
        "noreply@example.com", "00000000-0000-0000-0000-000000000000", "[object Object]"]


def graph() -> IdentityGraph:
    ident = CONFIG.identity
    return IdentityGraph(IdentityRules.from_config(ident.limits, ident.blocklist_values,
                                                   ident.blocklist_patterns))


def groups(g: IdentityGraph) -> dict[str, frozenset[tuple[str, str]]]:
    return {pid: frozenset((t, v) for t, vs in g.identifiers(pid).items() for v in vs)
            for pid in g.profiles()}


def check_invariants(g: IdentityGraph) -> None:
    """Every profile within limits, id derived from its strongest identifier, owners agree."""
    seen: set[tuple[str, str]] = set()
    for pid, members in groups(g).items():
        assert members, pid
        for t in LIMITS:
            assert sum(1 for mt, _ in members if mt == t) <= LIMITS[t], (pid, t, members)
        best = min(members, key=lambda m: (TYPES.index(m[0]), m[1]))
        assert pid == profile_id_for(*best)
        for t, v in members:
            assert g.owner(t, v) == pid
            assert not g.is_junk(v)
            assert (t, v) not in seen
            seen.add((t, v))


def test_default_rules_come_from_defaults_yaml() -> None:
    assert TYPES[:2] == ["user_id", "crm_id"]
    assert LIMITS["user_id"] == 1 and LIMITS["email"] == 5 and LIMITS["anonymous_id"] == 100


def test_anonymous_visitor_then_identify_links_into_one_profile() -> None:
    g = graph()
    first = g.resolve({"anonymous_id": "cookie-1"})
    assert first.profile_id == profile_id_for("anonymous_id", "cookie-1")
    assert first.merged == [] and first.refused is None
    assert g.resolve({"anonymous_id": "cookie-1"}).profile_id == first.profile_id

    res = g.resolve({"anonymous_id": "cookie-1", "user_id": "u-1"})
    assert res.profile_id == profile_id_for("user_id", "u-1")
    assert res.merged == [first.profile_id]  # the merge is reported
    assert res.refused is None
    assert g.identifiers(res.profile_id) == {"anonymous_id": ["cookie-1"], "user_id": ["u-1"]}
    assert len(g) == 1
    assert g.resolve({"anonymous_id": "cookie-1"}).profile_id == res.profile_id
    assert g.owner("anonymous_id", "cookie-1") == res.profile_id
    check_invariants(g)


def test_a_changelog_record_of_earlier_versions_loads_the_same_profile() -> None:
    """Versions before wrote a profile's record as tuples (msgpack extension values); this
    one writes lists, which pack four times faster: both load the same identifiers."""
    g = graph()
    pid = g.resolve({"anonymous_id": "cookie-1", "email": "a@example.com",
                     "user_id": "u-1"}).profile_id
    assert pid is not None
    record = g.record(pid)
    assert record is not None
    members, best = record
    for written in (record, (members, tuple(best))):
        restored = graph()
        restored.load(pid, *unpack(pack(written)))
        assert groups(restored) == groups(g)
        assert restored.record(pid) == record
        assert all(restored.owner(t, v) == pid for t, values in members.items() for v in values)


def test_identify_merges_two_anonymous_profiles() -> None:
    g = graph()
    a = g.resolve({"anonymous_id": "web-cookie"}).profile_id
    b = g.resolve({"device_id": "phone-1"}).profile_id
    res = g.resolve({"user_id": "u-1", "anonymous_id": "web-cookie", "device_id": "phone-1"})
    assert sorted(res.merged) == sorted([a, b])
    assert len(g) == 1
    check_invariants(g)


def test_shared_device_does_not_join_two_users() -> None:
    g = graph()
    g.resolve({"user_id": "alice", "device_id": "family-tablet"})
    res = g.resolve({"user_id": "bob", "device_id": "family-tablet"})
    assert res.refused == "limit:user_id"
    assert res.profile_id == profile_id_for("user_id", "bob")  # highest-priority identifier
    assert g.owner("device_id", "family-tablet") == profile_id_for("user_id", "alice")
    assert g.identifiers(res.profile_id) == {"user_id": ["bob"]}
    check_invariants(g)


def test_refused_merge_keeps_new_weaker_identifiers_with_the_strongest() -> None:
    g = graph()
    alice = g.resolve({"user_id": "alice", "device_id": "tablet"}).profile_id
    res = g.resolve({"device_id": "tablet", "user_id": "bob", "anonymous_id": "bob-cookie"})
    assert res.refused == "limit:user_id"
    bob = profile_id_for("user_id", "bob")
    assert res.profile_id == bob
    assert g.owner("anonymous_id", "bob-cookie") == bob
    assert g.owner("device_id", "tablet") == alice
    check_invariants(g)


def test_refused_merge_goes_to_the_existing_strongest_profile() -> None:
    g = graph()
    alice = g.resolve({"user_id": "alice", "email": "shared@family.io"}).profile_id
    bob = g.resolve({"user_id": "bob"}).profile_id
    res = g.resolve({"email": "shared@family.io", "user_id": "bob"})
    assert res.refused == "limit:user_id"
    assert res.profile_id == bob
    assert res.merged == []
    assert g.owner("email", "shared@family.io") == alice
    check_invariants(g)


def test_two_user_ids_on_one_anonymous_cookie_in_any_order() -> None:
    events: list[Mapping[str, str]] = [
        {"anonymous_id": "cookie-c"}, {"anonymous_id": "cookie-c", "user_id": "u1"},
        {"anonymous_id": "cookie-c", "user_id": "u2"}, {"email": "e@x.io", "user_id": "u1"},
        {"email": "e@x.io", "user_id": "u2"}, {"device_id": "dev-d", "email": "e@x.io"},
        {"device_id": "dev-d", "crm_id": "crm-9", "user_id": "u2"},
    ]
    for order in itertools.permutations(events):
        g = graph()
        for identity in order:
            g.resolve(identity)
        user_ids = [{v for t, v in m if t == "user_id"} for m in groups(g).values()]
        assert all(len(u) <= 1 for u in user_ids), order
        assert {"u1"} in user_ids and {"u2"} in user_ids
        check_invariants(g)


@pytest.mark.parametrize("junk", JUNK)
def test_junk_value_never_links_anyone(junk: str) -> None:
    g = graph()
    for id_type in ("email", "anonymous_id", "device_id", "user_id"):
        a = g.resolve({"user_id": f"a-{id_type}", id_type: junk} if id_type != "user_id"
                      else {"anonymous_id": f"a-{id_type}", id_type: junk})
        b = g.resolve({"crm_id": f"b-{id_type}", id_type: junk})
        assert a.blocked == 1 and b.blocked == 1
        assert a.profile_id != b.profile_id
        assert a.merged == [] and b.merged == []
        assert g.owner(id_type, junk) is None
    check_invariants(g)


def test_each_blocklist_pattern_keeps_its_own_back_references() -> None:
    """A back reference counts the groups of its own pattern, whatever patterns come
    before it (one alternation of them all numbered the groups across patterns)."""
    rules = IdentityRules.from_config(LIMITS, [], [r"^(bot)-", r"^(.)\1+$"])
    g = IdentityGraph(rules)
    assert g.is_junk("zzzz") and g.is_junk("bot-7") and g.is_junk("ZZzz")
    assert not g.is_junk("zzzy") and not g.is_junk("robot-7")


def test_event_with_only_junk_has_no_profile() -> None:
    g = graph()
    res = g.resolve({"user_id": "undefined", "email": "test@test.com"})
    assert res.profile_id is None
    assert res.blocked == 2
    assert len(g) == 0


def test_surviving_profile_id_does_not_depend_on_arrival_order() -> None:
    events: list[Mapping[str, str]] = [
        {"anonymous_id": "c1"}, {"device_id": "d1", "anonymous_id": "c2"},
        {"anonymous_id": "c1", "email": "p@x.io"}, {"email": "p@x.io", "device_id": "d1"},
        {"user_id": "user-u", "anonymous_id": "c2"}, {"phone": "+4930123", "anonymous_id": "c3"},
    ]
    results = set()
    for order in itertools.permutations(events):
        g = graph()
        for identity in order:
            g.resolve(identity)
        check_invariants(g)
        results.add(frozenset(groups(g).items()))
    assert len(results) == 1
    assert dict(next(iter(results))) == {
        profile_id_for("user_id", "user-u"): frozenset({
            ("user_id", "user-u"), ("email", "p@x.io"), ("device_id", "d1"),
            ("anonymous_id", "c1"), ("anonymous_id", "c2")}),
        profile_id_for("phone", "+4930123"): frozenset({
            ("phone", "+4930123"), ("anonymous_id", "c3")}),
    }


def test_more_emails_than_the_limit_drops_the_extra() -> None:
    g = graph()
    pid = profile_id_for("user_id", "user-u")
    for i in range(5):
        res = g.resolve({"user_id": "user-u", "email": f"e{i}@x.io"})
        assert res.profile_id == pid and res.dropped == 0 and res.refused is None
    res = g.resolve({"user_id": "user-u", "email": "e5@x.io", "anonymous_id": "cookie-c"})
    assert res.profile_id == pid
    assert res.refused == "limit:email"
    assert res.dropped == 1
    assert g.owner("email", "e5@x.io") is None
    assert g.owner("anonymous_id", "cookie-c") == pid  # what still fits is kept
    assert sorted(g.identifiers(pid)["email"]) == [f"e{i}@x.io" for i in range(5)]
    check_invariants(g)


def test_device_limit_drops_the_21st_device() -> None:
    g = graph()
    for i in range(21):
        res = g.resolve({"user_id": "user-u", "device_id": f"d{i}"})
    assert res.dropped == 1 and res.refused == "limit:device_id"
    assert len(g.identifiers(profile_id_for("user_id", "user-u"))["device_id"]) == 20


_pool = st.sampled_from(
    [("user_id", f"u{i}") for i in range(3)] + [("crm_id", f"c{i}") for i in range(2)]
    + [("email", f"e{i}@x.io") for i in range(8)] + [("phone", f"+49{i}") for i in range(2)]
    + [("device_id", f"d{i}") for i in range(3)] + [("anonymous_id", f"a{i}") for i in range(6)]
    + [(t, j) for t in ("email", "user_id", "anonymous_id") for j in JUNK[:5]])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_pool, min_size=1, max_size=4).map(dict), min_size=1, max_size=25))
def test_graph_invariants_under_any_events(events: list[dict[str, str]]) -> None:
    g = graph()
    for identity in events:
        res = g.resolve(identity)
        usable = sorted(((TYPES.index(t), t, v) for t, v in identity.items()
                         if not g.is_junk(v)))
        assert res.blocked == len(identity) - len(usable)
        if not usable:
            assert res.profile_id is None
            continue
        _, t, v = usable[0]
        # the event goes to the profile of its highest-priority identifier
        assert g.owner(t, v) == res.profile_id
    check_invariants(g)
    # the changelog's records give the same graph back: groups, owners and records
    restored = graph()
    for pid in g.profiles():
        record = g.record(pid)
        assert record is not None
        restored.load(pid, *record)
    assert groups(restored) == groups(g)
    assert sorted(restored.every_identifier()) == sorted(g.every_identifier())
    assert all(restored.record(pid) == g.record(pid) for pid in g.profiles())


# ---- Pipeline: arrival order within the reorder window changes nothing ---------------

T0 = 1_740_000_000.0
TYPES_OF_EVENT = ["page_view", "product_view", "add_to_cart", "purchase", "identify",
                  "email_open", "app_open"]


@st.composite
def population(draw: st.DrawFn) -> list[tuple[float, bytes, bool]]:
    """(event time, raw bytes, attributable) per record, in time order; invalid ones too."""
    n_persons = draw(st.integers(1, 6))
    shared_devices = [f"shared-dev-{i}" for i in range(2)]
    persons = []
    for p in range(n_persons):
        ids: list[tuple[str, str]] = [("anonymous_id", f"anon-{p}-{k}")
                                      for k in range(draw(st.integers(1, 3)))]
        if draw(st.booleans()):
            ids.append(("user_id", f"user-{p}"))
        ids += [("email", f"p{p}.{k}@mail.io") for k in range(draw(st.integers(0, 2)))]
        ids.append(("device_id", draw(st.sampled_from([*shared_devices, f"dev-{p}"]))))
        if draw(st.booleans()):
            ids.append(("crm_id", f"crm-{p}"))
        persons.append(ids)
    records: list[tuple[float, bytes, bool]] = []
    for n in range(draw(st.integers(1, 40))):
        ids = persons[draw(st.integers(0, n_persons - 1))]
        chosen = dict(draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3)))
        attributable = True
        if draw(st.integers(0, 5)) == 0:  # junk sent by broken tracking
            junk_type = draw(st.sampled_from(["email", "user_id", "anonymous_id"]))
            chosen[junk_type] = draw(st.sampled_from(JUNK))
            attributable = any(not _is_junk(v) for v in chosen.values())
        ts = T0 + draw(st.integers(0, 6 * 3600)) + draw(st.sampled_from([0, 0.25, 0.5]))
        body = {"event_id": f"ev-{n}", "occurred_at": format_time(ts),
                "type": draw(st.sampled_from(TYPES_OF_EVENT)), "identity": chosen,
                "properties": {"revenue": 10.0}}
        if draw(st.integers(0, 9)) == 0:
            records.append((ts, b'{"event_id": "broken', False))  # invalid: dead-lettered
            continue
        raw = orjson.dumps(body)
        records.append((ts, raw, attributable))
        if draw(st.integers(0, 7)) == 0:  # an exact retry of the same event
            records.append((ts, raw, False))
    records.sort(key=lambda r: r[0])
    return records


_JUNK_LOWER = {j.lower() for j in JUNK}


def _is_junk(value: str) -> bool:
    return value.lower() in _JUNK_LOWER


def _groups(pipeline: Pipeline) -> set[frozenset[tuple[str, str]]]:
    return {frozenset((t, v) for t, vs in pipeline.graph.identifiers(pid).items() for v in vs)
            for pid in pipeline.profiles}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(population(), st.randoms(use_true_random=False))
def test_pipeline_result_does_not_depend_on_arrival_order(
        records: list[tuple[float, bytes, bool]], rnd: random.Random) -> None:
    window = CONFIG.intake.reorder_window_seconds
    assert window == 300
    in_order = pipeline_over([raw for _, raw, _ in records], CONFIG)
    # each record delayed by less than the reorder window, then taken in arrival order
    delayed = sorted(records, key=lambda r: r[0] + rnd.uniform(0, window - 1))
    shuffled = pipeline_over([raw for _, raw, _ in delayed], CONFIG)

    assert _groups(in_order) == _groups(shuffled)
    assert set(in_order.profiles) == set(shuffled.profiles)
    assert set(in_order.profiles) == set(in_order.graph.profiles())
    expected = sum(1 for _, _, ok in records if ok)
    for pipeline in (in_order, shuffled):
        assert sum(p.event_count for p in pipeline.profiles.values()) == expected
        assert pipeline.stats.events_valid == expected
        assert pipeline.stats.events_read == len(records)
        for pid in pipeline.profiles:
            members = pipeline.graph.identifiers(pid)
            assert len(members.get("user_id", [])) <= 1
    assert {pid: in_order.profiles[pid].event_count for pid in in_order.profiles} == \
        {pid: shuffled.profiles[pid].event_count for pid in shuffled.profiles}


def test_duplicates_are_counted_and_not_in_any_profile() -> None:
    pipeline = Pipeline(CONFIG)
    body = {"event_id": "dup-1", "occurred_at": format_time(T0), "type": "purchase",
            "identity": {"user_id": "u-1"}, "properties": {"revenue": 10.0}}
    raw = orjson.dumps(body)
    pipeline.feed(raw)
    pipeline.feed(raw)
    # same event_id, different bytes (a retry re-serialised, later arrival)
    pipeline.feed(orjson.dumps({**body, "occurred_at": format_time(T0 + 30)}))
    pipeline.feed(orjson.dumps({**body, "event_id": "other"}))
    pipeline.flush()
    assert pipeline.stats.events_duplicate == 2
    assert pipeline.stats.events_valid == 2
    assert pipeline.stats.events_read == 4
    assert sum(p.event_count for p in pipeline.profiles.values()) == 2
    assert pipeline.profiles[profile_id_for("user_id", "u-1")].event_count == 2
    # a duplicate arriving after its original was processed is caught too
    pipeline.feed(raw)
    pipeline.flush()
    assert pipeline.stats.events_duplicate == 3
    assert sum(p.event_count for p in pipeline.profiles.values()) == 2


def test_only_junk_identifiers_is_dead_lettered_not_lost() -> None:
    pipeline = Pipeline(CONFIG)
    pipeline.feed(orjson.dumps({"event_id": "j", "occurred_at": format_time(T0),
                                "type": "page_view", "identity": {"anonymous_id": "null"}}))
    out = pipeline.flush()
    assert pipeline.profiles == {}
    assert pipeline.stats.identifiers_blocked == 1
    assert [o.record["error"] for o in out if o.kind == "dead_letter"] == ["unattributable"]


def test_a_lookup_key_is_type_value_only_for_a_known_type() -> None:
    """``profile KEY``: ``email:a@b.c`` is one email; a colon in an unknown-type key (a URN, a
    time) is part of the value, tried under every type, strongest first."""
    assert lookup_keys("email:a@b.c", TYPES) == [("email", "a@b.c")]
    assert lookup_keys("urn:x:1", TYPES) == [(t, "urn:x:1") for t in TYPES]
    assert lookup_keys("a@b.c", TYPES) == [(t, "a@b.c") for t in TYPES]
    assert lookup_keys("email:", TYPES) == [(t, "email:") for t in TYPES]
