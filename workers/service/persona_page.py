"""The ``/personas`` page: persona cards and segment sizes over time, as one HTML string.

Pure (cards and samples in, text out) so it is tested without a worker, and
self-contained (inline CSS and SVG, no script, no external asset) so it renders
the same offline, behind a proxy or saved to a file. Every value from the data is
escaped: persona names and feature labels come from configuration.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

# Colour-blind-safe palette (Okabe-Ito + two darker tones): a segment keeps its
# colour between the cards and the chart; ids beyond it wrap around.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000", "#7F4F24", "#4B0082")
_CHART_W, _CHART_H = 1160, 280  # SVG user units; the SVG scales to the page width
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 16, 14, 30

Sample = tuple[float, Mapping[int, int]]  # (epoch seconds, {segment id: profiles})


class SizeHistory:
    """The last ``maxlen`` samples of segment sizes: bounded, so memory stays flat."""

    def __init__(self, maxlen: int) -> None:
        self._samples: deque[Sample] = deque(maxlen=maxlen)

    def sample(self, ts: float, sizes: Mapping[int, int]) -> None:
        self._samples.append((ts, dict(sizes)))  # a copy: the pipeline mutates its own

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)


def colour(segment_id: int) -> str:
    return PALETTE[segment_id % len(PALETTE)]


def render_page(cards: Sequence[Mapping[str, Any]], history: Sequence[Sample],
                label: Callable[[str], str] = str, generated_at: float | None = None) -> str:
    """The whole page; ``label`` turns a feature name into words (``FeatureSpec.label``)."""
    total = sum(int(c["size"]) for c in cards)
    version = max((int(c["model_version"]) for c in cards), default=0)
    names = {int(c["segment_id"]): str(c["name"]) for c in cards}
    when = "" if generated_at is None else f" · updated {_clock(generated_at, seconds=True)} UTC"
    if cards:
        body = "".join(_card(c, total, label) for c in cards)
        intro = (f"{len(cards)} personas · {total:,} profiles segmented · "
                 f"model version {version}{when}")
    else:
        body = ('<p class="empty">No personas yet: the first model version is published '
                "once enough profiles have been seen.</p>")
        intro = f"waiting for the first model{when}"
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>persona-stream · personas</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Personas</h1><p class=\"intro\">{escape(intro)}</p></header>"
        f"<main><section class=\"cards\">{body}</section>"
        f"<section class=\"history\"><h2>Segment sizes over time</h2>"
        f"{_chart(history, names)}</section></main></body></html>\n"
    )


def _card(card: Mapping[str, Any], total: int, label: Callable[[str], str]) -> str:
    sid = int(card["segment_id"])
    size = int(card["size"])
    share = size / total if total else 0.0
    kpis = card.get("kpis") or {}
    tiles = "".join(
        f'<div class="kpi"><span class="v">{escape(text)}</span>'
        f'<span class="k">{escape(name)}</span></div>'
        for name, text in (
            ("conversion", _pct(kpis.get("conversion_rate", 0.0))),
            ("revenue / profile", f"{float(kpis.get('revenue_per_profile', 0.0)):,.2f}"),
            ("engagement", _pct(kpis.get("engagement_rate", 0.0))),
            ("retention", _pct(kpis.get("retention_rate", 0.0))),
        ))
    bars = "".join(_bar(d, label, colour(sid)) for d in card.get("distinguishing") or [])
    return (
        f'<article class="card" style="--seg:{colour(sid)}">'
        f'<h2><span class="dot"></span>{escape(str(card["name"]))}</h2>'
        f'<p class="size"><b>{size:,}</b> profiles · {escape(_pct(share))} of segmented · '
        f"segment {sid}</p>"
        f'<div class="kpis">{tiles}</div>'
        f'<h3>What sets them apart <span class="legend"><i class="seg"></i>segment '
        f'<i class="pop"></i>everyone</span></h3>'
        f'<div class="bars">{bars}</div></article>'
    )


def _bar(item: Mapping[str, Any], label: Callable[[str], str], seg_colour: str) -> str:
    feature = str(item["feature"])
    value = float(item["value"])
    population = float(item["population_value"])
    scale = max(abs(value), abs(population)) or 1.0  # per feature: units differ between rows
    comparison = _compare(value, population)
    return (
        f'<div class="row" title="{escape(feature)}">'
        f'<div class="name">{escape(label(feature))} <small>{escape(comparison)}</small>'
        f"</div>"
        f'<div class="track"><div class="area"><div class="fill" style="width:'
        f'{_width(value, scale)};background:{seg_colour}"></div></div>'
        f"<span>{escape(_num(value))}</span></div>"
        f'<div class="track"><div class="area"><div class="fill pop" style="width:'
        f'{_width(population, scale)}"></div></div><span>{escape(_num(population))}</span>'
        f"</div></div>"
    )


def _chart(history: Sequence[Sample], names: Mapping[int, str]) -> str:
    if not history:
        return '<p class="empty">No samples yet.</p>'
    t0, t1 = history[0][0], history[-1][0]
    segments = sorted({sid for _, sizes in history for sid in sizes})
    top = _nice_ceiling(max((n for _, sizes in history for n in sizes.values()), default=0))
    plot_w = _CHART_W - _PAD_L - _PAD_R
    plot_h = _CHART_H - _PAD_T - _PAD_B

    def x(ts: float) -> float:
        return _PAD_L + (plot_w * (ts - t0) / (t1 - t0) if t1 > t0 else plot_w)

    def y(n: float) -> float:
        return _PAD_T + plot_h * (1 - n / top)

    parts = []
    for i in range(5):  # four gridlines above the axis: enough to read a size off
        value = top * i / 4
        parts.append(f'<line class="grid" x1="{_PAD_L}" x2="{_CHART_W - _PAD_R}" '
                     f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
                     f'<text class="tick" x="{_PAD_L - 6}" y="{y(value) + 4:.1f}" '
                     f'text-anchor="end">{escape(_num(value))}</text>')
    anchors = ("start", "middle", "middle", "middle", "end")  # start, quarters, end
    ticks = ([(t0 + (t1 - t0) * i / 4, a) for i, a in enumerate(anchors)] if t1 > t0
             else [(t1, "end")])
    short = t1 - t0 < 600  # under ten minutes, minutes alone would repeat
    for ts, anchor in ticks:
        parts.append(f'<text class="tick" x="{x(ts):.1f}" y="{_CHART_H - 8}" '
                     f'text-anchor="{anchor}">{escape(_clock(ts, seconds=short))} UTC</text>')
    for sid in segments:
        points = [(x(ts), y(sizes[sid])) for ts, sizes in history if sid in sizes]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        title = escape(names.get(sid, f"Segment {sid}"))
        parts.append(f'<polyline points="{path}" stroke="{colour(sid)}"><title>{title}</title>'
                     f"</polyline>")
        lx, ly = points[-1]
        parts.append(f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="3.5" fill="{colour(sid)}"/>')
    legend = "".join(
        f'<li><i style="background:{colour(sid)}"></i>{escape(names.get(sid, f"Segment {sid}"))}'
        f"</li>" for sid in segments)
    return (f'<svg viewBox="0 0 {_CHART_W} {_CHART_H}" role="img" '
            f'aria-label="Segment sizes over time">{"".join(parts)}</svg>'
            f'<ul class="chart-legend">{legend}</ul>')


def _compare(value: float, population: float) -> str:
    """The segment against everyone, in words: a ratio reads better than two raw numbers."""
    if population <= 0 or value < 0:
        return "above average" if value >= population else "below average"
    ratio = value / population
    if ratio < 0.005:
        return "almost none here"
    if ratio >= 1.05:
        return f"{ratio:.1f}× the average"
    if ratio <= 0.95:
        return f"{100 * (1 - ratio):.0f}% below average"
    return "about average"


def _nice_ceiling(n: float) -> float:
    """Axis top: 1, 2, 2.5 or 5 times a power of ten, so tick labels stay round."""
    if n <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(n))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= n)


def _width(value: float, scale: float) -> str:
    return f"{min(100.0, 100.0 * abs(value) / scale):.1f}%"


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _pct(value: float) -> str:
    return f"{100 * float(value):.1f}%"


def _clock(ts: float, seconds: bool = False) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S" if seconds else "%H:%M")


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2330;background:#f4f5f8}
header{padding:28px 40px 8px}
h1{margin:0;font-size:28px;letter-spacing:-.01em}
.intro{margin:4px 0 0;color:#5b6475}
main{padding:12px 40px 40px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:20px}
.card{background:#fff;border-radius:12px;padding:20px 22px;border-top:5px solid var(--seg);
box-shadow:0 1px 3px rgba(20,30,50,.08)}
.card h2{margin:0;font-size:19px;display:flex;align-items:center;gap:10px}
.dot{width:12px;height:12px;border-radius:50%;background:var(--seg);flex:none}
.size{margin:4px 0 14px;color:#5b6475}
.size b{color:#1d2330;font-size:17px}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin-bottom:16px}
.kpi{background:#f4f5f8;border-radius:8px;padding:8px 10px}
.kpi .v{display:block;font-size:18px;font-weight:600}
.kpi .k{display:block;font-size:12px;color:#5b6475;text-transform:uppercase;letter-spacing:.04em}
h3{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#5b6475;margin:0 0 8px;
display:flex;justify-content:space-between}
.legend{text-transform:none;letter-spacing:0;font-weight:400}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;
vertical-align:-1px}
.legend i.seg{background:var(--seg)}
.legend i.pop,.fill.pop{background:#b9bfcc}
.row{display:grid;grid-template-columns:190px 1fr;column-gap:12px;margin:6px 0}
.row .name{grid-row:span 2;font-weight:500;line-height:1.25}
.row small{display:block;color:#8a92a3;font-weight:400}
.track{display:grid;grid-template-columns:1fr 52px;align-items:center;gap:8px;height:13px;
margin:2px 0}
.area{height:10px}
.fill{height:100%;border-radius:3px;min-width:2px}
.track span{font-size:11px;color:#5b6475;white-space:nowrap}
.history{margin-top:28px;background:#fff;border-radius:12px;padding:20px 22px;
box-shadow:0 1px 3px rgba(20,30,50,.08)}
.history h2{margin:0 0 10px;font-size:19px}
svg{width:100%;height:auto;display:block}
svg .grid{stroke:#e3e6ec;stroke-width:1}
svg .tick{font-size:12px;fill:#5b6475}
svg polyline{fill:none;stroke-width:2.5;stroke-linejoin:round;stroke-linecap:round}
.chart-legend{list-style:none;padding:0;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:6px 18px}
.chart-legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;
vertical-align:-1px}
.empty{color:#5b6475}
"""
