"""Synthetic touchpoint stream with ground truth: the project's own test and benchmark data.

The stream imitates what a real collector sees: five behavioural personas that differ in
event-type, channel, device, payment and basket mix; people with several devices who log
in part-way through their journey (which is what links their identifiers); e-mail service
and point-of-sale events; shared household tablets; junk identifiers from broken tracking;
duplicated, late and malformed lines.  Everything is derived from ``random.Random(seed)``
instances consumed in a fixed order, so one seed gives byte-identical output in any process.

How it works (and why it is fast enough for millions of events):

1. *Generation*: each person is built in turn and emits compact tuples
   ``(t_ms, person, seq, type, channel, device, session, flags)``; no event dicts yet.
2. The tuples are sorted by time (one list sort, ~100 bytes per event).
3. *Rendering*: in time order each tuple becomes a dict, is serialised with ``orjson`` and
   streamed to the output, while a small heap holds back late and duplicate lines and the
   ground truth (identifier components, valid event counts) is accumulated from exactly the
   lines written.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import heapq
import io
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from random import Random
from typing import IO, Any, Literal, get_args

import orjson

from workers.io.progress import Progress, ProgressMode

__all__ = [
    "MAX_LATE_SECONDS",
    "PERSONAS",
    "VARIANTS",
    "Persona",
    "SimulationStats",
    "Variant",
    "iter_lines",
    "load_truth",
    "write_stream",
]

# --------------------------------------------------------------------------------------
# Stream-level knobs
# --------------------------------------------------------------------------------------

#: A late line is emitted at most this many seconds (event time) after its own time,
#: so it is never more than this far behind the running maximum of ``occurred_at``.
MAX_LATE_SECONDS = 120
#: Share of events that are turned into malformed lines (they are lost as events).
MALFORMED_RATE = 0.005
#: Share of events emitted twice (identical bytes), the copy 2-60 s of event time later.
DUPLICATE_RATE = 0.01
MAX_DUPLICATE_DELAY_SECONDS = 60
#: Share of events held back and emitted out of time order.
LATE_RATE = 0.02
#: Share of events that carry a junk identifier from broken tracking.
JUNK_RATE = 0.02
#: One oversized (> 64 KiB, otherwise valid) line per this many events; at least one
#: in every stream of ``OVERSIZED_MIN_EVENTS`` events or more.
OVERSIZED_EVERY = 200_000
OVERSIZED_MIN_EVENTS = 2_000
MAX_LINE_BYTES = 64 * 1024
#: Share of identified persons living in two-person households that share a tablet.
SHARED_TABLET_SHARE = 0.01
DEFAULT_START = "2026-01-05T00:00:00Z"

#: Identifier values that broken trackers send; they glue unrelated people together.
JUNK_VALUES: dict[str, tuple[str, ...]] = {
    "anonymous_id": ("undefined", "null", "0", "00000000-0000-0000-0000-000000000000"),
    "email": ("test@test.com", "noreply@example.com"),
    "device_id": ("unknown", "00000000-0000-0000-0000-000000000000"),
}
JUNK_IDENTIFIERS: tuple[str, ...] = tuple(
    f"{kind}:{value}" for kind, values in JUNK_VALUES.items() for value in values
)

# --------------------------------------------------------------------------------------
# The personas: one readable table
# --------------------------------------------------------------------------------------

Weights = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Persona:
    """One behavioural archetype; every number here shapes what its people emit."""

    name: str
    share: float  # share of the population
    description: str
    activity: float  # multiplier on the number of events per person
    session_mix: Weights  # site (web/app/social/ads) vs e-mail vs store sessions
    devices: tuple[tuple[str, float, float], ...]  # (kind, P(has it), usage weight)
    browser_channels: Weights  # channel of a browser session
    events: Weights  # event types inside a site session
    session_events: float  # mean events per site session
    gap_seconds: float  # mean seconds between events of a session
    categories: tuple[str, ...]
    content: tuple[str, ...]  # content_category values
    queries: tuple[str, ...]
    quantity_max: int
    payment: Weights
    identify_rate: float  # P(person ever identifies)
    identify_at: float  # first identification happens in the first this-share of sessions
    identify_event: str  # event type of the first identification
    login_rate: float  # P(logging in on another device once known)
    crm_rate: float  # P(known person also shops in store and has a crm_id)
    age: tuple[int, int]
    income: Weights
    interests: tuple[str, ...]
    newsletter_opt_in: float
    hours: str  # key of HOUR_WEIGHTS
    b2b: bool = False


PERSONAS: tuple[Persona, ...] = (
    Persona(
        name="mobile_bargain_hunter",
        share=0.30,
        description="young app user: many product views, searches and carts, frequent small "
        "purchases (15-40 EUR) paid by wallet",
        activity=1.25,
        session_mix=(("site", 0.93), ("email", 0.05), ("store", 0.02)),
        devices=(("mobile_app", 1.0, 8.0), ("mobile_browser", 0.35, 1.5),
                 ("desktop_browser", 0.15, 0.7)),
        browser_channels=(("web", 0.6), ("social", 0.2), ("ads", 0.2)),
        events=(("product_view", 30), ("search", 18), ("add_to_cart", 14), ("purchase", 6),
                ("page_view", 8), ("app_open", 8), ("video_play", 1),
                ("social_engagement", 1), ("support_contact", 1)),
        session_events=6.0,
        gap_seconds=35.0,
        categories=("fashion_deals", "phone_accessories", "beauty"),
        content=("deals", "flash_sale", "coupons"),
        queries=("cheap sneakers", "phone case", "discount code", "hoodie sale",
                 "usb c cable", "lipstick deal"),
        quantity_max=2,
        payment=(("wallet", 0.8), ("card", 0.15), ("paypal", 0.05)),
        identify_rate=0.6,
        identify_at=0.6,
        identify_event="signup",
        login_rate=0.5,
        crm_rate=0.05,
        age=(18, 29),
        income=(("low", 0.55), ("medium", 0.4), ("high", 0.05)),
        interests=("deals", "fashion", "gaming", "sneakers"),
        newsletter_opt_in=0.3,
        hours="evening",
    ),
    Persona(
        name="premium_desktop_shopper",
        share=0.20,
        description="high-income desktop web shopper: long considered visits, few but large "
        "purchases (200-900 EUR) paid by card",
        activity=0.8,
        session_mix=(("site", 0.88), ("email", 0.07), ("store", 0.05)),
        devices=(("desktop_browser", 1.0, 8.0), ("mobile_browser", 0.35, 1.0),
                 ("mobile_app", 0.15, 0.7)),
        browser_channels=(("web", 0.9), ("ads", 0.08), ("social", 0.02)),
        events=(("page_view", 26), ("product_view", 32), ("search", 6), ("add_to_cart", 6),
                ("purchase", 3.5), ("video_play", 4), ("support_contact", 2), ("download", 1)),
        session_events=7.0,
        gap_seconds=70.0,
        categories=("electronics", "watches", "designer_furniture"),
        content=("buying_guide", "new_arrivals", "brand_story"),
        queries=("oled tv 65", "automatic watch", "espresso machine", "leather sofa",
                 "noise cancelling headphones"),
        quantity_max=1,
        payment=(("card", 0.85), ("paypal", 0.1), ("bank_transfer", 0.05)),
        identify_rate=0.75,
        identify_at=0.5,
        identify_event="signup",
        login_rate=0.6,
        crm_rate=0.15,
        age=(35, 62),
        income=(("high", 0.6), ("very_high", 0.35), ("medium", 0.05)),
        interests=("luxury", "travel", "technology", "design"),
        newsletter_opt_in=0.4,
        hours="allday",
    ),
    Persona(
        name="email_loyalist",
        share=0.20,
        description="older newsletter subscriber: mostly e-mail opens and clicks, moderate "
        "purchases (40-150 EUR) paid by PayPal",
        activity=1.0,
        session_mix=(("email", 0.85), ("site", 0.12), ("store", 0.03)),
        devices=(("desktop_browser", 1.0, 5.0), ("mobile_browser", 0.3, 1.0),
                 ("mobile_app", 0.1, 0.5)),
        browser_channels=(("web", 0.97), ("social", 0.03)),
        events=(("page_view", 30), ("product_view", 26), ("add_to_cart", 9), ("purchase", 7),
                ("search", 5), ("support_contact", 2)),
        session_events=2.5,
        gap_seconds=60.0,
        categories=("home", "garden", "books"),
        content=("newsletter_offer", "recipes", "gardening_tips"),
        queries=("garden hose", "bed linen", "crime novel", "cookware set"),
        quantity_max=2,
        payment=(("paypal", 0.75), ("card", 0.15), ("bank_transfer", 0.1)),
        identify_rate=0.95,
        identify_at=0.12,
        identify_event="signup",
        login_rate=0.5,
        crm_rate=0.2,
        age=(50, 78),
        income=(("medium", 0.6), ("low", 0.2), ("high", 0.2)),
        interests=("home", "garden", "books", "cooking"),
        newsletter_opt_in=1.0,
        hours="morning",
    ),
    Persona(
        name="b2b_researcher",
        share=0.15,
        description="business visitor on desktop web during office hours: downloads, forms, "
        "webinars and pages, almost no purchases (bank transfer when they buy)",
        activity=0.9,
        session_mix=(("site", 0.9), ("email", 0.1)),
        devices=(("desktop_browser", 1.0, 9.0), ("mobile_browser", 0.25, 1.0)),
        browser_channels=(("web", 0.9), ("ads", 0.1)),
        events=(("page_view", 36), ("download", 20), ("video_play", 14), ("form_submit", 6),
                ("search", 9), ("product_view", 8), ("purchase", 0.25)),
        session_events=5.0,
        gap_seconds=90.0,
        categories=("software_licenses", "office_equipment"),
        content=("whitepaper", "case_study", "webinar", "pricing", "documentation"),
        queries=("api pricing", "sso integration", "gdpr compliance", "volume licensing"),
        quantity_max=20,
        payment=(("bank_transfer", 0.9), ("card", 0.1)),
        identify_rate=0.5,
        identify_at=0.5,
        identify_event="form_submit",
        login_rate=0.3,
        crm_rate=0.0,
        age=(27, 58),
        income=(("high", 0.5), ("medium", 0.4), ("very_high", 0.1)),
        interests=("saas", "productivity", "analytics"),
        newsletter_opt_in=0.5,
        hours="business",
        b2b=True,
    ),
    Persona(
        name="social_browser",
        share=0.15,
        description="young mobile visitor arriving from social networks and ads: engagement, "
        "videos and ad clicks, rare purchases paid by card",
        activity=0.95,
        session_mix=(("site", 0.97), ("email", 0.03)),
        devices=(("mobile_browser", 1.0, 8.0), ("mobile_app", 0.2, 1.5),
                 ("desktop_browser", 0.1, 0.5)),
        browser_channels=(("social", 0.55), ("ads", 0.35), ("web", 0.1)),
        events=(("social_engagement", 26), ("video_play", 24), ("page_view", 22),
                ("ad_click", 10), ("product_view", 10), ("add_to_cart", 2), ("purchase", 0.8)),
        session_events=4.0,
        gap_seconds=25.0,
        categories=("streetwear", "cosmetics", "music_merch"),
        content=("trends", "creator_video", "lookbook", "music"),
        queries=("oversized tee", "festival outfit", "glitter", "band shirt"),
        quantity_max=2,
        payment=(("card", 0.7), ("wallet", 0.2), ("paypal", 0.1)),
        identify_rate=0.3,
        identify_at=0.7,
        identify_event="signup",
        login_rate=0.4,
        crm_rate=0.02,
        age=(16, 27),
        income=(("low", 0.7), ("medium", 0.28), ("high", 0.02)),
        interests=("music", "creators", "fashion", "festivals"),
        newsletter_opt_in=0.2,
        hours="night",
    ),
)

#: Price range (EUR) of each product category; order values follow from the categories.
CATEGORY_PRICES: dict[str, tuple[float, float]] = {
    "fashion_deals": (12.0, 40.0),
    "phone_accessories": (9.0, 35.0),
    "beauty": (12.0, 38.0),
    "electronics": (250.0, 900.0),
    "watches": (300.0, 900.0),
    "designer_furniture": (200.0, 900.0),
    "home": (35.0, 150.0),
    "garden": (30.0, 140.0),
    "books": (15.0, 60.0),
    "software_licenses": (400.0, 2500.0),
    "office_equipment": (150.0, 1200.0),
    "streetwear": (20.0, 80.0),
    "cosmetics": (15.0, 60.0),
    "music_merch": (20.0, 70.0),
}

#: Relative weight of each hour of the day for session starts, per daily rhythm.
HOUR_WEIGHTS: dict[str, tuple[float, ...]] = {
    "evening": (1, 1, .5, .3, .2, .2, .5, 1, 1.5, 1.5, 1.5, 2, 3, 2, 2, 2, 2.5, 3, 4, 5, 6, 6, 4,
                2),
    "allday": (.5, .3, .2, .2, .2, .3, .8, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 3, 2, 1),
    "morning": (.2, .1, .1, .1, .2, .5, 2, 5, 6, 5, 4, 3, 3, 2, 2, 2, 2, 2, 3, 3, 2, 1, .5, .3),
    "business": (.1, .1, .1, .1, .1, .1, .3, 2, 6, 8, 8, 6, 4, 6, 8, 8, 6, 3, 1, .5, .3, .2, .1,
                 .1),
    "night": (3, 2.5, 1.5, .7, .3, .2, .3, .5, 1, 1, 1, 1.5, 2, 2, 2, 2.5, 3, 3.5, 4, 5, 6, 6, 5,
              4),
}
#: Relative weight of Monday..Sunday; business visitors hardly come at weekends.
WEEKDAY_WEIGHTS: dict[str, tuple[float, ...]] = {
    "business": (1, 1, 1, 1, 0.9, 0.08, 0.05),
    "default": (0.9, 0.9, 0.95, 1, 1.1, 1.3, 1.2),
}

GEO: tuple[tuple[str, str, str, float], ...] = (  # (country, region, city, weight)
    ("DE", "Berlin", "Berlin", 8), ("DE", "Hamburg", "Hamburg", 5),
    ("DE", "Bavaria", "Munich", 6), ("DE", "North Rhine-Westphalia", "Cologne", 5),
    ("FR", "Ile-de-France", "Paris", 7), ("FR", "Auvergne-Rhone-Alpes", "Lyon", 3),
    ("NL", "North Holland", "Amsterdam", 4), ("NL", "South Holland", "Rotterdam", 2),
    ("AT", "Vienna", "Vienna", 3), ("ES", "Madrid", "Madrid", 4),
    ("ES", "Catalonia", "Barcelona", 3), ("IT", "Lombardy", "Milan", 4),
    ("IT", "Lazio", "Rome", 3),
)
# --------------------------------------------------------------------------------------
# Variants: streams that real data looks like, to measure what the model does with them
# --------------------------------------------------------------------------------------

#: ``changers``: a fifth of the people switch to another persona halfway through the window
#: (the truth says from when); ``one_channel``: a web-only shop, every event on the web
#: channel (a constant feature); ``outliers``: half a percent of the people are bot-like
#: (40x the events) with absurd order values (x200); ``many_behaviours``: seven personas,
#: more than the default five segments.
Variant = Literal["default", "changers", "one_channel", "outliers", "many_behaviours"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
CHANGER_SHARE = 0.2
OUTLIER_SHARE = 0.005
OUTLIER_ACTIVITY = 40.0
OUTLIER_REVENUE = 200.0

_BY_NAME = {p.name: p for p in PERSONAS}
#: the two extra behaviours of ``many_behaviours``, each a tenth of the people
EXTRA_PERSONAS: tuple[Persona, ...] = (
    replace(_BY_NAME["premium_desktop_shopper"], name="cart_abandoner", share=0.1,
            description="fills carts and starts checkouts on a desktop, hardly ever buys",
            events=(("product_view", 30), ("add_to_cart", 30), ("checkout_started", 18),
                    ("page_view", 12), ("search", 10))),
    replace(_BY_NAME["b2b_researcher"], name="video_learner", share=0.1, b2b=False,
            description="watches tutorial videos and downloads guides, buys nothing",
            browser_channels=(("web", 0.85), ("social", 0.15)),
            events=(("video_play", 55), ("download", 15), ("page_view", 20), ("search", 10))),
)


def personas_of(variant: Variant) -> tuple[Persona, ...]:
    if variant != "many_behaviours":
        return PERSONAS
    kept = 1.0 - sum(p.share for p in EXTRA_PERSONAS)
    return tuple(replace(p, share=p.share * kept) for p in PERSONAS) + EXTRA_PERSONAS


FIRST_NAMES = ("anna", "ben", "clara", "david", "emma", "felix", "greta", "hugo", "ida", "jonas",
               "lea", "luca", "marie", "noah", "olivia", "paul", "sofia", "tim", "lina", "omar")
LAST_NAMES = ("mueller", "schmidt", "martin", "bernard", "dejong", "rossi", "garcia", "huber",
              "weber", "dubois", "visser", "bianchi", "lopez", "wagner", "fischer", "moreau")
MAIL_DOMAINS: Weights = (("gmail.com", 5), ("web.de", 2), ("gmx.de", 2), ("outlook.com", 2),
                         ("orange.fr", 1), ("yahoo.com", 1))
INDUSTRIES = ("software", "manufacturing", "finance", "healthcare", "retail", "logistics")
COMPANY_SIZES: Weights = (("1-10", 2), ("11-50", 3), ("51-200", 3), ("201-1000", 2),
                          ("1001+", 1))
JOB_TITLES = ("IT Manager", "Head of Marketing", "Procurement Lead", "CTO", "Data Analyst",
              "Operations Director")
APP_VERSIONS: Weights = (("5.12.0", 1), ("5.13.1", 2), ("5.14.0", 4))
AD_CAMPAIGNS: tuple[tuple[str, str, str], ...] = (  # (source, medium, name)
    ("google", "cpc", "winter_sale"), ("facebook", "paid_social", "new_collection"),
    ("instagram", "paid_social", "creator_collab"), ("tiktok", "paid_social", "trend_drop"),
    ("google", "display", "retargeting"),
)
SOCIAL_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("instagram", "social", "organic"), ("tiktok", "social", "organic"),
    ("facebook", "social", "organic"), ("youtube", "social", "organic"),
)

# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationStats:
    """Counts of what a run wrote, so callers can report and tests can cross-check."""

    events: int  # lines written (including malformed and duplicate lines)
    persons: int
    malformed: int
    duplicates: int
    late: int


def write_stream(
    output: str,
    profiles: int,
    seed: int,
    truth: str | None = None,
    progress: ProgressMode = "off",
    days: int = 28,
    start: str = DEFAULT_START,
    variant: Variant = "default",
) -> SimulationStats:
    """Write the stream for ``profiles`` persons to ``output`` (``.gz`` or ``-`` for stdout).

    The ground truth (see module docs) is written to ``truth`` after the stream, if given.
    """
    sim = _Simulator(profiles, seed, days, start, progress=progress, variant=variant)
    with _open_output(output) as out:
        buf: list[bytes] = []
        for line in sim.lines():
            buf.append(line)
            if len(buf) >= 4096:
                buf.append(b"")
                out.write(b"\n".join(buf))
                buf.clear()
        if buf:
            buf.append(b"")
            out.write(b"\n".join(buf))
    if truth is not None:
        with open(truth, "wb") as fh:
            fh.write(orjson.dumps(sim.truth()))
            fh.write(b"\n")
    return sim.stats()


def iter_lines(
    profiles: int, seed: int, days: int = 28, start: str = DEFAULT_START,
    variant: Variant = "default",
) -> Iterator[bytes]:
    """Yield the stream's lines (no trailing newline), exactly what ``write_stream`` writes."""
    return _Simulator(profiles, seed, days, start, variant=variant).lines()


