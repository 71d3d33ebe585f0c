"""The JSON Schemas in schemas/ are valid and say what docs/contracts.md says.

Every schema is checked against draft 2020-12, then against examples that must
pass and examples that must fail. Each failing example breaks exactly one rule
(named in its test id) and the test asserts which JSON Schema keyword rejects
it, so a schema that rejects an example for the wrong reason fails too.
Fast: no network, no broker.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"

SCHEMA_FILES = {
    "touchpoint": "touchpoint.v1.schema.json",
    "segment_change": "segment_change.v1.schema.json",
    "identity_merge": "identity_merge.v1.schema.json",
    "segment_lineage": "segment_lineage.v1.schema.json",
    "persona_card": "persona_card.v1.schema.json",
    "profile_snapshot": "profile_snapshot.v1.schema.json",
    "dead_letter": "dead_letter.v1.schema.json",
    "run_summary": "run_summary.v1.schema.json",
    "audience_call": "audience_call.v1.schema.json",
    "forget": "forget.v1.schema.json",
    "forget_request": "forget_request.v1.schema.json",
}

# Required fields, copied from docs/contracts.md (sections 1 and 2), independently of
# the schemas: a schema that drops or adds a required field fails here.
CONTRACT_REQUIRED = {
    "touchpoint": {"event_id", "occurred_at", "type", "identity"},
    "segment_change": {
        "schema", "event_id", "profile_id", "previous_segment", "segment", "reason",
        "model_version", "score", "explanation", "identifiers", "trigger_event_id",
        "occurred_at", "emitted_at",
    },
    "identity_merge": {
        "schema", "event_id", "profile_id", "merged_profile_ids", "identifiers",
        "trigger_event_id", "occurred_at", "emitted_at",
    },
    "segment_lineage": {
        "schema", "event_id", "kind", "segment", "parents", "successor", "previous_name",
        "share", "model_version", "occurred_at", "emitted_at",
    },
    "persona_card": {
        "segment_id", "name", "size", "model_version", "centroid", "distinguishing", "kpis",
    },
    "profile_snapshot": {
        "profile_id", "identifiers", "segment", "event_count", "first_seen", "last_seen",
        "features",
    },
    "dead_letter": {"schema", "error", "detail"},
    "audience_call": {"type", "messageId", "timestamp", "context"},
    "forget": {"schema", "event_id", "profile_id", "previous_segment", "identifiers",
               "request_id", "reason", "requested_at", "emitted_at"},
    "forget_request": {"schema", "request_id", "identifier_hashes", "requested_at"},
    "run_summary": {
        "events_read", "events_valid", "events_invalid", "events_duplicate", "profiles",
        "segment_changes", "identity_merges", "segments", "seconds", "events_per_second",
    },
}
SCHEMA_CONST = {
    "segment_change": "segment_change/v1",
    "identity_merge": "identity_merge/v1",
    "segment_lineage": "segment_lineage/v1",
    "dead_letter": "dead_letter/v1",
    "forget": "forget/v1",
    "forget_request": "forget_request/v1",
}
IDENTIFIER_TYPES = {"anonymous_id", "device_id", "user_id", "email", "phone", "crm_id"}


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / SCHEMA_FILES[name]).read_text(encoding="utf-8"))


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name), format_checker=FormatChecker())


DELETE = object()


def mutate(doc: Any, changes: dict[str, Any]) -> Any:
    """A deep copy of doc with dotted paths set (or removed with DELETE)."""
    out = copy.deepcopy(doc)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


# --------------------------------------------------------------------------- bases

TOUCHPOINT_MIN = {
    "event_id": "evt-0001",
    "occurred_at": "2025-03-01T12:30:00Z",
    "type": "page_view",
    "identity": {"anonymous_id": "anon-42"},
}
TOUCHPOINT_FULL = {
    "event_id": "evt-0002",
    "occurred_at": "2025-03-01T12:30:00.250+01:00",
    "type": "purchase",
    "identity": {
        "anonymous_id": "anon-42",
        "device_id": "idfa-7f3c",
        "user_id": "u-1001",
        "email": "ana@example.com",
        "phone": "+33600000000",
        "crm_id": "crm-77",
    },
    "channel": "mobile_app",
    "device": {"type": "mobile", "os": "iOS 18", "app_version": "5.2.1"},
    "context": {
        "session_id": "s-9",
        "page_url": "https://shop.example.com/checkout",
        "referrer": "https://www.example.org/",
        "user_agent": "Mozilla/5.0",
        "campaign": {"source": "newsletter", "medium": "email", "name": "spring-sale"},
        "geo": {"country": "FR", "region": "IDF", "city": "Paris"},
    },
    "properties": {"product_id": "p-1", "price": 19.9, "revenue": 39.8, "currency": "EUR"},
    "traits": {
        "age": 34,
        "gender": "female",
        "income_band": "50-75k",
        "country": "FR",
        "region": "IDF",
        "city": "Paris",
        "industry": "retail",
        "company_size": "11-50",
        "job_title": "buyer",
        "interests": ["running", "cooking"],
        "newsletter_opt_in": True,
    },
    "source": "ios-sdk",
}

SEGMENT_CHANGE = {
    "schema": "segment_change/v1",
    "event_id": "sc-3f2a9c",
    "profile_id": "prof-1",
    "previous_segment": {"id": 2, "name": "Weekend browsers"},
    "segment": {"id": 5, "name": "Mobile-first bargain hunters"},
    "reason": "assignment",
    "model_version": 3,
    "score": 0.82,
    "explanation": [
        {"feature": "channel_mobile_share", "value": 0.9, "segment_value": 0.85,
         "population_value": 0.4},
        {"feature": "discount_share", "value": 0.6, "segment_value": 0.55,
         "population_value": 0.1},
    ],
    "identifiers": {"user_id": ["u-1001"], "email": ["ana@example.com"]},
    "trigger_event_id": "evt-0002",
    "occurred_at": "2025-03-01T12:30:00.250+01:00",
    "emitted_at": "2025-03-01T11:30:01.003Z",
}
EXPLANATION_ITEM = SEGMENT_CHANGE["explanation"][0]

IDENTITY_MERGE = {
    "schema": "identity_merge/v1",
    "event_id": "im-77aa",
    "profile_id": "prof-1",
    "merged_profile_ids": ["prof-9"],
    "identifiers": {"user_id": ["u-1001"], "anonymous_id": ["anon-42", "anon-43"]},
    "trigger_event_id": "evt-0003",
    "occurred_at": "2025-03-01T12:31:00Z",
    "emitted_at": "2025-03-01T12:31:00.020Z",
}

SEGMENT_LINEAGE = {
    "schema": "segment_lineage/v1",
    "event_id": "sl-91bc",
    "kind": "split",
    "segment": {"id": 7, "name": "Email clickers, big baskets"},
    "parents": [{"id": 2, "name": "Email readers, email"}],
    "successor": None,
    "previous_name": None,
    "share": 0.04,
    "model_version": 6,
    "occurred_at": "2025-03-08T00:00:00Z",
    "emitted_at": "2025-03-08T00:00:00.020Z",
}

PERSONA_CARD = {
    "segment_id": 5,
    "name": "Mobile-first bargain hunters",
    "size": 1234,
    "model_version": 3,
    "centroid": {"channel_mobile_share": 0.85, "discount_share": 0.55, "age": 29.5},
    "distinguishing": [
        {"feature": "channel_mobile_share", "value": 0.85, "population_value": 0.4},
        {"feature": "discount_share", "value": 0.55, "population_value": 0.1},
    ],
    "kpis": {
        "conversion_rate": 0.12,
        "revenue_per_profile": 48.3,
        "engagement_rate": 0.66,
        "retention_rate": 0.4,
    },
}

PROFILE_SNAPSHOT = {
    "profile_id": "prof-1",
    "identifiers": {
        "anonymous_id": ["anon-42", "anon-43"],
        "device_id": ["idfa-7f3c"],
        "user_id": ["u-1001"],
        "email": ["ana@example.com"],
    },
    "segment": {"id": 5, "name": "Mobile-first bargain hunters"},
    "event_count": 17,
    "first_seen": "2025-02-01T08:00:00Z",
    "last_seen": "2025-03-01T12:31:00Z",
    "features": {"purchase_count_decayed": 1.7, "recency_days": 0.0},
}

DEAD_LETTER_FILE = {
    "schema": "dead_letter/v1",
    "error": "missing_field",
    "detail": "required field 'identity' is missing",
    "raw": '{"event_id": "e", "type": "page_view"}',
}
DEAD_LETTER_KAFKA = {
    "schema": "dead_letter/v1",
    "error": "not_utf8",
    "detail": "message value is not valid UTF-8",
    "raw_base64": "/+7dzA==",
    "topic": "touchpoints",
    "partition": 3,
    "offset": 1042,
}

RUN_SUMMARY = {
    "events_read": 1000,
    "events_valid": 990,
    "events_invalid": 6,
    "events_duplicate": 4,
    "profiles": 120,
    "segment_changes": 240,
    "identity_merges": 15,
    "segments": 8,
    "seconds": 0.84,
    "events_per_second": 1190.5,
}

AUDIENCE_TRACK = {
    "type": "track", "event": "Audience Entered", "userId": "u-1",
    "messageId": "3f2a:entered", "timestamp": "2025-03-01T12:30:00Z",
    "properties": {"audience_key": "deal_hunters", "deal_hunters": True,
                   "audience_name": "Deal Hunters", "segment_id": 1},
    "context": {"library": {"name": "persona-stream"}, "traits": {"email": "a@example.com"}},
}
AUDIENCE_IDENTIFY = {
    "type": "identify", "anonymousId": "p-1", "messageId": "3f2a:identify",
    "timestamp": "2025-03-01T12:30:00Z", "traits": {"deal_hunters": True, "vip": False},
    "context": {"library": {"name": "persona-stream"}},
}

H1, H2 = "a" * 64, "0123456789abcdef" * 4
FORGET = {
    "schema": "forget/v1", "event_id": "9c1d", "profile_id": "p_1f2e",
    "previous_segment": {"id": 2, "name": "Deal hunters"},
    "identifiers": {"email": [H1], "user_id": [H2]}, "request_id": "r-1",
    "reason": "GDPR article 17", "requested_at": "2026-03-01T12:00:00Z",
    "emitted_at": "2026-03-01T12:00:01.250Z",
}
FORGET_REQUEST = {
    "schema": "forget_request/v1", "request_id": "r-1", "identifier_hashes": [H1, H2],
    "requested_at": "2026-03-01T12:00:00Z", "reason": "",
}

BASES = {
    "touchpoint": TOUCHPOINT_MIN,
    "segment_change": SEGMENT_CHANGE,
    "identity_merge": IDENTITY_MERGE,
    "segment_lineage": SEGMENT_LINEAGE,
    "persona_card": PERSONA_CARD,
    "profile_snapshot": PROFILE_SNAPSHOT,
    "dead_letter": DEAD_LETTER_FILE,
    "run_summary": RUN_SUMMARY,
    "audience_call": AUDIENCE_TRACK,
    "forget": FORGET,
    "forget_request": FORGET_REQUEST,
}

# --------------------------------------------------------------------------- valid

VALID: list[Any] = [
    pytest.param("touchpoint", TOUCHPOINT_MIN, id="touchpoint-minimal"),
    pytest.param("touchpoint", TOUCHPOINT_FULL, id="touchpoint-every-known-field"),
    pytest.param(
        "touchpoint",
        mutate(TOUCHPOINT_MIN, {
            "x_vendor_field": {"anything": [1, 2]},
            "device": {"type": "other", "screen": "1080x2400"},
            "context": {"geo": {"country": "DE", "lat": 52.5},
                        "campaign": {"source": "x", "term": "shoes"}, "locale": "de-DE"},
            "traits": {"loyalty_tier": "gold", "interests": []},
            "properties": {"nested": {"deep": None}},
        }),
        id="touchpoint-unknown-fields-kept",
    ),
    pytest.param(
        "touchpoint",
        mutate(TOUCHPOINT_MIN, {"type": "identify", "identity": {"email": "a@b.c"},
                                "traits": {"age": 41.5, "newsletter_opt_in": False}}),
        id="touchpoint-identify-with-traits",
    ),
    pytest.param("touchpoint", mutate(TOUCHPOINT_MIN, {"type": "custom.app:v2-open_x"}),
                 id="touchpoint-custom-type"),
    pytest.param("touchpoint", mutate(TOUCHPOINT_MIN, {"type": "x" * 64}),
                 id="touchpoint-type-64-chars"),
    pytest.param("touchpoint", mutate(TOUCHPOINT_MIN, {"event_id": "e" * 128}),
                 id="touchpoint-event_id-128-chars"),
    pytest.param("touchpoint", mutate(TOUCHPOINT_MIN, {"identity": {"crm_id": "c" * 256}}),
                 id="touchpoint-identifier-256-chars"),
    pytest.param("touchpoint",
                 mutate(TOUCHPOINT_MIN, {"occurred_at": "2024-02-29T23:59:59.123456-05:30"}),
                 id="touchpoint-negative-offset-microseconds"),
    pytest.param("touchpoint", mutate(TOUCHPOINT_MIN, {"channel": "call_center"}),
                 id="touchpoint-channel-call_center"),
    pytest.param("segment_change", SEGMENT_CHANGE, id="segment_change-change"),
    pytest.param("segment_change",
                 mutate(SEGMENT_CHANGE, {"previous_segment": None, "score": 0, "explanation": [],
                                         "identifiers": {}}),
                 id="segment_change-first-assignment"),
    pytest.param("segment_change",
                 mutate(SEGMENT_CHANGE, {"reason": "merge", "score": 1,
                                         "explanation": [EXPLANATION_ITEM] * 5}),
                 id="segment_change-merge-five-explanations"),
    pytest.param("segment_change",
                 mutate(SEGMENT_CHANGE, {"reason": "model_update", "trigger_event_id": None}),
                 id="segment_change-model_update"),
    pytest.param("segment_change",
                 mutate(SEGMENT_CHANGE, {"reason": "model_update", "trigger_event_id": None,
                                         "occurred_at": None}),
                 id="segment_change-model_update-no-event-time"),
    pytest.param("segment_change",
                 mutate(SEGMENT_CHANGE, {"reason": "forget", "segment": None, "explanation": [],
                                         "score": 0}),
                 id="segment_change-forget"),
    pytest.param("segment_change",
                 mutate(SEGMENT_CHANGE, {"partition": 2, "segment": {"id": 0, "name": "A",
                                                                     "size": 9}}),
                 id="segment_change-extensions"),
    pytest.param("forget", FORGET, id="forget-in-a-segment"),
    pytest.param("forget", mutate(FORGET, {"previous_segment": None, "identifiers": {}}),
                 id="forget-never-segmented"),
    pytest.param("forget_request", FORGET_REQUEST, id="forget_request-two"),
    pytest.param("identity_merge", IDENTITY_MERGE, id="identity_merge-one"),
    pytest.param("segment_lineage", SEGMENT_LINEAGE, id="segment_lineage-split"),
    pytest.param("segment_lineage", mutate(SEGMENT_LINEAGE, {
        "kind": "merge", "parents": [], "share": None,
        "successor": {"id": 2, "name": "Email readers, email"}}), id="segment_lineage-merge"),
    pytest.param("identity_merge",
                 mutate(IDENTITY_MERGE, {"merged_profile_ids": ["prof-9", "prof-12"],
                                         "refused": False}),
                 id="identity_merge-several-with-extension"),
    pytest.param("persona_card", PERSONA_CARD, id="persona_card-full"),
    pytest.param("persona_card",
                 mutate(PERSONA_CARD, {"size": 0, "centroid": {}, "distinguishing": [],
                                       "description": "extension text",
                                       "kpis": {"conversion_rate": 0, "revenue_per_profile": 0,
                                                "engagement_rate": 1, "retention_rate": 1}}),
                 id="persona_card-empty-segment-boundary-kpis"),
    pytest.param("profile_snapshot", PROFILE_SNAPSHOT, id="profile_snapshot-full"),
    pytest.param("profile_snapshot",
                 mutate(PROFILE_SNAPSHOT, {"segment": None, "features": {},
                                           "identifiers": {"anonymous_id": ["anon-1"]}}),
                 id="profile_snapshot-unsegmented"),
    pytest.param("dead_letter", DEAD_LETTER_FILE, id="dead_letter-file-input"),
    pytest.param("dead_letter", DEAD_LETTER_KAFKA, id="dead_letter-kafka-base64"),
    pytest.param("dead_letter", mutate(DEAD_LETTER_FILE, {"raw": "", "received_at": "x"}),
                 id="dead_letter-empty-raw-extension"),
    pytest.param("run_summary", RUN_SUMMARY, id="run_summary-full"),
    pytest.param("run_summary",
                 {**dict.fromkeys(RUN_SUMMARY, 0), "config": {"model": "kmeans"}},
                 id="run_summary-zeros-extension"),
    pytest.param("audience_call", AUDIENCE_TRACK, id="audience_call-track"),
    pytest.param("audience_call", AUDIENCE_IDENTIFY, id="audience_call-identify"),
    pytest.param("audience_call", mutate(AUDIENCE_TRACK, {"integrations": {"All": True}}),
                 id="audience_call-segment-spec-extension"),
]

# --------------------------------------------------------------------------- invalid


def bad(schema: str, case: str, keyword: str, doc: Any) -> Any:
    return pytest.param(schema, doc, keyword, id=f"{schema}-{case}")


def missing_field_cases() -> list[Any]:
    return [
        bad(name, f"missing-{field}", "required", mutate(BASES[name], {field: DELETE}))
        for name, fields in CONTRACT_REQUIRED.items()
        for field in sorted(fields)
    ]


TP = TOUCHPOINT_MIN
TPF = TOUCHPOINT_FULL
SC = SEGMENT_CHANGE
IM = IDENTITY_MERGE
PC = PERSONA_CARD
PS = PROFILE_SNAPSHOT
DL = DEAD_LETTER_FILE
DK = DEAD_LETTER_KAFKA
RS = RUN_SUMMARY

INVALID: list[Any] = [
    *missing_field_cases(),
    # audience call
    bad("audience_call", "track-without-event", "required",
        mutate(AUDIENCE_TRACK, {"event": DELETE})),
    bad("audience_call", "identify-without-traits", "required",
        mutate(AUDIENCE_IDENTIFY, {"traits": DELETE})),
    bad("audience_call", "nobody", "anyOf", mutate(AUDIENCE_TRACK, {"userId": DELETE})),
    bad("audience_call", "bad-audience-key", "pattern",
        mutate(AUDIENCE_TRACK, {"properties": {"audience_key": "Deal Hunters"}})),
    # touchpoint
    bad("touchpoint", "not-an-object", "type", [TP]),
    bad("touchpoint", "event_id-empty", "minLength", mutate(TP, {"event_id": ""})),
    bad("touchpoint", "event_id-129-chars", "maxLength", mutate(TP, {"event_id": "e" * 129})),
    bad("touchpoint", "event_id-wrong-type", "type", mutate(TP, {"event_id": 1})),
    bad("touchpoint", "bad-timestamp-no-offset", "pattern",
        mutate(TP, {"occurred_at": "2025-03-01T12:30:00"})),
    bad("touchpoint", "bad-timestamp-date-only", "pattern",
        mutate(TP, {"occurred_at": "2025-03-01"})),
    bad("touchpoint", "bad-timestamp-month-13", "pattern",
        mutate(TP, {"occurred_at": "2025-13-01T12:30:00Z"})),
    bad("touchpoint", "bad-timestamp-hour-24", "pattern",
        mutate(TP, {"occurred_at": "2025-03-01T24:00:00Z"})),
    bad("touchpoint", "bad-timestamp-compact-offset", "pattern",
        mutate(TP, {"occurred_at": "2025-03-01T12:30:00+0100"})),
    bad("touchpoint", "bad-timestamp-words", "pattern", mutate(TP, {"occurred_at": "yesterday"})),
    bad("touchpoint", "bad-timestamp-epoch-number", "type",
        mutate(TP, {"occurred_at": 1740832200})),
    bad("touchpoint", "type-uppercase", "pattern", mutate(TP, {"type": "PageView"})),
    bad("touchpoint", "type-space", "pattern", mutate(TP, {"type": "page view"})),
    bad("touchpoint", "type-empty", "pattern", mutate(TP, {"type": ""})),
    bad("touchpoint", "type-65-chars", "pattern", mutate(TP, {"type": "x" * 65})),
    bad("touchpoint", "type-wrong-type", "type", mutate(TP, {"type": ["page_view"]})),
    bad("touchpoint", "empty-identity", "minProperties", mutate(TP, {"identity": {}})),
    bad("touchpoint", "identity-not-object", "type", mutate(TP, {"identity": "anon-42"})),
    bad("touchpoint", "unknown-identity-member", "additionalProperties",
        mutate(TP, {"identity": {"cookie_id": "c-1"}})),
    bad("touchpoint", "identity-member-empty", "minLength",
        mutate(TP, {"identity.anonymous_id": ""})),
    bad("touchpoint", "identity-member-257-chars", "maxLength",
        mutate(TP, {"identity.anonymous_id": "a" * 257})),
    bad("touchpoint", "identity-member-wrong-type", "type",
        mutate(TP, {"identity.anonymous_id": 42})),
    bad("touchpoint", "identity-member-null", "type",
        mutate(TP, {"identity.anonymous_id": None})),
    bad("touchpoint", "bad-enum-channel", "enum", mutate(TP, {"channel": "tv"})),
    bad("touchpoint", "bad-enum-device-type", "enum", mutate(TPF, {"device.type": "watch"})),
    bad("touchpoint", "device-os-wrong-type", "type", mutate(TPF, {"device.os": 18})),
    bad("touchpoint", "device-not-object", "type", mutate(TP, {"device": "mobile"})),
    bad("touchpoint", "geo-country-lowercase", "pattern",
        mutate(TPF, {"context.geo.country": "fr"})),
    bad("touchpoint", "geo-country-alpha-3", "pattern",
        mutate(TPF, {"context.geo.country": "FRA"})),
    bad("touchpoint", "campaign-not-object", "type",
        mutate(TPF, {"context.campaign": "spring-sale"})),
    bad("touchpoint", "context-page_url-wrong-type", "type",
        mutate(TPF, {"context.page_url": 1})),
    bad("touchpoint", "properties-not-object", "type", mutate(TP, {"properties": [1]})),
    bad("touchpoint", "traits-age-string", "type", mutate(TPF, {"traits.age": "34"})),
    bad("touchpoint", "traits-interests-not-array", "type",
        mutate(TPF, {"traits.interests": "running"})),
    bad("touchpoint", "traits-interests-item-wrong-type", "type",
        mutate(TPF, {"traits.interests": ["running", 3]})),
    bad("touchpoint", "traits-newsletter-not-boolean", "type",
        mutate(TPF, {"traits.newsletter_opt_in": "yes"})),
    bad("touchpoint", "source-wrong-type", "type", mutate(TP, {"source": 7})),
    # segment change
    bad("segment_change", "wrong-schema-const", "const",
        mutate(SC, {"schema": "segment_change/v2"})),
    bad("segment_change", "bad-enum-reason", "enum", mutate(SC, {"reason": "moved"})),
    bad("segment_change", "score-above-1", "maximum", mutate(SC, {"score": 1.01})),
    bad("segment_change", "score-negative", "minimum", mutate(SC, {"score": -0.1})),
    bad("segment_change", "score-wrong-type", "type", mutate(SC, {"score": "0.8"})),
    bad("segment_change", "model_version-negative", "minimum",
        mutate(SC, {"model_version": -1})),
    bad("segment_change", "model_version-not-integer", "type",
        mutate(SC, {"model_version": 1.5})),
    bad("segment_change", "segment-id-negative", "oneOf", mutate(SC, {"segment.id": -1})),
    bad("segment_change", "segment-id-string", "oneOf", mutate(SC, {"segment.id": "5"})),
    bad("segment_change", "segment-missing-name", "oneOf", mutate(SC, {"segment.name": DELETE})),
    bad("segment_change", "previous_segment-missing-id", "oneOf",
        mutate(SC, {"previous_segment.id": DELETE})),
    bad("segment_change", "explanation-6-items", "maxItems",
        mutate(SC, {"explanation": [EXPLANATION_ITEM] * 6})),
    bad("segment_change", "explanation-item-missing-segment_value", "required",
        mutate(SC, {"explanation.0.segment_value": DELETE})),
    bad("segment_change", "explanation-value-wrong-type", "type",
        mutate(SC, {"explanation.1.value": "0.6"})),
    bad("segment_change", "identifiers-values-not-array", "type",
        mutate(SC, {"identifiers.user_id": "u-1001"})),
    bad("segment_change", "identifiers-unknown-type", "enum",
        mutate(SC, {"identifiers.cookie": ["c-1"]})),
    bad("segment_change", "identifiers-duplicate-values", "uniqueItems",
        mutate(SC, {"identifiers.email": ["a@b.c", "a@b.c"]})),
    bad("segment_change", "identifiers-empty-value", "minLength",
        mutate(SC, {"identifiers.email": [""]})),
    bad("segment_change", "null-segment-without-forget", "type", mutate(SC, {"segment": None})),
    bad("segment_change", "forget-with-segment", "type",
        mutate(SC, {"reason": "forget", "explanation": []})),
    bad("segment_change", "forget-with-explanation", "maxItems",
        mutate(SC, {"reason": "forget", "segment": None})),
    bad("segment_change", "model_update-with-trigger", "type",
        mutate(SC, {"reason": "model_update"})),
    bad("segment_change", "trigger-without-event-time", "type",
        mutate(SC, {"occurred_at": None})),
    bad("segment_change", "trigger_event_id-empty", "minLength",
        mutate(SC, {"trigger_event_id": ""})),
    bad("segment_change", "bad-timestamp-occurred_at", "oneOf",
        mutate(SC, {"occurred_at": "2025-03-01T12:30:00"})),
    bad("segment_change", "bad-timestamp-emitted_at", "pattern",
        mutate(SC, {"emitted_at": "01/03/2025 12:30"})),
    bad("segment_change", "emitted_at-null", "type", mutate(SC, {"emitted_at": None})),
    # identity merge
    bad("segment_lineage", "kind-unknown", "enum", mutate(SEGMENT_LINEAGE, {"kind": "move"})),
    bad("segment_lineage", "share-above-one", "maximum", mutate(SEGMENT_LINEAGE, {"share": 1.5})),
    bad("segment_lineage", "segment-without-id", "required",
        mutate(SEGMENT_LINEAGE, {"segment": {"name": "x"}})),
    bad("forget", "raw-identifier", "pattern",
        mutate(FORGET, {"identifiers": {"email": ["jo@mail.com"]}})),
    bad("forget", "unknown-identifier-type", "enum",
        mutate(FORGET, {"identifiers": {"passport": [H1]}})),
    bad("forget_request", "no-hashes", "minItems",
        mutate(FORGET_REQUEST, {"identifier_hashes": []})),
    bad("forget_request", "raw-identifier", "pattern",
        mutate(FORGET_REQUEST, {"identifier_hashes": ["email:jo@mail.com"]})),
    bad("identity_merge", "wrong-schema-const", "const",
        mutate(IM, {"schema": "segment_change/v1"})),
    bad("identity_merge", "merged_profile_ids-empty", "minItems",
        mutate(IM, {"merged_profile_ids": []})),
    bad("identity_merge", "merged_profile_ids-duplicates", "uniqueItems",
        mutate(IM, {"merged_profile_ids": ["prof-9", "prof-9"]})),
    bad("identity_merge", "merged_profile_ids-wrong-item-type", "type",
        mutate(IM, {"merged_profile_ids": [9]})),
    bad("identity_merge", "merged_profile_ids-not-array", "type",
        mutate(IM, {"merged_profile_ids": "prof-9"})),
    bad("identity_merge", "trigger_event_id-null", "type",
        mutate(IM, {"trigger_event_id": None})),
    bad("identity_merge", "profile_id-empty", "minLength", mutate(IM, {"profile_id": ""})),
    bad("identity_merge", "identifiers-unknown-type", "enum",
        mutate(IM, {"identifiers.fingerprint": ["f"]})),
    bad("identity_merge", "bad-timestamp-occurred_at", "pattern",
        mutate(IM, {"occurred_at": "2025-03-01T12:31:00+25:00"})),
    # persona card
    bad("persona_card", "segment_id-negative", "minimum", mutate(PC, {"segment_id": -1})),
    bad("persona_card", "segment_id-string", "type", mutate(PC, {"segment_id": "5"})),
    bad("persona_card", "name-empty", "minLength", mutate(PC, {"name": ""})),
    bad("persona_card", "size-not-integer", "type", mutate(PC, {"size": 3.5})),
    bad("persona_card", "size-negative", "minimum", mutate(PC, {"size": -3})),
    bad("persona_card", "centroid-value-string", "type", mutate(PC, {"centroid.age": "29"})),
    bad("persona_card", "distinguishing-missing-population_value", "required",
        mutate(PC, {"distinguishing.0.population_value": DELETE})),
    bad("persona_card", "distinguishing-not-array", "type", mutate(PC, {"distinguishing": {}})),
    bad("persona_card", "kpis-missing-retention_rate", "required",
        mutate(PC, {"kpis.retention_rate": DELETE})),
    bad("persona_card", "kpis-conversion_rate-above-1", "maximum",
        mutate(PC, {"kpis.conversion_rate": 1.5})),
    bad("persona_card", "kpis-revenue-wrong-type", "type",
        mutate(PC, {"kpis.revenue_per_profile": "48.3"})),
    # profile snapshot
    bad("profile_snapshot", "profile_id-empty", "minLength", mutate(PS, {"profile_id": ""})),
    bad("profile_snapshot", "segment-missing-id", "oneOf", mutate(PS, {"segment.id": DELETE})),
    bad("profile_snapshot", "event_count-negative", "minimum", mutate(PS, {"event_count": -1})),
    bad("profile_snapshot", "event_count-not-integer", "type",
        mutate(PS, {"event_count": "17"})),
    bad("profile_snapshot", "features-value-string", "type",
        mutate(PS, {"features.recency_days": "0"})),
    bad("profile_snapshot", "bad-timestamp-first_seen", "pattern",
        mutate(PS, {"first_seen": "2025-02-01T08:00:00"})),
    bad("profile_snapshot", "identifiers-values-not-array", "type",
        mutate(PS, {"identifiers.email": "ana@example.com"})),
    bad("profile_snapshot", "identifiers-unknown-type", "enum",
        mutate(PS, {"identifiers.cookie": ["c"]})),
    # dead letter
    bad("dead_letter", "wrong-schema-const", "const", mutate(DL, {"schema": "dead_letter/v2"})),
    bad("dead_letter", "neither-raw-nor-raw_base64", "oneOf", mutate(DL, {"raw": DELETE})),
    bad("dead_letter", "both-raw-and-raw_base64", "oneOf", mutate(DL, {"raw_base64": "e30="})),
    bad("dead_letter", "raw-wrong-type", "type", mutate(DL, {"raw": 42})),
    bad("dead_letter", "raw_base64-not-base64", "pattern",
        mutate(DK, {"raw_base64": "not base64!"})),
    bad("dead_letter", "error-code-with-spaces", "pattern",
        mutate(DL, {"error": "Missing field identity"})),
    bad("dead_letter", "error-code-empty", "pattern", mutate(DL, {"error": ""})),
    bad("dead_letter", "detail-wrong-type", "type", mutate(DL, {"detail": None})),
    bad("dead_letter", "topic-without-partition-offset", "dependentRequired",
        mutate(DL, {"topic": "touchpoints"})),
    bad("dead_letter", "kafka-missing-offset", "dependentRequired",
        mutate(DK, {"offset": DELETE})),
    bad("dead_letter", "partition-negative", "minimum", mutate(DK, {"partition": -1})),
    bad("dead_letter", "offset-wrong-type", "type", mutate(DK, {"offset": "1042"})),
    # run summary
    bad("run_summary", "events_read-negative", "minimum", mutate(RS, {"events_read": -1})),
    bad("run_summary", "profiles-not-integer", "type", mutate(RS, {"profiles": 1.5})),
    bad("run_summary", "segments-wrong-type", "type", mutate(RS, {"segments": [1, 2]})),
    bad("run_summary", "seconds-string", "type", mutate(RS, {"seconds": "0.84"})),
    bad("run_summary", "events_per_second-negative", "minimum",
        mutate(RS, {"events_per_second": -1.0})),
]

# --------------------------------------------------------------------------- tests


def test_schema_files_are_exactly_the_contract_set() -> None:
    found = {p.name for p in SCHEMAS_DIR.glob("*.json")}
    assert found == set(SCHEMA_FILES.values())


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema.get("title") and schema.get("description")


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_required_fields_match_contract(name: str) -> None:
    assert set(load(name)["required"]) == CONTRACT_REQUIRED[name]


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_required_fields_are_described(name: str) -> None:
    props = load(name)["properties"]
    assert CONTRACT_REQUIRED[name] <= set(props)


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_contracts_page_names_every_required_field(name: str) -> None:
    """The users' page and the schemas cannot drift apart: each required field is on it."""
    page = (SCHEMAS_DIR.parent / "docs" / "contracts.md").read_text()
    assert {f for f in CONTRACT_REQUIRED[name] if f"`{f}`" not in page} == set()
    assert SCHEMA_FILES[name] in (SCHEMAS_DIR / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(SCHEMA_CONST))
