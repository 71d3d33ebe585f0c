"""The segment registry (workers/core/registry.py): ids stay with their behaviour, and
births, splits, merges and retirements are rare, evidenced lineage events.

Fast: hand-made centroids in two features, no model, no broker.
"""

from __future__ import annotations

import numpy as np

from workers.core.reference import Reference, fit_reference
from workers.core.registry import Registry

UNIT = Reference(lo=(-100.0, -100.0), hi=(100.0, 100.0), center=(0.0, 0.0), scale=(1.0, 1.0),
                 active=(True, True))
A, B, C = (0.0, 0.0), (10.0, 0.0), (0.0, 10.0)


def registry() -> Registry:
    return Registry(weights=(1.0, 1.0), min_share=0.1, bound=3.0, confirmations=2)


def started() -> Registry:
    reg = registry()
    ids, events = reg.update(UNIT, [A, B, C], [0.4, 0.3, 0.3])
    assert ids == [0, 1, 2]
    assert [(e.kind, e.segment_id) for e in events] == [("birth", 0), ("birth", 1), ("birth", 2)]
    return reg


def test_moved_centroids_keep_their_ids_in_any_order() -> None:
    reg = started()
    moved = [(10.5, 0.4), (0.3, 9.1), (-0.6, 0.2)]  # B, C, A, each moved a little
    ids, events = reg.update(UNIT, moved, [0.3, 0.3, 0.4])
    assert ids == [1, 2, 0]
    assert events == []
    assert reg.live[1] == moved[0]  # the registry follows its behaviours


def test_a_new_behaviour_is_born_only_when_seen_twice_and_gets_a_fresh_id() -> None:
    reg = started()
    new = (30.0, 30.0)
    ids, events = reg.update(UNIT, [A, B, C, new], [0.3, 0.2, 0.3, 0.2])
    assert ids == [0, 1, 2, None] and events == []  # seen once: not published yet
    ids, events = reg.update(UNIT, [A, B, C, (30.5, 29.5)], [0.3, 0.2, 0.3, 0.2])
    assert ids == [0, 1, 2, 3]
    assert [(e.kind, e.segment_id, e.share) for e in events] == [("birth", 3, 0.2)]


def test_a_birth_next_to_a_kept_segment_is_a_split_from_it() -> None:
    reg = started()
    half = (4.0, 0.0)  # 4 from A (beyond the bound of 3), within twice the bound
    for _ in range(2):
        ids, events = reg.update(UNIT, [A, B, C, half], [0.3, 0.2, 0.3, 0.2])
    assert ids[3] == 3
    assert [(e.kind, e.segment_id, e.parents) for e in events] == [("split", 3, (0,))]


def test_a_tiny_share_is_never_born() -> None:
    reg = started()
    for _ in range(3):
        ids, events = reg.update(UNIT, [A, B, C, (30.0, 30.0)], [0.35, 0.3, 0.3, 0.05])
        assert ids == [0, 1, 2, None] and events == []


def test_a_segment_below_half_the_minimum_ends_by_merge_or_retirement() -> None:
    reg = started()
    # B keeps only 4% (below half of 10%): it ends; nothing is near it -> retirement
    ids, events = reg.update(UNIT, [A, B, C], [0.5, 0.04, 0.46])
    assert ids == [0, None, 2]
    assert [(e.kind, e.segment_id, e.successor) for e in events] == [("retirement", 1, None)]
    # a behaviour that lost its centroid next to one that kept its id merges into it
    reg = registry()
    reg.update(UNIT, [A, (5.0, 0.0), C], [0.4, 0.3, 0.3])
    ids, events = reg.update(UNIT, [(1.5, 0.0), C], [0.7, 0.3])  # A and B became one
    assert ids == [0, 2]
    assert [(e.kind, e.segment_id, e.successor) for e in events] == [("merge", 1, 0)]
    assert reg.retired == {1: 0}


def test_ids_are_never_reused() -> None:
    reg = started()
    reg.update(UNIT, [A, C], [0.5, 0.5])  # B retired
    for _ in range(2):
        ids, _ = reg.update(UNIT, [A, B, C], [0.4, 0.2, 0.4])  # B's behaviour comes back
    assert ids == [0, 3, 2]
    assert reg.retired == {1: None}


def test_matching_uses_the_scale_each_feature_was_first_seen_with() -> None:
    """The data's spread changing later (a second reference) does not move the yardstick."""
    reg = started()
    wide = Reference(lo=(-100.0, -100.0), hi=(100.0, 100.0), center=(5.0, 5.0),
                     scale=(10.0, 10.0), active=(True, True))
    # B moved by 5 units: 5 std units of the first scale, beyond the bound of 3, so the
    # behaviour is no longer B, however spread out the data became since
    ids, _ = reg.update(wide, [A, (15.0, 0.0), C], [0.4, 0.3, 0.3])
    assert ids == [0, None, 2]


def test_a_feature_that_starts_to_vary_joins_with_its_first_scale() -> None:
    flat = fit_reference(np.array([(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)] * 20), 0.01)
    assert flat.active == (True, False)
    reg = registry()
    reg.update(flat, [(0.0, 1.0), (2.0, 1.0)], [0.5, 0.5])
    assert set(reg.scale) == {0}
    varies = fit_reference(np.array([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)] * 20), 0.01)
    reg.update(varies, [(0.0, 1.0), (2.0, 1.0)], [0.5, 0.5])
    assert set(reg.scale) == {0, 1}
    assert reg.scale[0] == flat.scale[0]
