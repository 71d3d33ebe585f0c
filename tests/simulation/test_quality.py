"""End-to-end quality on simulate data against its ground truth (issues 3 and 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.core.pipeline import Pipeline
from workers.simulation.generator import simulate
from workers.simulation.quality import (
    adjusted_rand_index,
    evaluate_run,
    profile_personas,
    stitching,
)
from workers.testing import pipeline_over


@pytest.fixture(scope="module")
def finished() -> tuple[Pipeline, dict[str, Any]]:
    lines, truth, _ = simulate(3000, seed=3)
    return pipeline_over(lines), truth


def test_stitching_precision_and_recall_against_truth(finished) -> None:
    pipeline, truth = finished
    groups = [[f"{t}:{v}" for t, vs in pipeline.graph.identifiers(pid).items() for v in vs]
              for pid in pipeline.profiles]
    score = stitching(groups, truth)
    assert score.true_pairs > 1000  # the stream really links identities
    assert score.precision >= 0.99
    assert score.recall >= 0.99


def test_no_profile_holds_two_people_s_user_ids(finished) -> None:
    pipeline, _ = finished
    assert all(len(pipeline.graph.identifiers(pid).get("user_id", [])) <= 1
               for pid in pipeline.profiles)


def test_segments_recover_the_generator_personas(finished) -> None:
    pipeline, truth = finished
    profiles = [pipeline.profile_snapshot(pid) for pid in pipeline.profiles]
    personas, segments = profile_personas(profiles, truth, min_events=8)
    assert len(personas) > 1500
    assert adjusted_rand_index(personas, segments) >= 0.8


def test_event_counts_add_up_to_valid_unique_events(finished) -> None:
    pipeline, truth = finished
    total = sum(state.event_count for state in pipeline.profiles.values())
    assert total == pipeline.stats.events_valid
    unattributable = pipeline.stats.invalid_by_error.get("unattributable", 0)
    assert total + unattributable == truth["valid_events"]


def test_adjusted_rand_index_matches_its_definition() -> None:
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert adjusted_rand_index([0, 0, 1, 1], [1, 0, 1, 0]) == pytest.approx(-0.5)


def test_a_changer_is_scored_by_the_profile_they_use_now(tmp_path: Path) -> None:
    """A changer's device left behind keeps the old behaviour; the person counts by the
    profile active most recently. One changer moved on to a new profile (in the new
    segment), the other has no profile seen after the change."""
    changed_at = "2026-01-15T00:00:00.000Z"
    persons: dict[str, Any] = {f"{b}{i}": {"persona": b, "identifiers": [f"anonymous_id:{b}{i}"]}
                               for b in ("a", "b") for i in range(10)}
    persons["moved"] = {"persona": "b", "persona_before": "a", "changed_at": changed_at,
                        "identifiers": ["anonymous_id:old-device", "anonymous_id:new-device"]}
    persons["stayed"] = {"persona": "b", "persona_before": "a", "changed_at": changed_at,
                         "identifiers": ["anonymous_id:only-device"]}
    truth = {"persons": persons, "junk_identifiers": [], "shared_identifiers": []}
    segment_of = {f"{b}{i}": int(b == "b") for b in ("a", "b") for i in range(10)}
    segment_of.update({"old-device": 0, "new-device": 1, "only-device": 0})
    seen = {"old-device": "2026-01-12T00:00:00.000Z", "new-device": "2026-01-20T00:00:00.000Z",
            "only-device": "2026-01-14T00:00:00.000Z"}
    (tmp_path / "profiles.jsonl").write_bytes(b"\n".join(orjson.dumps({
        "profile_id": pid, "identifiers": {"anonymous_id": [pid]}, "event_count": 20,
        "segment": {"id": sid, "name": f"Segment {sid}"}, "features": {},
        "last_seen": seen.get(pid, "2026-01-20T00:00:00.000Z")})
        for pid, sid in segment_of.items()))
    (tmp_path / "segment_changes.jsonl").write_bytes(b"\n".join(orjson.dumps({
        "profile_id": pid, "model_version": 1, "occurred_at": "2026-01-06T00:00:00.000Z",
        "previous_segment": None, "segment": {"id": sid}}) for pid, sid in segment_of.items()))
    (tmp_path / "personas.json").write_bytes(orjson.dumps(
        [{"segment_id": sid, "size": 11, "centroid": {}, "distinguishing": []}
         for sid in (0, 1)]))

    q = evaluate_run(tmp_path, truth)

    assert (q.changers, q.changers_in_new_segment, q.changers_unseen_since_change) == (2, 0.5, 1)
