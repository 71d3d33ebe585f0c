"""End-to-end quality on simulate data against its ground truth (issues 3 and 4)."""

from __future__ import annotations

from typing import Any

import pytest

from workers.core.pipeline import Pipeline
from workers.simulation.generator import simulate
from workers.simulation.quality import adjusted_rand_index, profile_personas, stitching
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
