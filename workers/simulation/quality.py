"""How good the output is against ``simulate``'s ground truth: stitching
precision/recall over identifier pairs and the adjusted Rand index of segments.

Shared by the tests and the benchmarks so both measure the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

import orjson

from workers.config import Config
from workers.core.features import FeatureSpec
from workers.core.segments import feature_columns


@dataclass(frozen=True)
class StitchingScore:
    precision: float
    recall: float
    true_pairs: int
    predicted_pairs: int


def _pairs_by_group(groups: Iterable[Iterable[str]]) -> dict[str, int]:
    label: dict[str, int] = {}
    for i, group in enumerate(groups):
        for ident in group:
            label[ident] = i
    return label


def _pair_count(labels: Mapping[str, int], keep: set[str]) -> int:
    sizes = Counter(labels[i] for i in keep if i in labels)
    return sum(comb(n, 2) for n in sizes.values())


def stitching(predicted_groups: Iterable[Iterable[str]],
              truth: Mapping[str, Any]) -> StitchingScore:
    """Pairwise precision/recall over the identifiers the stream itself links.

    A true pair is two identifiers in one truth component (linked by valid events,
    junk and shared identifiers left out); a predicted pair is two identifiers in
    one profile. Only identifiers that appear in truth components are scored.
    """
    components = [c for person in truth["persons"].values() for c in person["components"]]
    true_label = _pairs_by_group(components)
    pred_label = _pairs_by_group(predicted_groups)
    scored = set(true_label) & set(pred_label)
    joint = Counter((true_label[i], pred_label[i]) for i in scored)
    both = sum(comb(n, 2) for n in joint.values())
    true_pairs = _pair_count(true_label, scored)
    pred_pairs = _pair_count(pred_label, scored)
    return StitchingScore(precision=both / pred_pairs if pred_pairs else 1.0,
                          recall=both / true_pairs if true_pairs else 1.0,
                          true_pairs=true_pairs, predicted_pairs=pred_pairs)


def profile_personas(profiles: Iterable[Mapping[str, Any]], truth: Mapping[str, Any],
                     min_events: int) -> tuple[list[str], list[int]]:
    """(true persona, assigned segment id) for profiles with a segment and enough events.

    A profile's true persona is the persona of the person owning most of its
    identifiers (junk and shared identifiers excluded).
    """
    owner = {ident: person["persona"] for person in truth["persons"].values()
             for ident in person["identifiers"]}
    ignore = set(truth["junk_identifiers"]) | set(truth["shared_identifiers"])
    personas, segments = [], []
    for profile in profiles:
        if profile["segment"] is None or profile["event_count"] < min_events:
            continue
        votes = Counter(owner[f"{t}:{v}"] for t, values in profile["identifiers"].items()
                        for v in values if f"{t}:{v}" in owner and f"{t}:{v}" not in ignore)
        if votes:
            personas.append(votes.most_common(1)[0][0])
            segments.append(profile["segment"]["id"])
    return personas, segments


def adjusted_rand_index(a: list[Any], b: list[Any]) -> float:
    """ARI of two labelings (Hubert & Arabie), without a scikit-learn dependency."""
    n = len(a)
    if n < 2:
        return 1.0
    pairs = sum(comb(c, 2) for c in Counter(zip(a, b, strict=True)).values())
    rows = sum(comb(c, 2) for c in Counter(a).values())
    cols = sum(comb(c, 2) for c in Counter(b).values())
    expected = rows * cols / comb(n, 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else (pairs - expected) / (maximum - expected)


# ---- segments over model versions: do they keep their meaning? -------------------------

#: a segment needs this many scored members at a version for its meaning to count
MEANING_MIN_MEMBERS = 10


@dataclass(frozen=True)
class SegmentQuality:
    """How a run's segments fare against the truth, across its model versions."""

    profiles_scored: int
    ari: float
    versions: int
    ids_changed_meaning: int  # segment ids whose majority behaviour changed between versions
    behaviour_moves: int  # a behaviour's segment changed from one version to the next...
    behaviour_moves_without_lineage: int  # ...with no lineage event for either id
    behaviours: int
    behaviours_with_own_segment: int  # the majority behaviour of some final segment
    changers: int  # people who changed behaviour (with a scored profile)
    changers_in_new_segment: float  # share whose final segment means their new behaviour
    # changers whose profile active most recently has no event after the change: nothing
    # the model sees of them can show the new behaviour
    changers_unseen_since_change: int
    moves_per_steady_person: float  # segment moves (not first assignments) per steady profile
    empty_segments: int  # published segments with no profile, over every version
    card_values_out_of_domain: int  # persona card values outside what profiles have


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _majority(counts: Counter[Any]) -> Any:
    """The most common key; ties to the smallest, so the result never depends on order."""
    top = max(counts.values())
    return min(k for k, n in counts.items() if n == top)


