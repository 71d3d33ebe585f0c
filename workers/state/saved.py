"""Saved pipeline state: where a replay ends, the next replay or a worker can begin.

The file is one header line (magic, format version, package version and the
configuration the state was made with), then the state's records
(:mod:`workers.state.changelog`: the same records a worker's changelog topics
hold) as a msgpack stream of ``[store, key, value]``, then a trailer
``[null, count, sha256]`` over the records' bytes, so a cut or altered file is
refused rather than half loaded. Values are :mod:`workers.state.codec` bytes:
reading a state file never runs code from it.

A state only continues a computation exactly under the configuration that
produced it, so loading compares it with the current one (Kafka and metrics
settings aside: they say where records go, not what they are) and refuses a
mismatch instead of silently mixing models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson

from workers import __version__
from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.errors import StateError
from workers.state.changelog import STORES, StateRecord, everything, rebuild

MAGIC = b"persona-stream-state"
# bump when the header or the records change incompatibly; 4: records in msgpack, no
# pickle; 5: the meta record holds the segments' audience keys; 6: the segment registry,
# reference space and window in the model, session spans in the profiles; 7: the forget list;
# 8: the recent set in the profiles
FORMAT = 8
# where records go and where profiles are kept, not what they are; the admin listener;
# and which audience keys a marketer chose (they rename audiences, and change no segment)
_IGNORED_SECTIONS = ("kafka", "metrics", "state", "admin", "audiences")


def fingerprint(config: Config) -> dict[str, Any]:
    """The settings that shape the state, in JSON form (so it round-trips through the header)."""
    settings = dataclasses.asdict(config)
    for section in _IGNORED_SECTIONS:
        settings.pop(section, None)
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(settings))
    return loaded


def header(config: Config) -> bytes:
    """What a state says about itself: format, version and the configuration's fingerprint."""
    return orjson.dumps({"format": FORMAT, "version": __version__,
                         "config": fingerprint(config)})


def check_header(data: bytes, config: Config, where: str) -> None:
    """Refuse a state of another format, version or configuration, saying which."""
    try:
        found = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StateError(f"{where}: damaged state header") from None
    if not isinstance(found, dict):
        raise StateError(f"{where}: damaged state header")
    if found.get("format") != FORMAT or found.get("version") != __version__:
        raise StateError(
            f"{where} was written by persona-stream {found.get('version')} (state format "
            f"{found.get('format')}); this is {__version__} (format {FORMAT})")
    difference = _first_difference(found.get("config"), fingerprint(config), "")
    if difference is not None:
        raise StateError(f"{where} was made with a different configuration: {difference}")


def dump_state(pipeline: Pipeline) -> bytes:
    """The state as bytes: the header line, the records, the trailer."""
    digest = hashlib.sha256()
    parts = [MAGIC, b" ", header(pipeline.config), b"\n"]
    count = 0
    for record in everything(pipeline):
        packed = msgpack.packb(list(record), use_bin_type=True)
        digest.update(packed)
        parts.append(packed)
        count += 1
    parts.append(msgpack.packb([None, count, digest.hexdigest()], use_bin_type=True))
    return b"".join(parts)


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
    first, _, body = data.partition(b"\n")
    magic, _, header_bytes = first.partition(b" ")
    if magic != MAGIC:
        raise StateError(f"{where} is not a persona-stream state file")
    check_header(header_bytes, config, where)
    return rebuild(config, _records(body, where), where)


def _records(body: bytes, where: str) -> Iterator[StateRecord]:
    """The records of a state file's body, checked against its trailer."""
    unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=len(body) + 1)
    unpacker.feed(body)
    digest = hashlib.sha256()
    count = 0
    try:
        for item in unpacker:
            if not isinstance(item, list) or len(item) != 3:
                break
            if item[0] is None:  # the trailer
                if item[1] != count or item[2] != digest.hexdigest():
                    break
                return
            store, key, value = item
            if store not in STORES or not isinstance(key, bytes) or not (
                    value is None or isinstance(value, bytes)):
                break
            digest.update(msgpack.packb(item, use_bin_type=True))
            count += 1
            yield StateRecord(store, key, value)
    except (ValueError, msgpack.UnpackException):
        pass
    raise StateError(f"{where}: damaged or cut state file (its records do not match"
                     " their trailer)")


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
