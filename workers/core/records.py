"""The public records the core emits, typed; ``docs/contracts.md`` describes them for users.

Each ``TypedDict`` mirrors one JSON Schema in ``schemas/``. :data:`OUTPUT_KINDS`
is the one map from an output kind to where it lands: its file in an output
folder and its topic (``replay --to-topic PREFIX`` adds the suffix to the
prefix; the worker uses the configured live topics). :func:`output_kinds` says
which of them a configuration emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NotRequired, TypedDict

if TYPE_CHECKING:
    from workers.config import Config

OutputKind = Literal["segment_change", "identity_merge", "dead_letter", "audience",
                     "segment_lineage", "forget"]
LineageKind = Literal["birth", "split", "merge", "retirement", "rename"]
ChangeReason = Literal["assignment", "merge", "model_update", "forget"]
CHANGE_REASONS: tuple[ChangeReason, ...] = ("assignment", "merge", "model_update", "forget")


@dataclass(frozen=True)
class Destination:
    file: str  # in an output folder (run, replay --out)
    topic_suffix: str  # replay --to-topic PREFIX writes to PREFIX.<suffix>


OUTPUT_KINDS: dict[OutputKind, Destination] = {
    "segment_change": Destination("segment_changes.jsonl", "segment-changes"),
    "identity_merge": Destination("identity_merges.jsonl", "identity-merges"),
    "dead_letter": Destination("dead_letters.jsonl", "dlq"),
    "audience": Destination("audiences.jsonl", "audiences"),
    # the worker sends these to the personas topic, next to the cards they explain
    "segment_lineage": Destination("segment_lineage.jsonl", "segment-lineage"),
    # on the segment-change topic, so its subscribers hear of it; a file of its own
    "forget": Destination("forgets.jsonl", "segment-changes"),
}


def output_kinds(config: Config) -> list[OutputKind]:
    """The kinds of record a pipeline under ``config`` emits: audience calls only when
    ``audiences.enabled``."""
    return [kind for kind in OUTPUT_KINDS if kind != "audience" or config.audiences.enabled]


class SegmentRef(TypedDict):
    id: int
    name: str


class Explanation(TypedDict):
    feature: str
    value: float
    segment_value: float
    population_value: float


class SegmentChange(TypedDict):
    """``segment_change/v1``: a person moved to another segment (or got a first one)."""

    schema: Literal["segment_change/v1"]
    event_id: str
    profile_id: str
    previous_segment: SegmentRef | None
    segment: SegmentRef
    reason: ChangeReason
    model_version: int
    score: float
    explanation: list[Explanation]
    identifiers: dict[str, list[str]]
    trigger_event_id: str | None
    occurred_at: str
    emitted_at: NotRequired[str]  # stamped by the sink, never by the core


class IdentityMerge(TypedDict):
    """``identity_merge/v1``: profiles found to be one person were merged into one."""

    schema: Literal["identity_merge/v1"]
    event_id: str
    profile_id: str
    merged_profile_ids: list[str]
    identifiers: dict[str, list[str]]
    trigger_event_id: str
    occurred_at: str
    emitted_at: NotRequired[str]


class Forget(TypedDict):
    """``forget/v1``: a person was forgotten (GDPR article 17); delete what you hold."""

    schema: Literal["forget/v1"]
    event_id: str
    profile_id: str
    previous_segment: SegmentRef | None
    identifiers: dict[str, list[str]]  # SHA-256 hex of each value, never a raw one
    request_id: str
    reason: str
    requested_at: str
    emitted_at: NotRequired[str]


class DeadLetter(TypedDict):
    """``dead_letter/v1``: an input record that could not be processed, and why."""

    schema: Literal["dead_letter/v1"]
    error: str
    detail: str
    raw: NotRequired[str]
    raw_base64: NotRequired[str]
    raw_bytes: NotRequired[int]  # only when raw is cut to output.dead_letter_raw_bytes
    raw_sha256: NotRequired[str]  # of the whole record, with raw_bytes
    topic: NotRequired[str]
    partition: NotRequired[int]
    offset: NotRequired[int]


class AudienceCall(TypedDict):
    """A Segment-spec track or identify call about audience membership
    (``schemas/audience_call.v1.schema.json``, :mod:`workers.core.audiences`)."""

    type: Literal["track", "identify"]
    event: NotRequired[str]  # track: "Audience Entered" or "Audience Exited"
    userId: NotRequired[str]
    anonymousId: NotRequired[str]  # the profile id, when there is no userId
    messageId: str
    timestamp: str
    properties: NotRequired[dict[str, Any]]  # track
    traits: NotRequired[dict[str, Any]]  # identify: one boolean per audience
    context: dict[str, Any]


class SegmentLineage(TypedDict):
    """``segment_lineage/v1``: a segment id was born, split off, merged, retired or renamed."""

    schema: Literal["segment_lineage/v1"]
    event_id: str
    kind: LineageKind
    segment: SegmentRef
    parents: list[SegmentRef]  # split: the segment it split from
    successor: SegmentRef | None  # merge: where its people went
    previous_name: str | None  # rename
    share: float | None  # birth, split: its share of recently learned profiles
    model_version: int
    occurred_at: str
    emitted_at: NotRequired[str]


OutputRecord = (SegmentChange | IdentityMerge | DeadLetter | AudienceCall | SegmentLineage
                | Forget)


class Distinguishing(TypedDict):
    feature: str
    value: float
    population_value: float
    deviation: float


class Kpis(TypedDict):
    conversion_rate: float
    revenue_per_profile: float
    engagement_rate: float
    retention_rate: float


class PersonaCard(TypedDict):
    """``persona_card/v1``: one segment described for a marketer."""

    segment_id: int
    name: str
    size: int
    model_version: int
    centroid: dict[str, float]
    distinguishing: list[Distinguishing]
    kpis: Kpis


class ProfileSnapshot(TypedDict):
    """``profile_snapshot/v1``: one profile as ``profiles.jsonl`` and ``/profile`` show it."""

    profile_id: str
    identifiers: dict[str, list[str]]
    segment: SegmentRef | None
    event_count: int
    first_seen: str
    last_seen: str
    features: dict[str, float]


class Output(NamedTuple):
    """One record for a sink: ``kind`` names the topic/file, ``key`` the Kafka key."""

    kind: OutputKind
    key: str | None
    record: OutputRecord


@dataclass(frozen=True)
class Origin:
    """Where a raw record came from, for its dead letter."""

    topic: str
    partition: int
    offset: int