def evaluate_run(out_dir: str | Path, truth: Mapping[str, Any],
                 min_events: int = 8) -> SegmentQuality:
    """Score the output folder of ``run``/``replay --out`` against ``simulate``'s truth.

    Each profile of ``profiles.jsonl`` is the person owning most of its identifiers;
    ``segment_changes.jsonl`` replayed in order gives every profile's segment at the end
    of each model version, and a segment's meaning at a version is the behaviour most of
    its members have then (a changer's behaviour switches at its ``changed_at``).

    Changers are scored per person, by the person's profile active most recently: the
    criterion counts people, and a person who changed habits often leaves a device behind
    that is never linked to them (15-19% of the changers' profiles on the test streams
    have no event after the change). That profile keeps the old behaviour because nothing
    in it shows the new one; the profile the person uses now is where the new behaviour
    shows and where a campaign reaches them. Every other figure stays per profile.
    """
    folder = Path(out_dir)
    profiles = _read_jsonl(folder / "profiles.jsonl")
    changes = _read_jsonl(folder / "segment_changes.jsonl")
    lineage = _read_jsonl(folder / "segment_lineage.jsonl")
    cards = orjson.loads((folder / "personas.json").read_bytes())
    person_of = persons_of(profiles, truth)
    persons = truth["persons"]
    scored = {p["profile_id"]: person_of[p["profile_id"]] for p in profiles
              if p["event_count"] >= min_events and p["profile_id"] in person_of}

    def behaviour(person: str, at: str) -> str:
        entry = persons[person]
        changed = entry.get("changed_at")
        return entry["persona_before"] if changed is not None and at < changed else entry[
            "persona"]

    # every profile's segment at the end of each version, and that version's time
    ends: list[tuple[int, str, dict[str, int]]] = []
    current: dict[str, int] = {}
    version, started = 0, ""
    moves: Counter[str] = Counter()
    for change in changes:
        if change["model_version"] != version:
            if version:
                ends.append((version, started, dict(current)))
            version, started = change["model_version"], change["occurred_at"]
        pid = change["profile_id"]
        before = change["previous_segment"]
        if before is not None and before["id"] != change["segment"]["id"]:
            moves[pid] += 1
        current[pid] = change["segment"]["id"]
    if version:
        ends.append((version, started, dict(current)))
    final_time = max((p["last_seen"] for p in profiles), default="")

    meanings: list[dict[int, str]] = []
    holders: list[dict[str, int]] = []  # behaviour -> the segment holding most of it
    empty = 0
    alive: set[int] = set()
    lineage_at: dict[int, set[int]] = {}  # version -> ids born, split, merged or retired
    for record in lineage:
        ids = lineage_at.setdefault(record["model_version"], set())
        if record["kind"] != "rename":
            ids.add(record["segment"]["id"])
    for v, at, segment_of in ends:
        for record in lineage:
            if record["model_version"] == v and record["kind"] in ("birth", "split"):
                alive.add(record["segment"]["id"])
            elif record["model_version"] == v and record["kind"] in ("merge", "retirement"):
                alive.discard(record["segment"]["id"])
        members: dict[int, Counter[str]] = {}
        spread: dict[str, Counter[int]] = {}
        for pid, person in scored.items():
            sid = segment_of.get(pid)
            if sid is None:
                continue
            b = behaviour(person, at)
            members.setdefault(sid, Counter())[b] += 1
            spread.setdefault(b, Counter())[sid] += 1
        holding = set(segment_of.values())
        empty += sum(1 for sid in alive if sid not in holding)
        meanings.append({sid: _majority(c) for sid, c in members.items()
                         if sum(c.values()) >= MEANING_MIN_MEMBERS})
        holders.append({b: _majority(c) for b, c in spread.items()})

    changed_meaning = set()
    seen: dict[int, str] = {}
    for meaning in meanings:
        for sid, b in meaning.items():
            if seen.setdefault(sid, b) != b:
                changed_meaning.add(sid)
    behaviour_moves = unexplained = 0
    for (v, _, _), before, after in zip(ends[1:], holders, holders[1:], strict=False):
        for b, sid in after.items():
            old = before.get(b)
            if old is not None and old != sid:
                behaviour_moves += 1
                if not {old, sid} & lineage_at.get(v, set()):
                    unexplained += 1

    final = ends[-1][2] if ends else {}
    final_meaning = meanings[-1] if meanings else {}
    labels = [(behaviour(person, final_time), final[pid]) for pid, person in scored.items()
              if pid in final]
    last_seen = {p["profile_id"]: p["last_seen"] for p in profiles}
    latest: dict[str, str] = {}  # changer -> their profile active most recently
    for pid, person in scored.items():
        known = latest.get(person)
        if "changed_at" in persons[person] and (
                known is None or (last_seen[pid], pid) > (last_seen[known], known)):
            latest[person] = pid
    steady = [pid for pid, person in scored.items()
              if "changed_at" not in persons[person] and pid in final]
    in_new = [final_meaning.get(final.get(pid, -1)) == persons[person]["persona"]
              for person, pid in latest.items()]
    unseen = sum(1 for person, pid in latest.items()
                 if last_seen[pid] < persons[person]["changed_at"])
    return SegmentQuality(
        profiles_scored=len(labels),
        ari=round(adjusted_rand_index([a for a, _ in labels], [b for _, b in labels]), 4),
        versions=len(ends),
        ids_changed_meaning=len(changed_meaning),
        behaviour_moves=behaviour_moves,
        behaviour_moves_without_lineage=unexplained,
        behaviours=len({behaviour(p, final_time) for p in scored.values()}),
        behaviours_with_own_segment=len(set(final_meaning.values())),
        changers=len(latest),
        changers_in_new_segment=round(sum(in_new) / len(in_new), 4) if in_new else 1.0,
        changers_unseen_since_change=unseen,
        moves_per_steady_person=round(sum(moves[pid] for pid in steady) / len(steady), 4)
        if steady else 0.0,
        empty_segments=empty + sum(1 for card in cards if card["size"] == 0),
        card_values_out_of_domain=_out_of_domain(cards, profiles),
    )


