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
========  ===============================  ==========================================

A commit writes only the keys changed since the previous one (a deleted key is a
record without a value: a tombstone on a compacted topic), so its cost follows
the traffic, not the number of profiles held. The same records, all of them,
make a state file (:mod:`workers.state.saved`) and a worker's changelog topics
(:mod:`workers.service.changelog`); :func:`rebuild` turns either back into a
pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple, get_args

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.errors import StateError
from workers.state.codec import pack, unpack
from workers.state.store import encode, open_store

Store = Literal["meta", "profile", "identity", "dedup", "held", "forgotten"]
STORES: tuple[Store, ...] = get_args(Store)
META_KEY = b"pipeline"
MODEL_KEY = b"model"
WINDOW_PREFIX = b"window:"


class StateRecord(NamedTuple):
    store: Store
    key: bytes
    value: bytes | None  # None: the key is gone (a tombstone)


class StateWriter:
    """Takes a pipeline's changes since the previous :meth:`changes`, as records.

    ``saved`` says whether the pipeline's current state is already written (a
    restored one): then the first call writes changes only, else everything.
    """

    def __init__(self, pipeline: Pipeline, saved: bool) -> None:
        self.pipeline = pipeline
        self._held: set[str] | None = set(pipeline.held_events()) if saved else None
        self._model = _model_stamp(pipeline) if saved else None
        # the learn numbers of the model's window held in the changelog, first to last
        self._window = _window_span(pipeline)
        if saved:
            _forget_changes(pipeline)

    def changes(self) -> list[StateRecord]:
        """Every record that changed since the previous call; the meta record always."""
        pipeline = self.pipeline
        if self._held is None:
            records = list(everything(pipeline))
            self._held = set(pipeline.held_events())
            self._model = _model_stamp(pipeline)
            self._window = _window_span(pipeline)
            return records
        out: list[StateRecord] = []
        profiles = pipeline.profiles
        changed, pipeline.changed_profiles = pipeline.changed_profiles, set()
        for pid in sorted(changed):
            state = profiles.get(pid)
            out.append(StateRecord("profile", pid.encode(),
                                   None if state is None else encode(state)))
        for pid, record in pipeline.graph.take_changed():
            out.append(StateRecord("identity", pid.encode(),
                                   None if record is None else pack(record)))
        for key, ids in pipeline.dedup.take_chunks():
            out.append(StateRecord("dedup", key.encode(), None if ids is None else pack(ids)))
        held = pipeline.held_events()
        for event_id in sorted(self._held - held.keys()):
            out.append(StateRecord("held", event_id.encode(), None))
        for event_id in sorted(held.keys() - self._held):
            out.append(StateRecord("held", event_id.encode(), pack(held[event_id])))
        self._held = set(held)
        stamp = _model_stamp(pipeline)
        if stamp != self._model:
            self._model = stamp
            out.extend(self._window_changes())
            out.append(StateRecord("meta", MODEL_KEY, pack(pipeline.model.state())))
        for digest, when in pipeline.forgotten.take_changed():
            out.append(StateRecord("forgotten", digest.encode(), pack(when)))
        out.append(StateRecord("meta", META_KEY, pack(pipeline.meta_state())))
        return out


    def _window_changes(self) -> list[StateRecord]:
        """The profiles learned since the last commit in, those the window dropped out: the
        window (thousands of vectors) is never written whole again."""
        first, last = _window_span(self.pipeline)
        was_first, was_last = self._window
        window = self.pipeline.model.window
        out = [StateRecord("meta", _window_key(n), None)
               for n in range(was_first, min(first, was_last + 1))]
        out.extend(StateRecord("meta", _window_key(n), pack(window[n - first]))
                   for n in range(max(first, was_last + 1), last + 1))
        self._window = first, last
        return out