def simulate(
    profiles: int, seed: int, days: int = 28, start: str = DEFAULT_START,
    variant: Variant = "default",
) -> tuple[list[bytes], dict[str, Any], SimulationStats]:
    """Whole small stream, truth and stats in memory: convenient for tests of other modules."""
    sim = _Simulator(profiles, seed, days, start, variant=variant)
    lines = list(sim.lines())
    return lines, sim.truth(), sim.stats()


def load_truth(path: str) -> dict[str, Any]:
    """Read a ground-truth document written by ``write_stream``."""
    with open(path, "rb") as fh:
        data = orjson.loads(fh.read())
    if not isinstance(data, dict) or "persons" not in data:
        raise ValueError(f"{path}: not a persona-stream ground truth document")
    return data


# --------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------

# event record flags
_F_USER = 1  # identity carries user_id
_F_EMAIL = 2  # identity carries email
_F_TRAITS = 4  # event carries traits
_F_CAMPAIGN = 8  # context carries the session's campaign (ads / social / e-mail landing)
_F_EMAIL_LANDING = 16  # session started from a newsletter click

# device indices for events without a device
_DEV_ESP = -1
_DEV_POS = -2
_DEV_CRM = -3

_MASK64 = (1 << 64) - 1
_BROWSER_KINDS = ("desktop_browser", "mobile_browser")