def batch_kmeans_ari(out_dir: str | Path, truth: Mapping[str, Any], config: Config,
                     min_events: int = 8) -> float:
    """The analyst's nightly job next to a run: scikit-learn KMeans (k-means++, 10 starts)
    on the same final feature vectors, in the final model's features, standardised and
    weighted alike. Needs scikit-learn (the ``test`` extra)."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    folder = Path(out_dir)
    profiles = _read_jsonl(folder / "profiles.jsonl")
    used = set(orjson.loads((folder / "personas.json").read_bytes())[0]["centroid"])
    spec = FeatureSpec(config.features)
    columns, weights = feature_columns(spec, config.segmentation)
    picked = [(spec.names[c], w) for c, w in zip(columns, weights, strict=True)
              if spec.names[c] in used]
    person_of = persons_of(profiles, truth)
    kept = [p for p in profiles if p["segment"] is not None and p["event_count"] >= min_events
            and p["profile_id"] in person_of]
    scaled = StandardScaler().fit_transform(
        [[p["features"][name] for name, _ in picked] for p in kept]) * [w for _, w in picked]
    labels = KMeans(n_clusters=config.segmentation.n_clusters, init="k-means++", n_init=10,
                    random_state=0).fit_predict(scaled)
    behaviours = [truth["persons"][person_of[p["profile_id"]]]["persona"] for p in kept]
    return adjusted_rand_index(behaviours, [int(x) for x in labels])


def persons_of(profiles: Iterable[Mapping[str, Any]],
                truth: Mapping[str, Any]) -> dict[str, str]:
    """Profile id -> the truth person owning most of its identifiers."""
    owner = {ident: key for key, person in truth["persons"].items()
             for ident in person["identifiers"]}
    ignore = set(truth["junk_identifiers"]) | set(truth["shared_identifiers"])
    out = {}
    for profile in profiles:
        votes = Counter(owner[f"{t}:{v}"] for t, values in profile["identifiers"].items()
                        for v in values if f"{t}:{v}" in owner and f"{t}:{v}" not in ignore)
        if votes:
            out[profile["profile_id"]] = _majority(votes)
    return out


def _out_of_domain(cards: Sequence[Mapping[str, Any]],
                   profiles: Sequence[Mapping[str, Any]]) -> int:
    """Card values (centroids, distinguishing values) outside the range profiles have."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for profile in profiles:
        for name, value in profile["features"].items():
            low[name] = min(low.get(name, value), value)
            high[name] = max(high.get(name, value), value)
    slack = 1e-6
    bad = 0
    for card in cards:
        values = [*card["centroid"].items(),
                  *((d["feature"], d["value"]) for d in card["distinguishing"])]
        bad += sum(1 for name, value in values
                   if not low.get(name, value) - slack <= value <= high.get(name, value) + slack)
    return bad
