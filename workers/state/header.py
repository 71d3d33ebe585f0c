"""What a state says about itself: its format, the version that wrote it, and the
configuration that shaped it.

A state only continues a computation exactly under the configuration that
produced it, so reading one compares it with the current configuration (Kafka,
metrics, state, admin and audience settings aside: they say where records go or
how they are named, not what they are) and refuses a mismatch in one line,
naming the first setting that differs, instead of silently mixing models. A state
file (:mod:`workers.state.saved`) carries it as its first line; the changelogs
(:mod:`workers.state.changelog`) as a ``header`` record of their meta store.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from workers import __version__
from workers.config import Config
from workers.errors import StateError

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


def check_header(data: bytes, config: Config, where: str, same_version: bool = True) -> None:
    """Refuse a state of another format, version (unless ``same_version`` is False: a
    worker's changelogs outlive upgrades that keep the format) or configuration."""
    try:
        found = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StateError(f"{where}: damaged state header") from None
    if not isinstance(found, dict):
        raise StateError(f"{where}: damaged state header")
    if found.get("format") != FORMAT or (same_version and found.get("version") != __version__):
        raise StateError(
            f"{where} was written by persona-stream {found.get('version')} (state format "
            f"{found.get('format')}); this is {__version__} (format {FORMAT})")
    difference = _first_difference(found.get("config"), fingerprint(config), "")
    if difference is not None:
        raise StateError(f"{where} was made with a different configuration: {difference}")



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
