"""The /personas page renderer: one card per persona, bars, a size chart, all escaped."""

from __future__ import annotations

import re
from typing import Any

from workers.service.persona_page import SizeHistory, render_page
from workers.simulation.generator import simulate
from workers.testing import pipeline_over, small_stream_config


def card(sid: int, name: str, size: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "segment_id": sid, "name": name, "size": size, "model_version": 3, "centroid": {},
        "distinguishing": [
            {"feature": "type.purchase", "value": 0.8, "population_value": 0.2},
            {"feature": "channel.web", "value": 0.1, "population_value": 0.5},
        ],
        "kpis": {"conversion_rate": 0.25, "revenue_per_profile": 12.5,
                 "engagement_rate": 0.5, "retention_rate": 0.75},
    }
    return {**base, **over}


def test_one_card_per_persona_with_kpis_and_two_bars_per_feature() -> None:
    html = render_page([card(0, "Buyers", 30), card(1, "Browsers", 10)], [],
                       {"type.purchase": "buyers", "channel.web": "web"}.get)
    assert html.count('<article class="card"') == 2
    assert "Buyers" in html and "Browsers" in html
    assert html.count('class="row"') == 4
    assert html.count('class="track"') == 8  # segment and population per feature
    assert "width:100.0%" in html and "width:25.0%" in html  # 0.2 against 0.8
    assert "4.0× the average" in html and "80% below average" in html
    assert "25.0%" in html and "12.50" in html and "75.0%" in html
    assert "40 profiles segmented" in html and "model version 3" in html


def test_everything_from_the_data_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    bad = card(0, evil, 5, distinguishing=[
        {"feature": '"><img src=x onerror=1>', "value": 1.0, "population_value": 0.5}])
    html = render_page([bad], [(0.0, {0: 5}), (60.0, {0: 6})], lambda f: f"<u>{f}</u>")
    assert "<script>" not in html and "<img" not in html and "<u>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert not re.search(r"https?://(?!www\.w3\.org)", html), "no external assets"


def test_history_chart_draws_one_line_per_segment_and_is_bounded() -> None:
    history = SizeHistory(maxlen=3)
    for i in range(5):
        history.sample(1_700_000_000 + 60 * i, {0: 10 + i, 1: 20 - i})
    assert len(history) == 3
    html = render_page([card(0, "A", 14), card(1, "B", 16)], list(history))
    assert html.count("<polyline") == 2
    assert html.count("<title>") == 3  # page title + one per line
    points = re.findall(r'points="([^"]+)"', html)
    assert all(len(p.split()) == 3 for p in points)


def test_empty_states_render() -> None:
    html = render_page([], [])
    assert "No personas yet" in html and "No samples yet" in html
    single = render_page([card(0, "A", 1)], [(5.0, {0: 1})])
    assert single.count("<polyline") == 1


def test_real_persona_cards_render() -> None:
    lines, _, _ = simulate(400, seed=4, days=3)
    pipeline = pipeline_over(lines, small_stream_config())
    cards = pipeline.personas()
    assert cards
    html = render_page(cards, [(0.0, pipeline.sizes)], pipeline.spec.label)
    assert html.count('<article class="card"') == len(cards)
    for c in cards:
        assert c["name"] in html
