"""The records the partitioned stages send each other (README "Scaling and recovery").

Identity stage -> a profile partition (in the stage's one order)::

    Routed     an event of a profile: the profiles it absorbed, its identifiers when
               they changed
    Move       a profile absorbed by one of another partition: send its state there
    Tick       a tick of event time ended (sent to the partitions with an event in it,
               and to every one when :func:`everywhere`)
    Forgotten  a profile to forget

Profile partition -> profile partition::

    Moved      the state of an absorbed profile, for the survivor's partition

Profile partitions -> trainer, and back::

    Sample     a profile to learn from, in tick ``tick``
    Mark       partition ``partition`` sent every sample of epoch ``epoch`` (a run of
               ``segmentation.version_epoch_ticks`` ticks)
    Version    the trainer learned epoch ``epoch``: the model versions it published then
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from workers.core.features import ProfileState
from workers.core.forget import ForgetRequest
from workers.core.identity import ProfileId
from workers.core.segments import Snapshot
from workers.core.touchpoints import Touchpoint


class Routed(NamedTuple):
    pid: ProfileId
    tp: Touchpoint
    absorbed: tuple[ProfileId, ...]
    identifiers: Mapping[str, list[str]] | None  # None: unchanged


class Move(NamedTuple):
    pid: ProfileId
    survivor: ProfileId


class Tick(NamedTuple):
    tick: int
    final: bool = False  # the stream was flushed: everything held is due


class Forgotten(NamedTuple):
    pid: ProfileId
    members: Mapping[str, list[str]]
    request: ForgetRequest


class Moved(NamedTuple):
    pid: ProfileId
    survivor: ProfileId
    state: ProfileState | None


class Sample(NamedTuple):
    tick: int
    pid: ProfileId
    vector: list[float]
    ts: float


class Mark(NamedTuple):
    epoch: int
    partition: int


class Version(NamedTuple):
    epoch: int
    snapshots: tuple[tuple[Snapshot, float], ...]  # each with the event time it came at


TaskRecord = Routed | Move | Tick | Forgotten

# Every this many ticks, a tick's end goes to every partition, and the states profiles
# absorbed since are merged there (workers.core.partitioned.profile_task). Held back that
# long, a state sent from another worker has nearly always arrived, so the partitions of
# two workers seldom wait for each other (measured: 4 ticks, one owner batch's share of
# a backfill, gave 1.00x from 1 to 2 workers, 64 gave 1.17x); a live profile's page shows
# it without the absorbed states for at most this many ticks.
MERGE_TICKS = 64


def everywhere(tick: Tick, epoch_ticks: int) -> bool:
    """Whether a tick's end goes to every partition: every :data:`MERGE_TICKS` ticks, an
    epoch's first and last tick (versions come into force, samples are marked done) and a
    flush. Held-back states are merged there; any other tick changes nothing in a
    partition that had no event in it."""
    n = tick.tick
    return (tick.final or n % MERGE_TICKS == 0 or n % epoch_ticks == 0
            or (n + 1) % epoch_ticks == 0)
TrainerRecord = Sample | Mark
