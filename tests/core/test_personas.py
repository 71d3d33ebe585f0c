"""Persona cards (workers/personas.py): names from distinguishing features, KPIs, schema.

Fast: hand-made snapshots and profiles, no broker.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from workers.config import load
from workers.core.features import FeatureSpec, ProfileState
from workers.core.personas import name_segments, persona_cards, segment_totals
from workers.core.segments import Segment, SegmentModel, Snapshot
from workers.core.touchpoints import Touchpoint, TouchpointParser, format_time, parse_time

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load()
SPEC = FeatureSpec(CONFIG.features)
PARSER = TouchpointParser()
T0 = parse_time("2025-03-01T00:00:00Z")
DAY = 86400.0
CARD_SCHEMA = json.loads((ROOT / "schemas" / "persona_card.v1.schema.json").read_text())

FEATURES = ["channel.email", "channel.web", "type.purchase", "device.mobile"]


def snapshot(centroids: dict[int, tuple[float, ...]], version: int = 3,
             features: list[str] = FEATURES) -> Snapshot:
    n = len(features)
    return Snapshot(version=version, columns=tuple(SPEC.index[f] for f in features),
                    weights=(1.0,) * n, mean=(0.3,) * n, std=(0.1,) * n,
                    segments=tuple(Segment(sid, c) for sid, c in sorted(centroids.items())),
                    lo=(0.0,) * n, hi=(1.0,) * n)


def label(feature: str) -> str:
    return SPEC.label(feature)


# ---- names ---------------------------------------------------------------------------


def test_a_recent_feature_reads_as_its_slower_twin_and_a_name_says_it_once() -> None:
    assert label("recent.type.purchase") == label("type.purchase")
    snap = snapshot({0: (3.0, 2.9, -1.0), 1: (-1.0, -1.1, 2.0)},
                    features=["type.purchase", "recent.type.purchase", "channel.email"])
    names = name_segments(snap, SPEC)
    words = label("type.purchase").lower()
    assert names[0].lower().count(words) == 1
    assert label("channel.email").lower() in names[0].lower()


def test_names_use_the_labels_of_the_distinguishing_features() -> None:
    snap = snapshot({0: (2.5, -0.5, 0.1, 0.0),     # many email
                     1: (-0.5, 2.0, 0.0, 1.0),     # web, mobile
                     2: (-0.5, -0.5, 3.0, -0.2),   # buyers
                     3: (-1.5, -1.0, -0.2, -2.0)})  # nothing positive that matters
    names = name_segments(snap, SPEC)
    assert set(names) == {0, 1, 2, 3}
    assert "email" in names[0].lower()
    assert names[0].lower().startswith(label("channel.email").lower())
    assert names[1].lower().startswith(label("channel.web").lower())
    assert label("device.mobile").lower() in names[1].lower()
    assert names[2].lower().startswith(label("type.purchase").lower())
    assert label("channel.email").lower() not in names[2].lower().split(", ")[0]
    assert all(name and name[0].isupper() for name in names.values())
    assert len(set(names.values())) == len(names)


def test_names_put_the_strongest_trait_first_and_say_few_for_low_ones() -> None:
    snap = snapshot({0: (0.5, 1.5, 0.0, 0.0), 1: (-3.0, 0.2, 0.0, 0.0)})
    names = name_segments(snap, SPEC)
    assert names[0] == f"{label('channel.web').capitalize()}, {label('channel.email')}"
    # a strongly negative trait names the segment by its absence
    assert f"few {label('channel.email')}" in names[1]


def test_collisions_are_resolved_deterministically() -> None:
    # 0 and 1 share their two strongest traits; 2 and 3 are identical
    centroids = {0: (2.0, 1.0, 0.5, 0.0), 1: (2.0, 1.0, -0.5, 0.0),
                 2: (1.0, 0.5, 0.2, 0.1), 3: (1.0, 0.5, 0.2, 0.1), 4: (1.0, 0.5, 0.2, 0.1)}
    names = name_segments(snapshot(centroids), SPEC)
    assert len(set(names.values())) == 5
    assert all(names.values())
    # the lowest id keeps the short name; the others grow or get their id
    assert names == {0: "Email, web", 1: "Email, web, few buyers",
                     2: "Email, web, buyers", 3: "Email, web, buyers, mobile-first",
                     4: "Email, web, buyers, mobile-first #4"}
    # deterministic: the same snapshot, and the same segments in another order
    assert name_segments(snapshot(centroids), SPEC) == names
    reordered = Snapshot(3, snapshot(centroids).columns, (1.0,) * 4, (0.3,) * 4, (0.1,) * 4,
                         tuple(Segment(s, c) for s, c in reversed(list(centroids.items()))),
                         (0.0,) * 4, (1.0,) * 4)
    assert name_segments(reordered, SPEC) == names


def test_a_name_changes_only_when_what_it_names_no_longer_sets_the_segment_apart() -> None:
    first = name_segments(snapshot({0: (2.0, 1.5, 0.0, 0.0), 1: (-1.0, -1.0, 2.0, 1.0)}), SPEC)
    # email and web swap places, both still the strongest traits: the name stays
    swapped = snapshot({0: (1.5, 2.0, 0.2, 0.0), 1: (-1.0, -1.0, 2.0, 1.0)})
    assert name_segments(swapped, SPEC, first) == first
    assert name_segments(swapped, SPEC) != first  # what a fresh name would have been
    # email no longer sets segment 0 apart at all: it gets a new name
    changed = snapshot({0: (0.0, 0.1, 2.0, 1.8), 1: (-1.0, -1.0, 2.0, -1.0)})
    renamed = name_segments(changed, SPEC, first)
    assert renamed[0] != first[0] and label("channel.email") not in renamed[0].lower()
    assert len(set(renamed.values())) == 2


def test_names_from_a_trained_model_are_unique_and_name_the_blob() -> None:
    import dataclasses

    cfg = dataclasses.replace(CONFIG.segmentation, warmup_profiles=60, n_clusters=3)
    model = SegmentModel(cfg, SPEC)
    blobs = [{"recent.channel.email": 0.9, "recent.type.email_open": 0.8},
             {"recent.channel.web": 0.9, "recent.type.product_view": 0.8},
             {"recent.channel.mobile_app": 0.9, "recent.type.app_open": 0.8}]
    rng = random.Random(3)
    snap = None
    for i in range(60):
        v = [0.0] * len(SPEC.names)
        for name, value in blobs[i % 3].items():
            v[SPEC.index[name]] = value + rng.gauss(0, 0.02)
        snap = model.learn(v) or snap
    assert snap is not None
    names = name_segments(snap, SPEC)
    assert len(set(names.values())) == 3
    z_email = snap.transform(snap.pick([0.9 if n == "recent.channel.email"
                                        else 0.8 if n == "recent.type.email_open" else 0.0
                                        for n in SPEC.names]))
    email_seg = min(snap.distances(z_email))[1]
    assert "email" in names[email_seg].lower()
    assert all("email" not in names[s.id].lower() for s in snap.segments if s.id != email_seg)


# ---- cards and KPIs --------------------------------------------------------------------

_n = iter(range(10_000))


def tp(type_: str, t: float, **extra: Any) -> Touchpoint:
    data: dict[str, Any] = {"event_id": f"k{next(_n)}", "occurred_at": format_time(t),
                            "type": type_, "identity": {"user_id": "u"}, **extra}
    return PARSER.parse(orjson.dumps(data))


def profile(segment: int | None, events: list[Touchpoint]) -> ProfileState:
    state = ProfileState(SPEC.size, events[0].ts)
    for e in events:
        state.update(SPEC, e)
    state.segment = segment
    return state


def kpi_profiles() -> list[ProfileState]:
    return [
        # segment 0: bought 100, came back 2 days later; not engaged
        profile(0, [tp("purchase", T0, properties={"revenue": 100}),
                    tp("page_view", T0 + 2 * DAY)]),
        # segment 0: engaged (email click), one day only
        profile(0, [tp("email_click", T0), tp("page_view", T0 + 3600)]),
        # segment 0: engaged (search) twice within a day, no purchase
        profile(0, [tp("search", T0), tp("search", T0 + DAY - 1)]),
        # segment 1: two purchases exactly a day apart (retained), 30 + 20.5
        profile(1, [tp("purchase", T0, properties={"revenue": 30}),
                    tp("purchase", T0 + DAY, properties={"revenue": 20.5}),
                    tp("video_play", T0 + DAY)]),
        # no segment, or a segment the snapshot does not have: left out
        profile(None, [tp("purchase", T0, properties={"revenue": 999})]),
        profile(7, [tp("purchase", T0, properties={"revenue": 999})]),
    ]


def cards_by_id() -> dict[int, dict[str, Any]]:
    snap = snapshot({0: (2.0, -1.0, 0.5, 0.0), 1: (-1.0, 2.0, 0.0, 0.3),
                     2: (0.0, 0.0, -1.0, 2.0)})
    names = name_segments(snap, SPEC)
    cards = persona_cards(snap, names, SPEC, segment_totals(snap, kpi_profiles()))
    assert [c["segment_id"] for c in cards] == [0, 1, 2]
    return {c["segment_id"]: c for c in cards}


def test_kpis_match_hand_computed_values() -> None:
    cards = cards_by_id()
    k0, k1, k2 = cards[0]["kpis"], cards[1]["kpis"], cards[2]["kpis"]
    assert cards[0]["size"] == 3
    assert k0["conversion_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert k0["revenue_per_profile"] == pytest.approx(100 / 3, abs=0.005)
    assert k0["engagement_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert k0["retention_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert cards[1]["size"] == 1
    assert k1 == {"conversion_rate": 1.0, "revenue_per_profile": 50.5, "engagement_rate": 1.0,
                  "retention_rate": 1.0}
    # an empty segment: zeros, not a division by zero
    assert cards[2]["size"] == 0
    assert k2 == {"conversion_rate": 0.0, "revenue_per_profile": 0.0, "engagement_rate": 0.0,
                  "retention_rate": 0.0}


def test_card_contents() -> None:
    cards = cards_by_id()
    card = cards[0]
    assert card["model_version"] == 3
    assert card["name"] == "Email, buyers"
    assert list(card["centroid"]) == FEATURES
    # centroid back in feature units: mean + z * std
    assert card["centroid"]["channel.email"] == pytest.approx(0.3 + 2.0 * 0.1)
    assert card["centroid"]["channel.web"] == pytest.approx(0.3 - 1.0 * 0.1)
    dist = card["distinguishing"]
    assert [d["feature"] for d in dist] == ["channel.email", "channel.web", "type.purchase",
                                            "device.mobile"]
    assert all(d["population_value"] == pytest.approx(0.3) for d in dist)
    assert dist[0]["value"] == pytest.approx(0.5)


def test_cards_validate_against_the_schema() -> None:
    validator = Draft202012Validator(CARD_SCHEMA)
    Draft202012Validator.check_schema(CARD_SCHEMA)
    cards = list(cards_by_id().values())
    for card in cards:
        errors = [e.message for e in validator.iter_errors(card)]
        assert errors == [], errors
    # and the cards are plain JSON
    assert orjson.loads(orjson.dumps(cards)) == cards
