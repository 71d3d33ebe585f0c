"""Where output records go when there is no Kafka: the files of docs/contracts.md section 2."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import orjson

from workers.core.pipeline import Pipeline
from workers.core.records import IdentityMerge, Output, SegmentChange

FILES = {
    "segment_change": "segment_changes.jsonl",
    "identity_merge": "identity_merges.jsonl",
    "dead_letter": "dead_letters.jsonl",
}


def wall_clock() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def stamp_emitted(outputs: Iterable[Output], clock: Callable[[], str]) -> None:
    """Set ``emitted_at`` (one reading of the clock per batch; dead letters have none)."""
    stamp = None
    for out in outputs:
        if out.kind != "dead_letter":
            if stamp is None:
                stamp = clock()
            cast(SegmentChange | IdentityMerge, out.record)["emitted_at"] = stamp


class FileSink:
    """Streams records to JSON-lines files; the end state is written by :meth:`close`."""

    def __init__(self, out_dir: str | Path, clock: Callable[[], str] = wall_clock) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._files: dict[str, IO[bytes]] = {
            kind: open(self.dir / name, "wb")  # noqa: SIM115 - closed in close()
            for kind, name in FILES.items()}

    def write(self, outputs: list[Output]) -> None:
        files = self._files
        stamp_emitted(outputs, self.clock)
        for out in outputs:
            files[out.kind].write(orjson.dumps(out.record) + b"\n")

    def close(self, pipeline: Pipeline, summary: dict[str, Any]) -> None:
        for handle in self._files.values():
            handle.close()
        with open(self.dir / "profiles.jsonl", "wb") as handle:
            for pid in sorted(pipeline.profiles):
                handle.write(orjson.dumps(pipeline.profile_snapshot(pid)) + b"\n")
        (self.dir / "personas.json").write_bytes(
            orjson.dumps(pipeline.personas(), option=orjson.OPT_INDENT_2) + b"\n")
        (self.dir / "summary.json").write_bytes(
            orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
