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

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import msgpack

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.errors import StateError
from workers.state.changelog import STORES, StateRecord, everything, rebuild
from workers.state.header import check_header, header

MAGIC = b"persona-stream-state"
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
