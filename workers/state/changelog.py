"""The pipeline's state as keyed records: what a commit writes, what a restore reads.

The state is six stores, each a map from key to value (workers/state/codec.py
bytes, which cannot run code when read):

========  ===============================  ==========================================
store     key                              value
========  ===============================  ==========================================
profile   profile id                       the profile's features (ProfileState)
identity  profile id                       its identifiers and its strongest one
dedup     ``bucket:start``                 event ids filed in a de-dup bucket from
                                           ``start`` on (a commit appends a chunk)
held      event id                         an event waiting in the event-time buffer
                                           or far ahead of the stream's clock
forgotten identifier hash (64 hex digits)  when its forgetting was requested (the
                                           forget list, workers/core/forget.py)
meta      ``pipeline``, ``model``,         the rest: clock, counters, sizes; the model
          ``window:<n>``                   (written when it learned something) and the
                                           n-th profile it learned, while in its window
view      profile id                       a profile partition's copy of its identifiers
========  ===============================  ==========================================

The same stores hold the state of each stage of the partitioned core
(:mod:`workers.core.partitioned`), each stage the stores it has: the identity
stage identity, dedup, held, forgotten and meta ``stage``; a profile partition
profile, view and meta ``task``; the trainer meta ``model``, ``window:<n>`` and
``trainer``. Each is made of :class:`Part` s, one per store, and its meta store
holds a ``header:<meta key>`` record (:mod:`workers.state.header`: format and
configuration) written with its first commit, so changelogs written by another
state format or configuration are refused in one line instead of mis-read.

A commit writes only the keys changed since the previous one (a deleted key is a
record without a value: a tombstone on a compacted topic), so its cost follows
the traffic, not the number of profiles held. The same records, all of them,
make a state file (:mod:`workers.state.saved`) and a worker's changelog topics
(:mod:`workers.service.changelog`); :func:`rebuild` turns either back into a
pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, NamedTuple, Protocol, TypeVar, get_args

from workers.config import Config
from workers.core.identity_stage import IdentityStage
from workers.core.partitioned.profile_task import HeldMerge, IdentifierView, ProfileTask
from workers.core.partitioned.records import Sample
from workers.core.partitioned.trainer import Trainer
from workers.core.pipeline import Pipeline
from workers.core.profile_work import ProfileWork
from workers.core.segments import SegmentModel
from workers.errors import StateError
from workers.state.codec import pack, unpack
from workers.state.header import check_header, header
from workers.state.store import encode, open_store

Store = Literal["meta", "profile", "identity", "dedup", "held", "forgotten", "view"]
STORES: tuple[Store, ...] = get_args(Store)
# the stores of a Pipeline (a state file of run, replay and forget): all but a partition's view
PIPELINE_STORES: tuple[Store, ...] = tuple(s for s in STORES if s != "view")
# the identity stage's (the worker's owner): the profiles are the profile partitions'
STAGE_STORES: tuple[Store, ...] = tuple(s for s in PIPELINE_STORES if s != "profile")
META_KEY = b"pipeline"
MODEL_KEY = b"model"
WINDOW_PREFIX = b"window:"
HOLD_PREFIX = b"hold:"  # a profile partition's merge held back
MOVED_PREFIX = b"moved:"  # an absorbed state waiting for its merge
# profiles a full commit reads from the store at a time
_CHUNK = 4096


class StateRecord(NamedTuple):
    store: Store
    key: bytes
    value: bytes | None  # None: the key is gone (a tombstone)



Latest = dict[Store, dict[bytes, bytes | None]]
Stateful = Pipeline | IdentityStage | ProfileTask | Trainer
StatefulT = TypeVar("StatefulT", Pipeline, IdentityStage, ProfileTask, Trainer)
K = TypeVar("K")
V = TypeVar("V")


class Part(Protocol):
    """One store of a stateful object: its records, and reading them back."""

    def records(self, everything: bool) -> Iterator[StateRecord]:
        """The records changed since the last call (all of them with ``everything``)."""

    def load(self, latest: Latest) -> None:
        """Read the newest record of each key back."""

    def written(self) -> None:
        """What the store holds now is written: later changes start from here."""


class StateWriter:
    """Takes an object's changes since the previous :meth:`changes`, as records.

    ``saved`` says whether the object's current state is already written (a
    restored one): then the first call writes changes only, else everything.
    """

    def __init__(self, stateful: Stateful, saved: bool) -> None:
        self.parts = parts_of(stateful)
        self._first = not saved
        if saved:
            for part in self.parts:
                part.written()

    def changes(self) -> list[StateRecord]:
        """Every record that changed since the previous call; the meta record always."""
        first, self._first = self._first, False
        return [record for part in self.parts for record in part.records(first)]


def everything(stateful: Stateful) -> Iterator[StateRecord]:
    """The whole state as records (a state file, or a first commit); resets the changes."""
    for part in parts_of(stateful):
        yield from part.records(everything=True)


def rebuild(config: Config, records: Iterable[StateRecord], where: str) -> Pipeline:
    """A pipeline from records (the newest value of each key wins; tombstones delete).

    ``records`` may come in any order across stores and keys, as a changelog's
    partitions do; for one key, later records replace earlier ones.
    """
    return restore(Pipeline(config), records, where)


def restore(stateful: StatefulT, records: Iterable[StateRecord], where: str) -> StatefulT:
    """``stateful`` (new, made with the configuration of the records) with their state."""
    latest: Latest = {store: {} for store in STORES}
    for store, key, value in records:
        table = latest.get(store)
        if table is None:
            raise StateError(f"{where}: unknown state store {store!r}")
        table[key] = value
    parts = parts_of(stateful)
    if latest["meta"].get(_meta_key(stateful)) is None:
        raise StateError(f"{where} holds no {_meta_key(stateful).decode()} state"
                         " (no meta record)")
    written = latest["meta"].get(_header_key(stateful))
    if written is None:
        raise StateError(f"{where} was written by a persona-stream before state format"
                         " headers; replay the history into a new kafka.application_id")
    check_header(written, _config_of(stateful), where, same_version=False)
    try:
        for part in parts:
            part.load(latest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{where}: damaged state ({type(exc).__name__}: {exc})") from None
    for part in parts:
        part.written()
    return stateful


# ---- the parts ---------------------------------------------------------------------------


class Header:
    """The ``header`` record of a meta store: written once, with the first commit (the
    format and configuration do not change while the state lives)."""

    def __init__(self, key: bytes, config: Config) -> None:
        self.key, self.config = key, config

    def records(self, everything: bool) -> Iterator[StateRecord]:
        if everything:
            yield StateRecord("meta", self.key, header(self.config))

    def load(self, latest: Latest) -> None:
        pass  # checked by restore, before any part is read

    def written(self) -> None:
        pass


class Meta:
    """The ``meta`` record ``key``: small, written whole at every commit."""

    def __init__(self, key: bytes, get: Callable[[], Any], put: Callable[[Any], None]):
        self.key, self.get, self.put = key, get, put

    def records(self, everything: bool) -> Iterator[StateRecord]:
        yield StateRecord("meta", self.key, pack(self.get()))

    def load(self, latest: Latest) -> None:
        self.put(unpack(latest["meta"][self.key]))  # type: ignore[arg-type]

    def written(self) -> None:
        pass  # written whole every time


class Profiles:
    """A profile store: one record per profile changed (or gone)."""

    def __init__(self, work: ProfileWork, config: Config) -> None:
        self.work, self.config = work, config

    def records(self, everything: bool) -> Iterator[StateRecord]:
        work = self.work
        changed, work.changed_profiles = work.changed_profiles, set()
        if everything:
            for pids, states in work.profiles.sorted_chunks(_CHUNK):
                for pid, state in zip(pids, states, strict=True):
                    yield StateRecord("profile", pid.encode(), encode(state))
            return
        profiles = work.profiles
        for pid in sorted(changed or ()):  # (None before the first commit: everything)
            held = profiles.get(pid)
            yield StateRecord("profile", pid.encode(), None if held is None else encode(held))

    def load(self, latest: Latest) -> None:
        profiles = [(key.decode(), value) for key, value in sorted(latest["profile"].items())
                    if value is not None]
        self.work.profiles.close()
        self.work.profiles = open_store(self.config.state, profiles)

    def written(self) -> None:
        self.work.changed_profiles = set()


class Identities:
    """The identity graph: each changed profile's identifiers and strongest one."""

    def __init__(self, stage: IdentityStage) -> None:
        self.graph = stage.graph

    def records(self, everything: bool) -> Iterator[StateRecord]:
        graph = self.graph
        if everything:
            graph.changed = set()
            for pid in sorted(graph.profiles()):
                yield StateRecord("identity", pid.encode(), pack(graph.record(pid)))
            return
        for pid, record in graph.take_changed():
            yield StateRecord("identity", pid.encode(), None if record is None else pack(record))

    def load(self, latest: Latest) -> None:
        for key, value in latest["identity"].items():
            if value is not None:
                members, best = unpack(value)
                self.graph.load(key.decode(), members, best)

    def written(self) -> None:
        self.graph.changed = set()