def _cum(weights: Sequence[tuple[str, float]]) -> tuple[tuple[str, ...], list[float]]:
    """Population and cumulative weights for ``Random.choices`` (fast path)."""
    total = 0.0
    cum: list[float] = []
    for _, w in weights:
        total += w
        cum.append(total)
    return tuple(k for k, _ in weights), cum


@dataclass(slots=True)
class _Device:
    kind: str  # desktop_browser | mobile_browser | mobile_app | tablet_app
    anonymous_id: str
    device_id: str | None
    info: dict[str, str]  # the event's "device" object (shared, never mutated)
    shared: bool = False


@dataclass(slots=True)
class _Person:
    index: int
    persona: Persona
    geo: dict[str, str]
    devices: list[_Device] = field(default_factory=list)
    user_id: str | None = None
    email: str | None = None
    crm_id: str | None = None
    traits: dict[str, Any] | None = None
    # ground truth, filled while rendering
    parent: dict[str, str] = field(default_factory=dict)
    valid_events: int = 0
    # variants: the persona from ``changes_at`` (epoch ms) on; a bot-like outlier
    later: Persona | None = None
    changes_at: int = 0
    outlier: bool = False

    def persona_at(self, t_ms: int) -> Persona:
        return self.later if self.later is not None and t_ms >= self.changes_at else self.persona


