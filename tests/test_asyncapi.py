"""docs/asyncapi.yaml is a valid AsyncAPI 3.0 document and describes exactly the topics
the code creates, as the code creates them.

The AsyncAPI 3.0.0 JSON Schema is the one the AsyncAPI initiative publishes
(npm package @asyncapi/specs 6.11.1, schemas/3.0.0-without-$id.json, Apache-2.0),
kept minified in tests/fixtures/asyncapi so the test needs no network.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from workers.config import Config, load
from workers.io.cloudevents import SCHEMAS, event_type
from workers.io.kafka import TopicSpec, worker_topics

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"
CE_HEADERS = {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type",
              "schema"}


@cache
def document() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return data


@cache
def validator() -> Draft7Validator:
    return Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8")))


def every_feature_on() -> Config:
    """The configuration under which the worker creates every topic it can."""
    config = load(env={})
    return dataclasses.replace(config, audiences=dataclasses.replace(config.audiences,
                                                                       enabled=True))


def resolve(ref: str) -> Any:
    node: Any = document()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def addresses() -> dict[str, str]:
    """Channel id -> topic name, parameters at their defaults."""
    out = {}
    for channel_id, channel in document()["channels"].items():
        address = channel["address"]
        for name, ref in (channel.get("parameters") or {}).items():
            address = address.replace("{" + name + "}", resolve(ref["$ref"])["default"])
        out[channel_id] = address
    return out


def test_the_document_is_valid_asyncapi_3() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in validator().iter_errors(document())]
    assert errors == []


def test_the_schema_check_has_teeth() -> None:
    """A misspelt binding key is refused, so the check above is not vacuous."""
    broken = copy.deepcopy(document())
    broken["channels"]["touchpoints"]["bindings"]["kafka"]["partition"] = 4
    assert not validator().is_valid(broken)


def test_the_topics_are_exactly_the_ones_the_code_provisions() -> None:
    provisioned: dict[str, TopicSpec] = {t.name: t for t in worker_topics(every_feature_on())}
    described = addresses()
    assert sorted(described.values()) == sorted(provisioned)
    for channel_id, topic in described.items():
        spec = provisioned[topic]
        kafka = document()["channels"][channel_id]["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions, topic
        # every topic setting the code gives, and no other: compaction, retention...
        described_settings = {name: ",".join(value) if isinstance(value, list) else str(value)
                              for name, value in kafka.get("topicConfiguration", {}).items()}
        assert described_settings == spec.settings, topic


def test_every_message_names_its_schema_key_and_headers() -> None:
    messages = document()["components"]["messages"]
    referenced = set()
    for name, message in messages.items():
        assert "key" in message["bindings"]["kafka"], name
        payload = message["payload"]
        if "$ref" in payload:
            path = (DOCUMENT.parent / payload["$ref"]).resolve()
            assert path.is_file(), payload["$ref"]
            referenced.add(path.name)
    schemas = {p.name for p in (ROOT / "schemas").glob("*.json")}
    assert referenced == schemas - {"profile_snapshot.v1.schema.json",
                                    "run_summary.v1.schema.json"}  # files, not topics

    headers = document()["components"]["schemas"]["cloudEventsHeaders"]
    assert set(headers["properties"]) == CE_HEADERS
    by_schema = {}
    for message in messages.values():
        if "headers" in message:
            common, own = message["headers"]["allOf"]
            assert common == {"$ref": "#/components/schemas/cloudEventsHeaders"}
            by_schema[own["properties"]["schema"]["const"]] = own["properties"]["ce_type"]["const"]
    assert by_schema == {name: event_type(kind) for kind, name in SCHEMAS.items()}


def test_every_channel_has_an_operation() -> None:
    used = {re.sub(r"^#/channels/", "", op["channel"]["$ref"])
            for op in document()["operations"].values()}
    assert used == set(document()["channels"])


@pytest.mark.parametrize("topic", ["segment_changes_topic", "audiences_topic",
                                   "personas_topic", "dlq_topic"])
def test_the_documented_defaults_are_the_configuration_defaults(topic: str) -> None:
    assert getattr(load(env={}).kafka, topic) in addresses().values()