class DedupIds:
    """The de-dup window's ids, a chunk per bucket per commit."""

    def __init__(self, stage: IdentityStage) -> None:
        self.dedup = stage.dedup

    def records(self, everything: bool) -> Iterator[StateRecord]:
        for key, ids in self.dedup.take_chunks(everything=everything):
            if ids is not None or not everything:
                yield StateRecord("dedup", key.encode(), None if ids is None else pack(ids))

    def load(self, latest: Latest) -> None:
        for key, value in latest["dedup"].items():
            if value is not None:
                self.dedup.load_chunk(key.decode(), unpack(value))

    def written(self) -> None:
        self.dedup.take_chunks()


class Held:
    """Events waiting in the event-time buffer or far ahead."""

    def __init__(self, stage: IdentityStage) -> None:
        self.stage = stage
        self._written: set[str] = set()

    def records(self, everything: bool) -> Iterator[StateRecord]:
        held = self.stage.held_events()
        if everything:
            for event_id, value in sorted(held.items()):
                yield StateRecord("held", event_id.encode(), pack(value))
        else:
            for event_id in sorted(self._written - held.keys()):
                yield StateRecord("held", event_id.encode(), None)
            for event_id in sorted(held.keys() - self._written):
                yield StateRecord("held", event_id.encode(), pack(held[event_id]))
        self._written = set(held)

    def load(self, latest: Latest) -> None:
        for value in latest["held"].values():
            if value is not None:
                far, tp, origin = unpack(value)
                self.stage.hold_again(far, tp, origin)

    def written(self) -> None:
        self._written = set(self.stage.held_events())


