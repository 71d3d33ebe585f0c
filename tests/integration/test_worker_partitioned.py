"""``kafka.topology: partitioned`` on the real local broker: profile partitions spread
over 1, 2 and 3 worker processes give the same results, and the groups of one process."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.simulation.generator import simulate
from workers.testing import (
    Record,
    WorkerProcess,
    identity_key,
    pipeline_over,
    produce,
    topic_records,
    wait_for,
    worker_config,
    worker_processes,
)

pytestmark = pytest.mark.integration

# every event waits in the event-time buffer until the input is all read, so the identity
# stage decides in event-time order however the routers interleave their partitions
WHOLE_STREAM = 30 * 86400.0


def _finished(group: list[WorkerProcess]) -> bool:
    statuses = [w.status() for w in group]
    if not all(statuses):
        return False
    owner = [s for s in statuses if s and s["owner"]]
    held = sorted(p for s in statuses if s for p in s["task_partitions"])
    return (len(owner) == 1 and bool(owner[0]["caught_up"]) and held == list(range(6))
            and all(s and s["tasks_caught_up"] for s in statuses if s["task_partitions"])
            and any(s and s["trainer"] for s in statuses))


def _settled(group: list[WorkerProcess]) -> bool:
    """Finished twice in a row, two seconds apart (the tasks may still wait for a version)."""
    if not _finished(group):
        return False
    time.sleep(2)
    return _finished(group)


def _profiles(group: list[WorkerProcess]) -> dict[str, tuple[Any, int, Any]]:
    found: dict[str, tuple[Any, int, Any]] = {}
    for worker in group:
        status, body = worker.admin_get("/profiles")
        assert status == 200
        for p in map(orjson.loads, body.splitlines()):
            assert p["profile_id"] not in found, "a profile held by two workers"
            ids = {t: sorted(v) for t, v in p["identifiers"].items()}
            found[p["profile_id"]] = (ids, p["event_count"], p["segment"])
    return found


def _run(workers: int, lines: list[bytes], tmp_path: Path, bootstrap: str,
         unique_name: Callable[[str], str]) -> tuple[dict[str, Any], set[str]]:
    directory = tmp_path / f"workers-{workers}"
    directory.mkdir()
    config, settings = worker_config(directory, unique_name, bootstrap=bootstrap,
                                     partitions=6, topology="partitioned",
                                     commit_interval_seconds=1)
    with worker_processes(config, workers, directory) as group:
        wait_for(lambda: sum(len((w.status() or {}).get("input_partitions") or ())
                             for w in group) == 6, 90, "the routers to share the input")
        produce(settings["kafka"]["input_topic"],
                [Record(line, identity_key(line)) for line in lines], bootstrap)
        wait_for(lambda: _settled(group), 240, "every partition to apply every record")
        profiles = _profiles(group)
    changes = topic_records(settings["kafka"]["segment_changes_topic"], bootstrap)
    return profiles, {r["event_id"] for r in changes}


def test_one_two_and_three_workers_give_the_same_results(
        kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    window = {"PERSONA_STREAM_INTAKE__REORDER_WINDOW_SECONDS": str(WHOLE_STREAM),
              "PERSONA_STREAM_INTAKE__DEDUP_WINDOW_SECONDS": str(WHOLE_STREAM)}
    for name, value in window.items():
        monkeypatch.setenv(name, value)
    lines, _, _ = simulate(300, seed=31, days=2)
    results = {n: _run(n, lines, tmp_path, kafka_bootstrap, unique_name) for n in (1, 2, 3)}
    profiles, changes = results[1]
    assert changes and any(segment for _, _, segment in profiles.values())
    for n in (2, 3):
        assert results[n][0] == profiles, f"{n} workers: other profiles than one"
        assert results[n][1] == changes, f"{n} workers: other segment changes than one"
    # the identifier groups and event counts of one process over the same input
    config = load(env=window)
    pipeline = pipeline_over(lines, config)
    want = {pid: ({t: sorted(v) for t, v in pipeline.graph.identifiers(pid).items()},
                  state.event_count) for pid, state in pipeline.profiles.items()}
    assert {pid: (ids, count) for pid, (ids, count, _) in profiles.items()} == want