class _PersonaTables:
    """Per-persona cumulative weight tables, computed once."""

    def __init__(self, p: Persona) -> None:
        self.session_kinds, self.session_cum = _cum(p.session_mix)
        self.channels, self.channel_cum = _cum(p.browser_channels)
        self.event_types, self.event_cum = _cum(p.events)
        self.payments, self.payment_cum = _cum(p.payment)
        self.incomes, self.income_cum = _cum(p.income)
        hours = HOUR_WEIGHTS[p.hours]
        self.hour_cum = list(_accumulate(hours))
        week = WEEKDAY_WEIGHTS["business" if p.hours == "business" else "default"]
        self.week = week


def _accumulate(xs: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for x in xs:
        total += x
        yield total


def _parse_start(start: str) -> int:
    """Start instant in epoch milliseconds (RFC 3339 with ``Z`` or an offset)."""
    text = start.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = _dt.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return int(dt.timestamp() * 1000)


class _Clock:
    """Fast RFC 3339 formatting of epoch milliseconds (day strings cached)."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def fmt(self, t_ms: int) -> str:
        day, ms_of_day = divmod(t_ms, 86_400_000)
        d = self._days.get(day)
        if d is None:
            d = (_dt.datetime(1970, 1, 1) + _dt.timedelta(days=day)).strftime("%Y-%m-%d")
            self._days[day] = d
        s, ms = divmod(ms_of_day, 1000)
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        return f"{d}T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


def _uuid(rng: Random, upper: bool = False) -> str:
    h = f"{rng.getrandbits(128):032x}"
    s = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
    return s.upper() if upper else s


class _Simulator:
    """Builds the event skeleton, then renders it in time order (see module docs)."""

    def __init__(
        self, profiles: int, seed: int, days: int, start: str, progress: ProgressMode = "off",
        variant: Variant = "default",
    ) -> None:
        if profiles < 0:
            raise ValueError("profiles must be >= 0")
        if days < 1:
            raise ValueError("days must be >= 1")
        self.profiles = profiles
        self.seed = seed
        self.days = days
        self.start_ms = _parse_start(start)
        self.end_ms = self.start_ms + days * 86_400_000
        self.progress = progress
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.personas = personas_of(variant)
        self.tables = {p.name: _PersonaTables(p) for p in self.personas}
        self.persons: list[_Person] = []
        self.records: list[tuple[int, int, int, str, str, int, int, int]] = []
        self._used_ids: set[str] = set()
        self._session_counter = 0
        self._shared_ids: list[str] = []
        self._done = False
        self._lines = 0
        self._malformed = 0
        self._duplicates = 0
        self._late = 0

    # ---------------------------------------------------------------- generation

    def _unique(self, value: str, rng: Random) -> str:
        while value in self._used_ids:
            value = f"{value}{rng.randrange(10)}"
        self._used_ids.add(value)
        return value

    def _make_device(self, kind: str, rng: Random) -> _Device:
        anon = self._unique(_uuid(rng), rng)
        if kind == "desktop_browser":
            os_ = rng.choices(("Windows", "macOS", "Linux"), cum_weights=(60, 95, 100))[0]
            return _Device(kind, anon, None, {"type": "desktop", "os": os_})
        os_ = "iOS" if rng.random() < 0.5 else "Android"
        if kind == "mobile_browser":
            return _Device(kind, anon, None, {"type": "mobile", "os": os_})
        pop, cum = _cum(APP_VERSIONS)
        version = rng.choices(pop, cum_weights=cum)[0]
        device_id = self._unique(_uuid(rng, upper=os_ == "iOS"), rng)
        if kind == "tablet_app":
            os_ = "iPadOS" if os_ == "iOS" else "Android"
            return _Device(kind, anon, device_id,
                           {"type": "tablet", "os": os_, "app_version": version}, shared=True)
        return _Device(kind, anon, device_id,
                       {"type": "mobile", "os": os_, "app_version": version})

    def _make_person(self, index: int, rng: Random, force_known: bool) -> _Person:
        pop = tuple(p.name for p in self.personas)
        persona = self.personas[pop.index(rng.choices(pop, cum_weights=self._persona_cum)[0])]
        g = rng.choices(GEO, cum_weights=self._geo_cum)[0]
        geo = {"country": g[0], "region": g[1], "city": g[2]}
        person = _Person(index, persona, geo)
        for kind, p_have, _ in persona.devices:
            if (p_have >= 1.0 or rng.random() < p_have) and len(person.devices) < 3:
                person.devices.append(self._make_device(kind, rng))
        if self.variant == "changers" and rng.random() < CHANGER_SHARE:
            others = [p for p in self.personas if p is not persona]
            person.later = others[rng.randrange(len(others))]
            person.changes_at = self.start_ms + self.days // 2 * 86_400_000  # halfway
            have = {d.kind for d in person.devices}
            for kind, p_have, _ in person.later.devices:  # the devices the new habits need
                if kind not in have and p_have >= 0.5:
                    person.devices.append(self._make_device(kind, rng))
        elif self.variant == "outliers" and rng.random() < OUTLIER_SHARE:
            person.outlier = True
        if force_known or rng.random() < persona.identify_rate:
            first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
            last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
            doms, dom_cum = _cum(MAIL_DOMAINS)
            if persona.b2b and rng.random() < 0.7:
                domain = f"{LAST_NAMES[rng.randrange(len(LAST_NAMES))]}-{rng.randrange(999)}.biz"
            else:
                domain = rng.choices(doms, cum_weights=dom_cum)[0]
            person.email = self._unique(f"{first}.{last}{rng.randrange(100)}@{domain}", rng)
            person.user_id = self._unique(f"u{rng.getrandbits(48):012x}", rng)
            if rng.random() < persona.crm_rate:
                person.crm_id = self._unique(f"CRM{rng.randrange(10**7, 10**8)}", rng)
            person.traits = self._traits(person, rng)
        return person

    def _traits(self, person: _Person, rng: Random) -> dict[str, Any]:
        p = person.persona
        t = self.tables[p.name]
        traits: dict[str, Any] = {
            "age": rng.randint(*p.age),
            "gender": rng.choices(("female", "male", "diverse"), cum_weights=(48, 96, 100))[0],
            "income_band": rng.choices(t.incomes, cum_weights=t.income_cum)[0],
            "country": person.geo["country"],
            "city": person.geo["city"],
            "interests": sorted(rng.sample(p.interests, 2)),
            "newsletter_opt_in": p.newsletter_opt_in >= 1.0 or rng.random() < p.newsletter_opt_in,
        }
        if p.b2b:
            sizes, size_cum = _cum(COMPANY_SIZES)
            traits["industry"] = INDUSTRIES[rng.randrange(len(INDUSTRIES))]
            traits["company_size"] = rng.choices(sizes, cum_weights=size_cum)[0]
            traits["job_title"] = JOB_TITLES[rng.randrange(len(JOB_TITLES))]
        return traits

    def _session_start(self, rng: Random, t: _PersonaTables, days: tuple[int, int]) -> int:
        day = self._pick_day(rng, t, days)
        hour = rng.choices(range(24), cum_weights=t.hour_cum)[0]
        t_ms = self.start_ms + day * 86_400_000 + hour * 3_600_000 + rng.randrange(3_600_000)
        # leave room for the longest session before the end of the window
        return min(t_ms, self.end_ms - 4 * 3_600_000 - rng.randrange(3_600_000))

    def _pick_day(self, rng: Random, t: _PersonaTables, days: tuple[int, int]) -> int:
        # rejection sampling on the weekday weight: cheap and exact
        top = max(t.week)
        while True:
            day = rng.randrange(*days)
            if rng.random() * top <= t.week[(self._start_weekday + day) % 7]:
                return day

    def _generate(self) -> None:
        rng = Random(self.seed)
        self._persona_cum = list(_accumulate([p.share for p in self.personas]))
        self._geo_cum = list(_accumulate([g[3] for g in GEO]))
        self._start_weekday = _dt.datetime.fromtimestamp(self.start_ms / 1000, _dt.UTC).weekday()
        n = self.profiles
        # households: pairs of consecutive persons sharing a tablet
        expected_known = 0.64 * n
        n_households = round(expected_known * SHARED_TABLET_SHARE / 2)
        if n >= 4 and n_households == 0:
            n_households = 1
        pair_starts = sorted(2 * k for k in rng.sample(range(n // 2), min(n_households, n // 2)))
        households = set(pair_starts)
        progress = Progress(self.progress, "generating persons", "persons", total=n)
        idx = 0
        while idx < n:
            if idx in households:
                a = self._make_person(idx, rng, force_known=True)
                b = self._make_person(idx + 1, rng, force_known=True)
                tablet = self._make_device("tablet_app", rng)
                self._shared_ids.append(f"anonymous_id:{tablet.anonymous_id}")
                self._shared_ids.append(f"device_id:{tablet.device_id}")
                for person in (a, b):
                    if len(person.devices) >= 3:
                        person.devices.pop()
                    person.devices.append(tablet)
                    self.persons.append(person)
                    self._journey(person, rng)
                idx += 2
            else:
                person = self._make_person(idx, rng, force_known=False)
                self.persons.append(person)
                self._journey(person, rng)
                idx += 1
            if idx - progress.done >= 1000:
                progress.update(idx, n)
        progress.update(n, n)
        progress.close()
        self.records.sort()

    def _journey(self, person: _Person, rng: Random) -> None:
        """All sessions and events of one person, appended to ``self.records``."""
        p = person.persona
        t = self.tables[p.name]
        target = max(2, min(4000, int(rng.lognormvariate(2.38, 0.95) * p.activity)))
        if person.outlier:
            target = int(target * OUTLIER_ACTIVITY)
        # 1) session skeletons: (start, kind, n_events)
        sessions: list[tuple[int, str, int]] = []
        if person.later is None:
            self._skeleton(sessions, rng, p, target, (0, self.days))
        else:  # half the activity before the change, half after, with the new habits
            half = self.days // 2
            self._skeleton(sessions, rng, p, target // 2 + 1, (0, half))
            self._skeleton(sessions, rng, person.later, target // 2 + 1, (half, self.days))
        sessions.sort()
        n_site = sum(1 for s in sessions if s[1] == "site")
        first_id = -1
        if person.user_id is not None and n_site:
            first_id = int(rng.random() * max(1.0, p.identify_at * n_site))
        identified = False
        dev_identified = [False] * len(person.devices)
        dev_weights = list(_accumulate([self._usage(p, d) for d in person.devices]))
        mean_extra = max(p.session_events - 1.0, 0.1)
        browsers = [i for i, d in enumerate(person.devices) if d.kind in _BROWSER_KINDS]
        # household members start on the family tablet, so the sharing is always visible
        tablet = next((i for i, d in enumerate(person.devices) if d.shared), -1)
        crm_announced = False
        seq = 0
        site_no = -1
        records = self.records
        queue = list(reversed(sessions))  # pop() takes the earliest
        while queue:
            start, kind, size = queue.pop()
            if person.later is not None and start >= person.changes_at and p is person.persona:
                p = person.later  # the new habits, on the same devices and identifiers
                t = self.tables[p.name]
                mean_extra = max(p.session_events - 1.0, 0.1)
                dev_weights = list(_accumulate([self._usage(p, d) for d in person.devices]))
            if kind == "store" and (not identified or person.crm_id is None):
                kind, size = "site", 2
            force_id = False
            if kind == "email" and not identified:
                # nobody can be mailed before giving an address: this visit subscribes them
                kind, size = "site", 1 + int(rng.expovariate(1.0 / mean_extra))
                force_id = person.user_id is not None
            self._session_counter += 1
            sess = self._session_counter
            if kind == "email":
                records.append((start, person.index, seq, "email_open", "email", _DEV_ESP, sess, 0))
                seq += 1
                if rng.random() < 0.35:
                    click = start + 5_000 + int(rng.expovariate(1 / 60_000))
                    records.append((click, person.index, seq, "email_click", "email", _DEV_ESP,
                                    sess, 0))
                    seq += 1
                    if rng.random() < 0.4:
                        land = 1 + int(rng.expovariate(1.0 / mean_extra))
                        # the landing session is inserted right after the click
                        queue.append((click + 2_000 + rng.randrange(8_000), "landing", land))
                continue
            if kind == "store":
                assert person.crm_id is not None
                if not crm_announced:
                    records.append((start - 60_000, person.index, seq, "identify", "", _DEV_CRM,
                                    sess, _F_TRAITS))
                    seq += 1
                    crm_announced = True
                records.append((start, person.index, seq, "purchase", "store", _DEV_POS, sess, 0))
                seq += 1
                continue
            # site or landing session on a device
            if kind == "landing" and browsers:
                dev = browsers[rng.randrange(len(browsers))]
            elif tablet >= 0:
                dev, tablet = tablet, -1
            else:
                dev = rng.choices(range(len(person.devices)), cum_weights=dev_weights)[0]
            device = person.devices[dev]
            flags = 0
            if kind == "landing":
                channel = "web" if device.kind in _BROWSER_KINDS else "mobile_app"
                flags = _F_CAMPAIGN | _F_EMAIL_LANDING
            elif device.kind in _BROWSER_KINDS:
                channel = rng.choices(t.channels, cum_weights=t.channel_cum)[0]
                if channel != "web":
                    flags = _F_CAMPAIGN
            else:
                channel = "mobile_app"
            if kind == "site":
                site_no += 1
            types = self._session_types(rng, t, channel, size)
            # identification
            id_pos = -1
            id_type = ""
            id_flags = 0
            if person.user_id is not None and not dev_identified[dev]:
                if not identified and (site_no == first_id or force_id or device.shared):
                    id_type = "identify" if device.shared else p.identify_event
                    id_pos = 0 if device.shared else rng.randrange(len(types) + 1)
                    id_flags = _F_USER | _F_EMAIL | _F_TRAITS
                elif identified and (device.shared or rng.random() < p.login_rate):
                    id_type, id_pos = "identify", 0
                    id_flags = _F_USER | _F_TRAITS | (_F_EMAIL if rng.random() < 0.4 else 0)
            if id_pos >= 0:
                types.insert(id_pos, id_type)
            user_flag = _F_USER if dev_identified[dev] else 0
            t_ms = start
            gap_rate = 1.0 / (p.gap_seconds * 1000.0)
            for i, etype in enumerate(types):
                if i:
                    t_ms += 2_000 + min(300_000, int(rng.expovariate(gap_rate)))
                if i == id_pos:
                    records.append((t_ms, person.index, seq, etype, channel, dev, sess,
                                    flags | id_flags))
                    user_flag = _F_USER
                    identified = True
                    dev_identified[dev] = True
                else:
                    records.append((t_ms, person.index, seq, etype, channel, dev, sess,
                                    flags | user_flag))
                seq += 1

    def _skeleton(self, sessions: list[tuple[int, str, int]], rng: Random, p: Persona,
                  target: int, days: tuple[int, int]) -> None:
        """Sessions ``(start, kind, n_events)`` of persona ``p`` within ``days`` until
        ``target`` events."""
        t = self.tables[p.name]
        count = 0
        mean_extra = max(p.session_events - 1.0, 0.1)
        while count < target:
            kind = rng.choices(t.session_kinds, cum_weights=t.session_cum)[0]
            size = 1 + min(39, int(rng.expovariate(1.0 / mean_extra))) if kind == "site" else 1
            sessions.append((self._session_start(rng, t, days), kind, size))
            count += size

    @staticmethod
    def _usage(p: Persona, d: _Device) -> float:
        if d.kind == "tablet_app":
            return 2.0
        for kind, _, weight in p.devices:
            if kind == d.kind:
                return weight
        return 1.0

    @staticmethod
    def _session_types(rng: Random, t: _PersonaTables, channel: str, size: int) -> list[str]:
        types = rng.choices(t.event_types, cum_weights=t.event_cum, k=size)
        if channel == "ads":
            types[0] = "ad_click"
        elif channel == "social":
            types[0] = "social_engagement"
        elif channel == "mobile_app" and rng.random() < 0.6:
            types[0] = "app_open"
        if "purchase" in types:
            out: list[str] = []
            for et in types:
                if et == "purchase":
                    if "add_to_cart" not in out:
                        out.append("add_to_cart")
                    out.append("checkout_started")
                out.append(et)
            return out
        return types

    # ---------------------------------------------------------------- rendering

    def lines(self) -> Iterator[bytes]:
        """The stream, line by line; fills stats and truth as it goes."""
        if self._done:
            raise RuntimeError("a simulator produces its stream once")
        self._generate()
        records = self.records
        total = len(records)
        rng = Random(f"render-{self.seed}")
        clock = _Clock()
        n_oversized = max(1 if total >= OVERSIZED_MIN_EVENTS else 0,
                          round(total / OVERSIZED_EVERY))
        oversized = set(rng.sample(range(total), min(n_oversized, total)))
        pending: list[tuple[int, int, bool, bytes]] = []  # (release_ms, order, is_dup, line)
        order = 0
        running_max = -1
        seed = self.seed
        dumps = orjson.dumps
        progress = Progress(self.progress, "writing events", total=total)
        persons = self.persons
        for i, rec in enumerate(records):
            t_ms = rec[0]
            while pending and pending[0][0] < t_ms:
                rel, _, is_dup, held = heapq.heappop(pending)
                self._account(held, rel, running_max, is_dup)
                yield held
            ev = self._render(rec, f"ev-{seed}-{i:09d}", clock, rng)
            fate = rng.random()
            person = persons[rec[1]]
            if i in oversized:
                ev.setdefault("properties", {})["debug_payload"] = "x" * (MAX_LINE_BYTES + 1024)
                line = dumps(ev)
                self._malformed += 1
            elif fate < MALFORMED_RATE:
                line = self._malform(ev, rng)
                self._malformed += 1
            else:
                if rng.random() < JUNK_RATE:
                    self._add_junk(ev["identity"], rng)
                line = dumps(ev)
                person.valid_events += 1
                self._link(person, ev["identity"])
                if fate < MALFORMED_RATE + DUPLICATE_RATE:
                    delay = 2_000 + rng.randrange((MAX_DUPLICATE_DELAY_SECONDS - 2) * 1000)
                    order += 1
                    heapq.heappush(pending, (t_ms + delay, order, True, line))
                elif fate < MALFORMED_RATE + DUPLICATE_RATE + LATE_RATE:
                    delay = 1_000 + rng.randrange((MAX_LATE_SECONDS - 1) * 1000)
                    order += 1
                    heapq.heappush(pending, (t_ms + delay, order, False, line))
                    continue
            if t_ms > running_max:
                running_max = t_ms
            self._lines += 1
            yield line
            if i % 10_000 == 0:
                progress.update(i, total)
        while pending:
            rel, _, is_dup, held = heapq.heappop(pending)
            self._account(held, rel, running_max, is_dup)
            yield held
        progress.update(total, total)
        progress.close()
        self._done = True

    def _account(self, line: bytes, release_ms: int, running_max: int, is_dup: bool) -> None:
        self._lines += 1
        if is_dup:
            self._duplicates += 1
            return
        # a held-back line is late when something newer went out before it
        occurred = _parse_line_ms(line)
        if occurred < running_max:
            self._late += 1

    def _render(self, rec: tuple[int, int, int, str, str, int, int, int], event_id: str,
                clock: _Clock, rng: Random) -> dict[str, Any]:
        t_ms, pidx, _, etype, channel, dev, sess, flags = rec
        person = self.persons[pidx]
        p = person.persona_at(t_ms)
        ev: dict[str, Any] = {"event_id": event_id, "occurred_at": clock.fmt(t_ms), "type": etype}
        # a scrambled global session number: random-looking, reveals no person index
        scrambled = (sess * 0x9E3779B97F4A7C15 + self.seed * 0x632BE59BD9B4E019) & _MASK64
        session_id = f"{scrambled:016x}"
        if dev >= 0:
            device = person.devices[dev]
            if device.device_id is None:
                identity: dict[str, str] = {"anonymous_id": device.anonymous_id}
            else:
                identity = {"anonymous_id": device.anonymous_id, "device_id": device.device_id}
            if flags & _F_USER:
                identity["user_id"] = person.user_id  # type: ignore[assignment]
            if flags & _F_EMAIL:
                identity["email"] = person.email  # type: ignore[assignment]
            ev["identity"] = identity
            ev["channel"] = channel
            ev["device"] = device.info
            app = device.device_id is not None
            props, path = self._site_properties(etype, p, rng, t_ms)
            base = "app://shop/" if app else "https://www.shop.example/"
            context: dict[str, Any] = {"session_id": session_id, "page_url": base + path,
                                       "geo": person.geo}
            if flags & _F_CAMPAIGN:
                if flags & _F_EMAIL_LANDING:
                    context["campaign"] = {"source": "newsletter", "medium": "email",
                                           "name": self._newsletter(t_ms)}
                elif channel == "ads":
                    src, med, name = AD_CAMPAIGNS[sess % len(AD_CAMPAIGNS)]
                    context["campaign"] = {"source": src, "medium": med, "name": name}
                    if etype == "ad_click":
                        props["campaign_id"] = f"cmp-{name}"
                else:
                    src, med, name = SOCIAL_SOURCES[sess % len(SOCIAL_SOURCES)]
                    context["campaign"] = {"source": src, "medium": med, "name": name}
            ev["context"] = context
            ev["properties"] = props
            ev["source"] = "mobile-sdk" if app else "web-sdk"
        elif dev == _DEV_ESP:
            ev["identity"] = {"email": person.email}
            ev["channel"] = "email"
            name = self._newsletter(t_ms)
            ev["context"] = {"campaign": {"source": "newsletter", "medium": "email",
                                          "name": name}}
            props = {"campaign_id": name, "content_category": p.content[sess % len(p.content)]}
            if etype == "email_click":
                props["link_url"] = f"https://www.shop.example/{props['content_category']}"
            ev["properties"] = props
            ev["source"] = "esp"
        else:
            ev["identity"] = {"crm_id": person.crm_id, "email": person.email}
            if dev == _DEV_POS:
                ev["channel"] = "store"
                ev["device"] = {"type": "other", "os": "pos"}
                ev["context"] = {"geo": person.geo}
                props, _ = self._site_properties(etype, p, rng, t_ms)
                props["store_id"] = f"store-{person.geo['city'].lower()}"
                ev["properties"] = props
                ev["source"] = "pos"
            else:
                ev["channel"] = "other"
                ev["source"] = "crm"
        if flags & _F_TRAITS and person.traits is not None:
            ev["traits"] = person.traits
        if person.outlier and "revenue" in ev.get("properties", ()):
            ev["properties"]["revenue"] = round(ev["properties"]["revenue"] * OUTLIER_REVENUE, 2)
        if self.variant == "one_channel" and "channel" in ev:
            ev["channel"] = "web"
        return ev

    @staticmethod
    def _newsletter(t_ms: int) -> str:
        week = _dt.datetime.fromtimestamp(t_ms // 1000, _dt.UTC).isocalendar()
        return f"nl-{week[0]}-w{week[1]:02d}"

    @staticmethod
    def _product(p: Persona, rng: Random) -> tuple[str, str, float]:
        category = p.categories[rng.randrange(len(p.categories))]
        num = rng.randrange(1, 1500)
        lo, hi = CATEGORY_PRICES[category]
        # a product always has the same price
        price = round(lo + (hi - lo) * ((num * 7919) % 1000) / 1000.0, 2) - 0.01
        return f"{category[:3].upper()}-{num:05d}", category, round(price, 2)

    def _site_properties(self, etype: str, p: Persona, rng: Random,
                         t_ms: int) -> tuple[dict[str, Any], str]:
        if etype in ("product_view", "add_to_cart", "checkout_started", "purchase"):
            pid, category, price = self._product(p, rng)
            props: dict[str, Any] = {"product_id": pid, "category": category, "price": price,
                                     "currency": "EUR"}
            if etype == "purchase":
                qty = 1 if p.quantity_max == 1 or rng.random() < 0.7 else \
                    rng.randint(2, p.quantity_max)
                t = self.tables[p.name]
                props["quantity"] = qty
                props["revenue"] = round(price * qty, 2)
                props["payment_method"] = rng.choices(t.payments, cum_weights=t.payment_cum)[0]
                props["order_id"] = f"o{rng.getrandbits(40):010x}"
                return props, "checkout/thank-you"
            if etype == "product_view":
                return props, f"p/{pid}"
            return props, "cart" if etype == "add_to_cart" else "checkout"
        if etype == "search":
            q = p.queries[rng.randrange(len(p.queries))]
            return {"query": q}, "search?q=" + q.replace(" ", "+")
        content = p.content[rng.randrange(len(p.content))]
        if etype == "download":
            return {"content_category": content, "file": f"{content}-{rng.randrange(40)}.pdf"}, \
                f"resources/{content}"
        if etype == "form_submit":
            form = "demo_request" if p.b2b else "contact"
            return {"form": form, "content_category": content}, f"forms/{form}"
        if etype == "signup":
            return {"plan": "free"}, "account/signup"
        if etype == "identify":
            return {}, "account/login"
        if etype == "support_contact":
            return {"topic": rng.choice(("delivery", "returns", "payment", "account"))}, "help"
        return {"content_category": content}, content

    def _malform(self, ev: dict[str, Any], rng: Random) -> bytes:
        kind = rng.randrange(9)
        if kind == 0:  # truncated: not JSON
            line = orjson.dumps(ev)
            return line[: max(1, len(line) // 2)]
        if kind == 1:
            return b"[" + orjson.dumps(ev) + b"]"
        if kind == 2:
            del ev["event_id"]
        elif kind == 3:
            del ev["identity"]
        elif kind == 4:
            ev["identity"] = {}
        elif kind == 5:
            ev["occurred_at"] = "yesterday"
        elif kind == 6:
            ev["type"] = rng.randrange(1, 100)
        elif kind == 7:  # a bad *optional* field would be repaired: break a required one
            ev["type"] = "Carrier Pigeon"
        else:
            return orjson.dumps(ev).replace(b'"event_id":"', b'"event_id":"\xff\xfe', 1)
        return orjson.dumps(ev)

    @staticmethod
    def _add_junk(identity: dict[str, str], rng: Random) -> None:
        if "device_id" in identity:  # app SDK failed to read its own id
            identity["anonymous_id"] = JUNK_VALUES["anonymous_id"][rng.randrange(4)]
        elif "anonymous_id" in identity:  # web tag picked up a placeholder
            if rng.random() < 0.5:
                identity["email"] = JUNK_VALUES["email"][rng.randrange(2)]
            else:
                identity["device_id"] = JUNK_VALUES["device_id"][rng.randrange(2)]
        else:  # server-side events with a placeholder cookie
            identity["anonymous_id"] = JUNK_VALUES["anonymous_id"][rng.randrange(4)]

    # ---------------------------------------------------------------- ground truth

    def _link(self, person: _Person, identity: dict[str, str]) -> None:
        """Union the identifiers of one valid event (junk and shared ones ignored)."""
        parent = person.parent
        root: str | None = None
        for kind, value in identity.items():
            if value in _JUNK_SET.get(kind, ()):
                continue
            key = f"{kind}:{value}"
            if key in self._shared_set:
                continue
            r = _find(parent, key)
            if root is None:
                root = r
            elif r != root:
                parent[r] = root

    @property
    def _shared_set(self) -> set[str]:
        s = getattr(self, "_shared_cache", None)
        if s is None:
            s = set(self._shared_ids)
            self._shared_cache = s
        return s

    def stats(self) -> SimulationStats:
        """Counts of the stream; only meaningful once the stream has been consumed."""
        if not self._done:
            raise RuntimeError("consume the stream first")
        return SimulationStats(self._lines, len(self.persons), self._malformed,
                               self._duplicates, self._late)

    def truth(self) -> dict[str, Any]:
        """Ground-truth document (see ``write_stream``)."""
        st = self.stats()
        persons: dict[str, Any] = {}
        for person in self.persons:
            groups: dict[str, list[str]] = {}
            for key in person.parent:
                groups.setdefault(_find(person.parent, key), []).append(key)
            components = sorted(sorted(g) for g in groups.values())
            entry: dict[str, Any] = {
                "persona": person.persona_at(self.end_ms).name,
                "identifiers": sorted(k for g in components for k in g),
                "components": components,
                "valid_events": person.valid_events,
            }
            if person.later is not None:
                entry["persona_before"] = person.persona.name
                entry["changed_at"] = _Clock().fmt(person.changes_at)
            if person.outlier:
                entry["outlier"] = True
            persons[f"person-{person.index + 1:06d}"] = entry
        return {
            "seed": self.seed,
            "profiles": self.profiles,
            "events": st.events,
            "valid_events": st.events - st.malformed - st.duplicates,
            "malformed": st.malformed,
            "duplicates": st.duplicates,
            "late": st.late,
            "variant": self.variant,
            "personas": {p.name: p.description for p in self.personas},
            "persons": persons,
            "shared_identifiers": sorted(self._shared_ids),
            "junk_identifiers": list(JUNK_IDENTIFIERS),
        }


_JUNK_SET: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in JUNK_VALUES.items()}


def _find(parent: dict[str, str], key: str) -> str:
    """Union-find root with path compression; unseen keys become their own root."""
    root = parent.setdefault(key, key)
    if root == key:
        return key
    while parent[root] != root:
        root = parent[root]
    while key != root:
        nxt = parent[key]
        parent[key] = root
        key = nxt
    return root


def _parse_line_ms(line: bytes) -> int:
    """Event time of one of our own well-formed lines, in epoch milliseconds."""
    text = orjson.loads(line)["occurred_at"]
    dt = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000)


class _Output:
    """Binary sink for a path, ``.gz`` path (reproducible gzip header) or ``-``."""

    def __init__(self, path: str) -> None:
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        if path == "-":
            self._sink: IO[bytes] = sys.stdout.buffer
        elif path.endswith(".gz"):
            self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
            self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                                     compresslevel=5, mtime=0)
            self._sink = io.BufferedWriter(self._gz, buffer_size=1 << 20)
        else:
            self._raw = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
            self._sink = self._raw

    def write(self, data: bytes) -> None:
        self._sink.write(data)

    def close(self) -> None:
        self._sink.flush()
        if self._gz is not None:
            self._sink.close()
        if self._raw is not None:
            self._raw.close()

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_output(path: str) -> _Output:
    return _Output(path)

