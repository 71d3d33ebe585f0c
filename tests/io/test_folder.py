"""Reading an output folder back: personas, profiles by key, and one line when it is broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from workers.core.pipeline import Pipeline
from workers.core.records import output_kinds
from workers.io.drive import drive
from workers.io.folder import PERSONAS, PROFILES, find_profile, read_personas
from workers.io.sinks import FileSink
from workers.io.sources import FileSource
from workers.simulation.generator import simulate
from workers.testing import small_stream_config


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pipeline]:
    """An output folder and the pipeline that wrote it."""
    lines, _, _ = simulate(300, seed=8, days=3)
    tmp = tmp_path_factory.mktemp("folder")
    (tmp / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    pipeline = Pipeline(small_stream_config())
    drive(pipeline, FileSource([str(tmp / "in.jsonl")]),
          FileSink(tmp / "out", output_kinds(pipeline.config)))
    return tmp / "out", pipeline


def test_profile_from_a_folder_finds_what_the_worker_finds(
        written: tuple[Path, Pipeline]) -> None:
    """``profile --from DIR`` and the worker's ``/profile`` read a key the same way."""
    out, pipeline = written
    keys = ["nobody@nowhere", "email:nobody@nowhere", "phone:"]
    for snapshot in list(pipeline.profile_snapshots())[::25]:
        keys.append(snapshot["profile_id"])
        for id_type, values in snapshot["identifiers"].items():
            keys += [values[0], f"{id_type}:{values[0]}"]
    found = {key: find_profile(out, key) for key in keys}
    assert {key: None if snapshot is None else snapshot["profile_id"]
            for key, snapshot in found.items()} == {key: pipeline.lookup(key) for key in keys}
    assert sum(snapshot is None for snapshot in found.values()) == 3 < len(keys)


def test_personas_read_back_as_written(written: tuple[Path, Pipeline]) -> None:
    out, pipeline = written
    assert read_personas(out) == orjson.loads(orjson.dumps(pipeline.personas())) != []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("name", "content"), [
    (PERSONAS, None), (PERSONAS, b'[{"segment_id": 1, "na'), (PERSONAS, b'{"a": 1}'),
    (PROFILES, None), (PROFILES, b'{"profile_id": "p_1", "identifiers": {}}\n{"prof'),
    (PROFILES, b"[1, 2]\n")])
def test_a_missing_or_broken_file_is_one_line(tmp_path: Path, name: str,
                                              content: bytes | None) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    command = ["personas"] if name == PERSONAS else ["profile", "p_2"]
    done = _cli(*command, "--from", str(tmp_path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / name) in lines[0], done.stderr
