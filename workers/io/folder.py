"""An output folder as ``run`` and ``replay --out`` leave it, and reading it back.

Besides one file per output kind (``OUTPUT_KINDS`` in :mod:`workers.core.records`),
the folder holds the end state in the three files named here. ``personas
--from``, ``profile --from`` and ``replay --personas-from`` read them; a file
that is missing or not what run wrote is one :class:`InputError` line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson

from workers.core.identity import lookup_keys
from workers.core.records import PersonaCard, ProfileSnapshot
from workers.errors import InputError

PROFILES = "profiles.jsonl"  # one profile snapshot per line, in profile-id order
PERSONAS = "personas.json"  # the persona cards
SUMMARY = "summary.json"  # the pipeline's counters and the timing of the pass


def read_personas(out_dir: str | Path) -> list[PersonaCard]:
    path = Path(out_dir) / PERSONAS
    try:
        cards = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        cards = None
    if not isinstance(cards, list) or not all(isinstance(c, dict) for c in cards):
        raise InputError(f"{path} is not a personas.json written by run or replay")
    return cards


def read_profiles(out_dir: str | Path) -> Iterator[ProfileSnapshot]:
    """The snapshots of ``profiles.jsonl``, streamed: the file can be large."""
    path = Path(out_dir) / PROFILES
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, also when left early
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for n, line in enumerate(handle, 1):
            try:
                snapshot = orjson.loads(line)
            except orjson.JSONDecodeError:
                snapshot = None
            if not (isinstance(snapshot, dict) and isinstance(snapshot.get("profile_id"), str)
                    and isinstance(snapshot.get("identifiers"), dict)):
                raise InputError(f"{path} line {n} is not a profile written by run or replay")
            yield cast(ProfileSnapshot, snapshot)


def find_profile(out_dir: str | Path, key: str) -> ProfileSnapshot | None:
    """The first profile, in profile-id order, whose id is ``key`` or that holds the
    identifier ``key`` names (see :func:`~workers.core.identity.lookup_keys`)."""
    for snapshot in read_profiles(out_dir):
        ids = snapshot["identifiers"]
        if snapshot["profile_id"] == key or any(
                value in ids.get(id_type, ()) for id_type, value in lookup_keys(key, ids)):
            return snapshot
    return None