class Forgotten:
    """The forget list: identifier hashes, with when their forgetting was asked."""

    def __init__(self, stage: IdentityStage) -> None:
        self.forgotten = stage.forgotten

    def records(self, everything: bool) -> Iterator[StateRecord]:
        forgotten = self.forgotten
        if everything:
            forgotten.changed = set()
            changes = sorted(forgotten.entries.items())
        else:
            changes = forgotten.take_changed()
        for digest, when in changes:
            yield StateRecord("forgotten", digest.encode(), pack(when))

    def load(self, latest: Latest) -> None:
        for key, value in latest["forgotten"].items():
            if value is not None:
                self.forgotten.entries[key.decode()] = unpack(value)

    def written(self) -> None:
        self.forgotten.changed = set()


class View:
    """A profile partition's identifiers of its profiles."""

    def __init__(self, view: IdentifierView) -> None:
        self.view = view

    def records(self, everything: bool) -> Iterator[StateRecord]:
        view = self.view
        changed, view.changed = view.changed, set()
        for pid in sorted(view.held if everything else changed):
            held = view.held.get(pid)
            yield StateRecord("view", pid.encode(), None if held is None else pack(held))

    def load(self, latest: Latest) -> None:
        for key, value in latest["view"].items():
            if value is not None:
                self.view.held[key.decode()] = unpack(value)

    def written(self) -> None:
        self.view.changed = set()


