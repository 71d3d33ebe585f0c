#!/usr/bin/env python3
"""Audience membership from persona-stream's topics, as the CSV files an ESP bulk upload takes.

A small subscriber, meant to be copied and changed. It follows the audiences
topic (``audiences.enabled``: Segment-spec calls; each identify call says, with
one boolean trait per audience key, which audience the person is in now) and
the identity-merges topic (profiles found to be one person: an absorbed
anonymous profile leaves its audiences), and the ``forget/v1`` records on the
segment-changes topic (a person forgotten under GDPR article 17 leaves every
list for good), and writes one CSV per audience,
``<audience key>.csv`` with the columns ``email,user_id,anonymous_id``, into
``--out``: what Braze, Iterable, MoEngage, Mailchimp and the like import as a
list. An emptied audience keeps an empty file, so an upload empties the list.

A person is their ``userId``, else the profile id persona-stream sends as
``anonymousId``. Records are routed on the ``schema`` header persona-stream
puts on every record. The audience keys are persona-stream's own, stable
across segment renames, so the files keep their names.

Membership is kept in ``--out/membership.json``; the consumer group's offsets
are committed only after the files and that state are written, so a crash
replays records, and replaying a record changes nothing (at-least-once,
idempotent). Without ``--follow`` it stops once the topics have been quiet for
``--idle-seconds`` (a job before the nightly upload); with it, it rewrites the
files after each quiet spell.

    python examples/audience_csv.py --bootstrap kafka:9092 --out audiences/
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ("email", "user_id", "anonymous_id")
STATE = "membership.json"


@dataclass
class Membership:
    """Which audience each person is in, with the identifiers an ESP matches on."""

    audience_of: dict[str, str] = field(default_factory=dict)  # person -> audience key
    row_of: dict[str, dict[str, str]] = field(default_factory=dict)  # person -> columns
    audiences: set[str] = field(default_factory=set)  # every audience key seen
    # absorbed profile ids never come back, and the two topics are not read in one
    # order: a call about one, read after its merge, must not bring it back
    gone: set[str] = field(default_factory=set)

    def identify(self, call: dict[str, Any]) -> None:
        """An identify call: its boolean traits are the person's whole membership."""
        person = call.get("userId") or call["anonymousId"]
        if person in self.gone:
            return
        traits = {k: v for k, v in call["traits"].items() if isinstance(v, bool)}
        self.audiences.update(traits)
        now = [key for key, member in traits.items() if member]
        self.audience_of.pop(person, None)
        if now:
            self.audience_of[person] = now[0]
        email = call["traits"].get("email", "")
        self.row_of[person] = {"email": email, "user_id": call.get("userId", ""),
                               "anonymous_id": call.get("anonymousId", "")}

    def merge(self, record: dict[str, Any]) -> None:
        """An identity merge: absorbed profiles known by their profile id (anonymous ones)
        are gone; the survivor's own calls say where the person is now."""
        for pid in record["merged_profile_ids"]:
            if pid != record["profile_id"]:
                self.gone.add(pid)
                self.audience_of.pop(pid, None)
                self.row_of.pop(pid, None)

    def forget(self, record: dict[str, Any]) -> None:
        """A person forgotten: known by the profile id, or by an identifier whose SHA-256
        the record lists (an identifier already hashed by ``output.hash_identifiers`` is
        listed as is, or hashed once more: both are tried)."""
        hashes = {h for values in record["identifiers"].values() for h in values}
        for person, row in list(self.row_of.items()):
            ids = [person, row["user_id"], row["email"]]
            if person == record["profile_id"] or any(
                    value and (value in hashes or _sha256(value) in hashes) for value in ids):
                self.gone.add(person)
                self.audience_of.pop(person, None)
                del self.row_of[person]
        self.gone.add(record["profile_id"])

    def members(self) -> dict[str, list[dict[str, str]]]:
        """Audience key -> its members' rows, in person order; every audience seen."""
        out: dict[str, list[dict[str, str]]] = {key: [] for key in sorted(self.audiences)}
        for person in sorted(self.audience_of):
            out[self.audience_of[person]].append(self.row_of[person])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"audience_of": self.audience_of, "row_of": self.row_of,
                "audiences": sorted(self.audiences), "gone": sorted(self.gone)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Membership:
        return cls(dict(data["audience_of"]), dict(data["row_of"]), set(data["audiences"]),
                   set(data["gone"]))


def apply(state: Membership, messages: Iterable[Any]) -> int:
    """Apply consumed messages by their ``schema`` header; returns how many counted."""
    applied = 0
    for message in messages:
        schema = dict(message.headers or []).get("schema", b"").decode()
        if message.value is None:
            continue
        if schema == "audience_call/v1":
            call = json.loads(message.value)
            if call["type"] != "identify":
                continue  # the track calls say the same, one audience at a time
            state.identify(call)
        elif schema == "identity_merge/v1":
            state.merge(json.loads(message.value))
        elif schema == "forget/v1":
            state.forget(json.loads(message.value))
        else:
            continue
        applied += 1
    return applied


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def write(state: Membership, out: Path) -> None:
    """Each audience's CSV, then the state; each file replaced whole (write, then rename)."""
    for key, rows in state.members().items():
        _replace(out / f"{key}.csv", lambda handle, rows=rows: _csv(handle, rows))
    _replace(out / STATE, lambda handle: json.dump(state.to_json(), handle))


def _csv(handle: Any, rows: list[dict[str, str]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _replace(path: Path, fill: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        fill(handle)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--audiences-topic", default="audiences")
    parser.add_argument("--merges-topic", default="identity-merges")
    parser.add_argument("--changes-topic", default="segment-changes",
                        help="where forget/v1 records come (segment changes are skipped)")
    parser.add_argument("--group", default="audience-csv", help="consumer group")
    parser.add_argument("--out", required=True, help="folder of the CSV files and the state")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--follow", action="store_true", help="keep running")
    args = parser.parse_args(argv)

    from kafka import KafkaConsumer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / STATE
    state = (Membership.from_json(json.loads(saved.read_text())) if saved.exists()
             else Membership())
    consumer = KafkaConsumer(args.audiences_topic, args.merges_topic, args.changes_topic,
                             bootstrap_servers=args.bootstrap, group_id=args.group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        while True:
            applied, quiet_ms = 0, 0
            while quiet_ms < args.idle_seconds * 1000:
                batches = consumer.poll(timeout_ms=500)
                got = [m for records in batches.values() for m in records]
                if consumer.assignment():  # quiet counts once the group gave us partitions
                    quiet_ms = 0 if got else quiet_ms + 500
                applied += apply(state, got)
            write(state, out)
            consumer.commit()  # only once the files hold what was read
            print(f"audience-csv: {applied} records applied;"
                  f" {len(state.audience_of)} people in {len(state.audiences)} audiences",
                  file=sys.stderr)
            if not args.follow:
                return 0
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