def test_schema_field_is_a_const(name: str) -> None:
    assert load(name)["properties"]["schema"] == {"const": SCHEMA_CONST[name]}


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_extensions_allowed(name: str) -> None:
    # Unknown top-level fields are never an error (input) / allowed (outputs).
    assert load(name).get("additionalProperties", True) is True


def test_identity_members_closed_and_match_identifier_types() -> None:
    identity = load("touchpoint")["properties"]["identity"]
    assert identity["additionalProperties"] is False
    assert identity["minProperties"] == 1
    assert set(identity["properties"]) == IDENTIFIER_TYPES
    for name in ("segment_change", "identity_merge", "profile_snapshot"):
        identifiers = load(name)["$defs"]["identifiers"]
        assert set(identifiers["propertyNames"]["enum"]) == IDENTIFIER_TYPES, name


def test_timestamp_definition_is_shared() -> None:
    defs = {name: load(name)["$defs"]["timestamp"]
            for name in SCHEMA_FILES if "timestamp" in load(name).get("$defs", {})}
    assert set(defs) == {"touchpoint", "segment_change", "identity_merge", "profile_snapshot",
                         "audience_call", "segment_lineage", "forget",
                         "forget_request"}
    assert len({json.dumps(d, sort_keys=True) for d in defs.values()}) == 1


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-01T12:30:00Z",
        "2025-03-01T12:30:00.250+01:00",
        "2024-02-29T23:59:59.123456-05:30",
        "2025-12-31T00:00:00+00:00",
    ],
)
def test_timestamp_pattern_accepts_what_python_parses_with_offset(value: str) -> None:
    pattern = load("touchpoint")["$defs"]["timestamp"]["pattern"]
    assert re.fullmatch(pattern, value)
    assert datetime.fromisoformat(value).tzinfo is not None


def test_readme_lists_every_schema() -> None:
    readme = (SCHEMAS_DIR / "README.md").read_text(encoding="utf-8")
    for fname in SCHEMA_FILES.values():
        assert f"`{fname}`" in readme, fname


@pytest.mark.parametrize(("name", "doc"), VALID)
def test_valid_examples_pass(name: str, doc: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(name).iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize(("name", "doc", "keyword"), INVALID)
def test_invalid_examples_fail_for_the_named_reason(name: str, doc: Any, keyword: str) -> None:
    errors = list(validator(name).iter_errors(doc))
    assert errors, "example was accepted"
    described = [f"{e.validator} at {list(e.absolute_path)}: {e.message}" for e in errors]
    assert {e.validator for e in errors} == {keyword}, described


def test_persona_file_is_an_array_of_cards() -> None:
    # personas.json holds a list; each element validates as one card.
    cards = [PERSONA_CARD, mutate(PERSONA_CARD, {"segment_id": 6, "name": "Loyal B2B buyers"})]
    for card in json.loads(json.dumps(cards)):
        validator("persona_card").validate(card)
