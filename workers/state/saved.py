"""Saved pipeline state: where a replay ends, the next replay or a worker can begin.

The file is one header line (magic, format version, package version and the
configuration the state was made with), then a pickle of the whole
:class:`~workers.core.pipeline.Pipeline`. A state only continues a computation
exactly under the configuration that produced it, so loading compares it with
the current one (Kafka and metrics settings aside: they say where records go,
not what they are) and refuses a mismatch instead of silently mixing models.

Pickle runs code while loading: load only state files you wrote yourself.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from pathlib import Path
from typing import Any

import orjson

from workers import __version__
from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.errors import StateError
from workers.state.store import open_store

MAGIC = b"persona-stream-state"
# bump when the header or the pickled layout changes incompatibly; 3: the modules moved
# into subpackages (class paths inside the pickle changed); 4: the pipeline keeps its
# segments' audience keys
FORMAT = 4
# where records go and where profiles are kept, not what they are; and which audience
# keys a marketer chose (they rename audiences, and change no segment)
_IGNORED_SECTIONS = ("kafka", "metrics", "state", "audiences")


def _fingerprint(config: Config) -> dict[str, Any]:
    """The settings that shape the state, in JSON form (so it round-trips through the header)."""
    settings = dataclasses.asdict(config)
    for section in _IGNORED_SECTIONS:
        settings.pop(section, None)
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(settings))
    return loaded


def dump_state(pipeline: Pipeline) -> bytes:
    """The state as bytes: the header line, then the pickle (files and Kafka checkpoints)."""
    header = orjson.dumps({"format": FORMAT, "version": __version__,
                           "config": _fingerprint(pipeline.config)})
    return MAGIC + b" " + header + b"\n" + pickle.dumps(pipeline,
                                                        protocol=pickle.HIGHEST_PROTOCOL)


def save_state(pipeline: Pipeline, path: str | Path) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a state behind."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_bytes(dump_state(pipeline))
        os.replace(tmp, target)
    except OSError as exc:
        raise StateError(f"cannot write state {path}: {exc.strerror}") from None


def load_state(path: str | Path, config: Config) -> Pipeline:
    """The pipeline saved in ``path``, checked against ``config`` and set to use it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read state {path}: {exc.strerror}") from None
    return restore_state(data, config, str(path))


def restore_state(data: bytes, config: Config, where: str) -> Pipeline:
    """A pipeline from :func:`dump_state` bytes; ``where`` names the source in errors."""
    path = where
    with io.BytesIO(data) as handle:
        first = handle.readline()
        magic, _, header_bytes = first.partition(b" ")
        if magic != MAGIC:
            raise StateError(f"{path} is not a persona-stream state file")
        try:
            header = orjson.loads(header_bytes)
        except orjson.JSONDecodeError:
            raise StateError(f"{path}: damaged state header") from None
        if header.get("format") != FORMAT or header.get("version") != __version__:
            raise StateError(
                f"{path} was written by persona-stream {header.get('version')} (state format "
                f"{header.get('format')}); this is {__version__} (format {FORMAT})")
        difference = _first_difference(header.get("config"), _fingerprint(config), "")
        if difference is not None:
            raise StateError(f"{path} was made with a different configuration: {difference}")
        try:
            pipeline = pickle.load(handle)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
                ValueError) as exc:
            raise StateError(f"{path}: damaged state ({type(exc).__name__})") from None
    if not isinstance(pipeline, Pipeline):
        raise StateError(f"{path} does not hold a pipeline state")
    pipeline.config = config  # equal where it matters; current kafka/metrics settings win
    if config.state.store != "memory":  # a pickled store comes back in memory
        pipeline.profiles = open_store(config.state, pipeline.profiles.dump())
    return pipeline


def _first_difference(saved: Any, current: Any, where: str) -> str | None:
    """The first setting that differs, as ``key.path: saved != current``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            found = _first_difference(saved.get(key), current.get(key), f"{where}{key}.")
            if found is not None:
                return found
        return None
    if saved != current:
        return f"{where.rstrip('.') or 'config'}: {saved!r} in the state, {current!r} now"
    return None
