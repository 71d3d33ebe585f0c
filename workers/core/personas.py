"""Persona cards: what sets each segment apart, in words a marketer reads, with KPIs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from workers.core.features import FeatureSpec, ProfileState
from workers.core.records import Distinguishing, PersonaCard
from workers.core.segments import Snapshot

_NAME_PARTS = 2  # features in a name; more are added only to tell two segments apart
_DISTINGUISHING = 6
_RETURN_SECONDS = 86400.0  # a profile "came back" when active on two moments a day apart


def _deviations(snapshot: Snapshot, segment_id: int) -> list[tuple[float, int]]:
    """(signed std-unit deviation from the population, column position), largest first."""
    seg = snapshot.segment(segment_id)
    assert seg is not None
    devs = [(c / w if w else 0.0, i)
            for i, (c, w) in enumerate(zip(seg.centroid, snapshot.weights, strict=True))]
    devs.sort(key=lambda d: (-abs(d[0]), d[1]))
    return devs


def name_segments(snapshot: Snapshot, spec: FeatureSpec,
                  previous: dict[int, str] | None = None) -> dict[int, str]:
    """Short, unique, deterministic names from each segment's strongest traits.

    A segment keeps its ``previous`` name while the traits it names are still among its
    strongest (two more than the name holds): a name changes only when what sets the
    segment apart changed, not when two close traits swap places.
    """
    words: dict[int, list[str]] = {}
    for seg in snapshot.segments:
        parts: list[str] = []
        for dev, i in _deviations(snapshot, seg.id):
            label = spec.label(spec.names[snapshot.columns[i]])
            part = label if dev > 0 else f"few {label}"
            if part not in parts:  # a recent feature and its slower twin say one thing
                parts.append(part)
        # positive traits read better in a name: put them first, keep the order of strength
        words[seg.id] = ([p for p in parts if not p.startswith("few ")]
                         + [p for p in parts if p.startswith("few ")])
    names: dict[int, str] = {}
    kept = {sid: name for sid, name in (previous or {}).items()
            if sid in words and _still_fits(name, sid, words[sid])}
    for sid in sorted(words):
        old = kept.get(sid)
        if old is not None and old not in names.values():
            names[sid] = old
            continue
        n = _NAME_PARTS
        candidate = _join(words[sid][:n])
        while candidate in names.values() and n < len(words[sid]):
            n += 1
            candidate = _join(words[sid][:n])
        if candidate in names.values():
            candidate = f"{candidate} #{sid}"
        names[sid] = candidate
    return names


def _still_fits(name: str, sid: int, words: list[str]) -> bool:
    parts = name.removesuffix(f" #{sid}").split(", ")
    parts[0] = parts[0][:1].lower() + parts[0][1:]
    strongest = {w.lower() for w in words[:len(parts) + 2]}
    return all(p.lower() in strongest for p in parts)


def _join(parts: list[str]) -> str:
    text = ", ".join(parts)
    return text[:1].upper() + text[1:]


SegmentTotals = list[float]  # profiles, converted, revenue, engaged, returned


def segment_totals(snapshot: Snapshot,
                   profiles: Iterable[ProfileState]) -> dict[int, SegmentTotals]:
    """What the KPIs of each segment of ``snapshot`` add up, over ``profiles``: sums, so
    the totals of several sets of profiles (profile partitions) add up to theirs."""
    totals: dict[int, SegmentTotals] = {s.id: [0, 0, 0.0, 0, 0] for s in snapshot.segments}
    for state in profiles:
        kpi = totals.get(state.segment) if state.segment is not None else None
        if kpi is None:
            continue
        kpi[0] += 1
        kpi[1] += state.conversions > 0
        kpi[2] += state.revenue
        kpi[3] += state.engaged > 0
        kpi[4] += (state.last_seen - state.first_seen) >= _RETURN_SECONDS
    return totals


def with_totals(card: PersonaCard, totals: SegmentTotals) -> PersonaCard:
    """``card`` with the size and KPIs of ``totals``."""
    size, converted, revenue, engaged, returned = totals
    return {**card, "size": int(size), "kpis": {
        "conversion_rate": round(converted / size, 6) if size else 0.0,
        "revenue_per_profile": round(revenue / size, 2) if size else 0.0,
        "engagement_rate": round(engaged / size, 6) if size else 0.0,
        "retention_rate": round(returned / size, 6) if size else 0.0,
    }}


def persona_cards(snapshot: Snapshot, names: dict[int, str], spec: FeatureSpec,
                  totals: Mapping[int, SegmentTotals]) -> list[PersonaCard]:
    """One card per segment of ``snapshot``, KPIs from ``totals`` (:func:`segment_totals`)."""
    cards: list[PersonaCard] = []
    feature = [spec.names[c] for c in snapshot.columns]
    for seg in snapshot.segments:
        raw = snapshot.raw(seg.centroid)
        distinguishing: list[Distinguishing] = [
            {"feature": feature[i], "value": round(raw[i], 6),
             "population_value": round(snapshot.mean[i], 6),
             "deviation": round(dev, 3)}
            for dev, i in _deviations(snapshot, seg.id)[:_DISTINGUISHING]]
        cards.append(with_totals({
            "segment_id": seg.id,
            "name": names[seg.id],
            "size": 0,
            "model_version": snapshot.version,
            "centroid": {feature[i]: round(v, 6) for i, v in enumerate(raw)},
            "distinguishing": distinguishing,
            "kpis": {"conversion_rate": 0.0, "revenue_per_profile": 0.0,
                     "engagement_rate": 0.0, "retention_rate": 0.0},
        }, totals.get(seg.id, [0, 0, 0.0, 0, 0])))
    return cards
