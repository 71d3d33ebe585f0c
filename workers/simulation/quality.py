"""How good the output is against ``simulate``'s ground truth: stitching
precision/recall over identifier pairs and the adjusted Rand index of segments.

Shared by the tests and the benchmarks so both measure the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import comb
from typing import Any


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