def everything(pipeline: Pipeline) -> Iterator[StateRecord]:
    """The whole state as records (a state file, or a first commit); resets the changes."""
    pipeline.changed_profiles = set()
    pipeline.graph.changed = set()
    chunks = pipeline.dedup.take_chunks(everything=True)
    for pid, state in pipeline.profiles.sorted_items():
        yield StateRecord("profile", pid.encode(), encode(state))
    graph = pipeline.graph
    for pid in sorted(graph.profiles()):
        yield StateRecord("identity", pid.encode(), pack(graph.record(pid)))
    for key, ids in chunks:
        if ids is not None:
            yield StateRecord("dedup", key.encode(), pack(ids))
    for event_id, held in sorted(pipeline.held_events().items()):
        yield StateRecord("held", event_id.encode(), pack(held))
    first, _ = _window_span(pipeline)
    for n, vector in enumerate(pipeline.model.window, first):
        yield StateRecord("meta", _window_key(n), pack(vector))
    yield StateRecord("meta", MODEL_KEY, pack(pipeline.model.state()))
    pipeline.forgotten.changed = set()
    for digest, when in sorted(pipeline.forgotten.entries.items()):
        yield StateRecord("forgotten", digest.encode(), pack(when))
    yield StateRecord("meta", META_KEY, pack(pipeline.meta_state()))


def rebuild(config: Config, records: Iterable[StateRecord], where: str) -> Pipeline:
    """A pipeline from records (the newest value of each key wins; tombstones delete).

    ``records`` may come in any order across stores and keys, as a changelog's
    partitions do; for one key, later records replace earlier ones.
    """
    latest: dict[Store, dict[bytes, bytes | None]] = {store: {} for store in STORES}
    for store, key, value in records:
        table = latest.get(store)
        if table is None:
            raise StateError(f"{where}: unknown state store {store!r}")
        table[key] = value
    meta, model = latest["meta"].get(META_KEY), latest["meta"].get(MODEL_KEY)
    if meta is None or model is None:
        raise StateError(f"{where} holds no pipeline state (no meta record)")
    pipeline = Pipeline(config)
    try:
        pipeline.load_meta(unpack(meta))
        pipeline.model.load(unpack(model))
        entries = sorted((int(key[len(WINDOW_PREFIX):]), value)
                         for key, value in latest["meta"].items()
                         if key.startswith(WINDOW_PREFIX) and value is not None)
        segments = pipeline.model
        last = segments.learned
        first = last - min(last, segments.window.maxlen or 0) + 1
        if [n for n, _ in entries] != list(range(first, last + 1)):
            raise StateError(f"{where}: the model's window of learned profiles is"
                             " incomplete")
        segments.window.extend(tuple(unpack(value)) for _, value in entries)
        profiles = [(key.decode(), value) for key, value in sorted(latest["profile"].items())
                    if value is not None]
        pipeline.profiles.close()
        pipeline.profiles = open_store(config.state, profiles)
        graph = pipeline.graph
        for key, value in latest["identity"].items():
            if value is not None:
                members, best = unpack(value)
                graph.load(key.decode(), members, best)
        for key, value in latest["dedup"].items():
            if value is not None:
                pipeline.dedup.load_chunk(key.decode(), unpack(value))
        for value in latest["held"].values():
            if value is not None:
                far, tp, origin = unpack(value)
                pipeline.hold_again(far, tp, origin)
        for key, value in latest["forgotten"].items():
            if value is not None:
                pipeline.forgotten.entries[key.decode()] = unpack(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{where}: damaged state ({type(exc).__name__}: {exc})") from None
    _forget_changes(pipeline)
    return pipeline


def _window_key(n: int) -> bytes:
    return WINDOW_PREFIX + str(n).encode()


def _window_span(pipeline: Pipeline) -> tuple[int, int]:
    """The learn numbers (from 1) of the first and last profile in the model's window;
    every learn appends one, the window keeps the newest ``window_profiles``."""
    model = pipeline.model
    return model.learned - len(model.window) + 1, model.learned


def _model_stamp(pipeline: Pipeline) -> tuple[int, int]:
    """Changes whenever the model learns (and so whenever it publishes)."""
    snapshot = pipeline.model.snapshot
    return pipeline.model.learned, 0 if snapshot is None else snapshot.version


def _forget_changes(pipeline: Pipeline) -> None:
    """What the pipeline holds now is written: later changes start from here."""
    pipeline.changed_profiles = set()
    pipeline.graph.changed = set()
    pipeline.dedup.take_chunks()
    pipeline.forgotten.changed = set()