class Model:
    """The model (written when it learned something) and its window of learned profiles,
    an entry per learn (appended, with tombstones as it slides), never written whole."""

    def __init__(self, model: SegmentModel) -> None:
        self.model = model
        self._stamp: tuple[int, int] | None = None
        self._window = self._span()

    def records(self, everything: bool) -> Iterator[StateRecord]:
        model = self.model
        stamp = _model_stamp(model)
        if everything:
            first, _ = self._span()
            for n, vector in enumerate(model.window, first):
                yield StateRecord("meta", _window_key(n), pack(vector))
        elif stamp != self._stamp:
            yield from self._window_changes()
        if everything or stamp != self._stamp:
            yield StateRecord("meta", MODEL_KEY, pack(model.state()))
        self._stamp = stamp
        self._window = self._span()

    def _window_changes(self) -> list[StateRecord]:
        first, last = self._span()
        was_first, was_last = self._window
        window = self.model.window
        out = [StateRecord("meta", _window_key(n), None)
               for n in range(was_first, min(first, was_last + 1))]
        out.extend(StateRecord("meta", _window_key(n), pack(window[n - first]))
                   for n in range(max(first, was_last + 1), last + 1))
        return out

    def _span(self) -> tuple[int, int]:
        """The learn numbers (from 1) of the first and last profile in the window; every
        learn appends one, the window keeps the newest ``window_profiles``."""
        model = self.model
        return model.learned - len(model.window) + 1, model.learned

    def written(self) -> None:
        self._stamp, self._window = _model_stamp(self.model), self._span()

    def load(self, latest: Latest) -> None:
        model = self.model
        model.load(unpack(latest["meta"][MODEL_KEY]))  # type: ignore[arg-type]
        entries = sorted((int(key[len(WINDOW_PREFIX):]), value)
                         for key, value in latest["meta"].items()
                         if key.startswith(WINDOW_PREFIX) and value is not None)
        last = model.learned
        first = last - min(last, model.window.maxlen or 0) + 1
        if [n for n, _ in entries] != list(range(first, last + 1)):
            raise ValueError("the model's window of learned profiles is incomplete")
        model.window.extend(tuple(unpack(value)) for _, value in entries)


class Holds:
    """A profile partition's merges held back (``hold:<survivor>``) and the absorbed states
    waiting for them (``moved:<absorbed>\x00<survivor>``), a record each: a commit writes
    the merges since the last one, not every state still waiting."""

    def __init__(self, task: ProfileTask) -> None:
        self.task = task

    def records(self, everything: bool) -> Iterator[StateRecord]:
        task = self.task
        holds, moved = task.changed_holds, task.changed_arrived
        if everything:
            holds, moved = set(task.held), set(task.arrived)
        yield from _keyed(holds, lambda pid: HOLD_PREFIX + pid.encode(), task.held.get,
                          lambda held: pack([held.keys, held.trigger, held.ts]))
        yield from _keyed(moved, lambda key: MOVED_PREFIX + "\x00".join(key).encode(),
                          lambda key: (task.arrived[key],) if key in task.arrived else None,
                          lambda state: pack(list(state)))
        self.written()

    def load(self, latest: Latest) -> None:
        task = self.task
        for key, value in latest["meta"].items():
            if value is None:
                continue
            if key.startswith(HOLD_PREFIX):
                keys, trigger, ts = unpack(value)
                task.held[key[len(HOLD_PREFIX):].decode()] = HeldMerge(
                    [(other, survivor) for other, survivor in keys], trigger, ts)
            elif key.startswith(MOVED_PREFIX):
                other, survivor = key[len(MOVED_PREFIX):].decode().split("\x00")
                [task.arrived[other, survivor]] = unpack(value)

    def written(self) -> None:
        self.task.changed_holds = set()
        self.task.changed_arrived = set()


