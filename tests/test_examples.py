"""The subscriber in examples/ acts on what persona-stream sends (no broker: its apply step)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import orjson

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "audience_csv.py"


class Message(NamedTuple):
    value: bytes
    headers: list[tuple[str, bytes]]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audience_csv", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _message(schema: str, record: dict[str, Any]) -> Message:
    return Message(orjson.dumps(record), [("schema", schema.encode())])


def _identify(user: str | None, anonymous: str, email: str, member: bool) -> Message:
    call: dict[str, Any] = {"type": "identify", "anonymousId": anonymous,
                            "traits": {"vip": member, "email": email}}
    if user is not None:
        call["userId"] = user
    return _message("audience_call/v1", call)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_forgotten_person_leaves_every_audience_file_for_good() -> None:
    example = _example()
    state = example.Membership()
    example.apply(state, [_identify("u-1", "p_1", "jo@example.org", True),
                          _identify(None, "p_2", "al@example.org", True),
                          _identify(_sha("u-3"), "p_3", _sha("cy@example.org"), True)])
    forgets = [
        # known by userId (raw in the calls), by the profile id, by an already hashed id
        {"profile_id": "p_9", "identifiers": {"user_id": [_sha("u-1")]}},
        {"profile_id": "p_2", "identifiers": {}},
        {"profile_id": "p_3", "identifiers": {"user_id": [_sha(_sha("u-3"))]}},
    ]
    applied = example.apply(state, [_message("forget/v1", {"schema": "forget/v1", **f})
                                    for f in forgets]
                            + [_message("segment_change/v1", {"profile_id": "p_1"})])
    assert applied == 3  # segment changes are not this subscriber's business
    assert state.members() == {"vip": []}
    # a call about a forgotten person read late (another topic, another order) is ignored
    example.apply(state, [_identify(None, "p_2", "al@example.org", True)])
    assert state.members() == {"vip": []}