class Waiting:
    """The trainer's samples and marks of epochs not learned yet: a record each
    (``sample:<tick>:<profile>``, ``mark:<epoch>``), gone once the epoch is learned."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def records(self, everything: bool) -> Iterator[StateRecord]:
        trainer = self.trainer
        samples, marks = trainer.changed_samples, trainer.changed_marks
        if everything:
            samples = {key for held in trainer.samples.values() for key in held}
            marks = set(trainer.marks)
        yield from _keyed(samples, lambda key: b"sample:%d:%s" % (key[0], key[1].encode()),
                          lambda key: trainer.sample(*key), lambda sample: pack(tuple(sample)))
        yield from _keyed(marks, lambda epoch: b"mark:%d" % epoch, trainer.marks.get,
                          lambda held: pack(sorted(held)))
        self.written()

    def load(self, latest: Latest) -> None:
        trainer = self.trainer
        for key, value in latest["meta"].items():
            if value is None:
                continue
            if key.startswith(b"sample:"):
                sample = Sample(*unpack(value))
                trainer.samples[sample.tick // trainer.epoch_ticks][
                    sample.tick, sample.pid] = sample
            elif key.startswith(b"mark:"):
                trainer.marks[int(key[5:])] = set(unpack(value))

    def written(self) -> None:
        self.trainer.changed_samples = set()
        self.trainer.changed_marks = set()


def _keyed(keys: Iterable[K], key_of: Callable[[K], bytes], get: Callable[[K], V | None],
           encode_value: Callable[[V], bytes]) -> Iterator[StateRecord]:
    """A meta-store record per key, in key order: its value, or a tombstone once gone."""
    for key in sorted(keys):  # type: ignore[type-var]
        value = get(key)
        yield StateRecord("meta", key_of(key), None if value is None else encode_value(value))


def _model_stamp(model: SegmentModel) -> tuple[int, int]:
    """Changes whenever the model learns (and so whenever it publishes)."""
    snapshot = model.snapshot
    return model.learned, 0 if snapshot is None else snapshot.version


def _window_key(n: int) -> bytes:
    return WINDOW_PREFIX + str(n).encode()


# ---- which parts each stateful object has ------------------------------------------------



def _meta_key(stateful: Stateful) -> bytes:
    if isinstance(stateful, Pipeline):
        return META_KEY
    if isinstance(stateful, ProfileTask):
        return b"task"
    if isinstance(stateful, Trainer):
        return b"trainer"
    return b"stage"


def _header_key(stateful: Stateful) -> bytes:
    return b"header:" + _meta_key(stateful)


def _config_of(stateful: Stateful) -> Config:
    return stateful.work.config if isinstance(stateful, ProfileTask | Trainer) else stateful.config


def parts_of(stateful: Stateful) -> Sequence[Part]:
    """The stores of a pipeline, or of a stage of the partitioned core, in writing order."""
    key = _meta_key(stateful)
    first = Header(_header_key(stateful), _config_of(stateful))
    if isinstance(stateful, ProfileTask):
        return [first, Profiles(stateful.work, stateful.work.config), View(stateful.view),
                Holds(stateful), Meta(key, stateful.meta_state, stateful.load_meta)]
    if isinstance(stateful, Trainer):
        return [first, Model(stateful.model), Waiting(stateful),
                Meta(key, stateful.meta_state, stateful.load_meta)]
    stage: list[Part] = [Identities(stateful), DedupIds(stateful), Held(stateful)]
    if isinstance(stateful, Pipeline):
        # the meta record first: the model and the profiles are read after it
        return [first, Meta(key, stateful.meta_state, stateful.load_meta),
                Model(stateful.model), Profiles(stateful.work, stateful.config), *stage,
                Forgotten(stateful)]
    return [first, *stage, Forgotten(stateful),
            Meta(key, stateful.meta_state, stateful.load_meta)]
