"""Where profile states live: in memory, or in a local RocksDB (rocksdict).

The pipeline sees a :class:`ProfileStore`, a mutable mapping from profile id
to :class:`~workers.core.features.ProfileState` with one extra duty: ``sync()``,
called after every tick, when the states the tick touched are final. The
memory store is a plain dict (``sync`` does nothing), so the hot path pays
nothing for the abstraction. The RocksDB store keeps only the states handed
out since the last ``sync`` decoded in memory and writes them back then, so
resident memory holds the identity maps and the model, not every profile.

Neither store is the durable copy: that is the Kafka checkpoint (or a state
file), which holds the profiles in the store-independent form of
:meth:`ProfileStore.dump`. A RocksDB store therefore lives in a fresh
directory of its own and is deleted when it is closed or garbage-collected:
a restarted worker rebuilds it from the checkpoint instead of trusting a
local directory that may be older or newer than the checkpoint's offset.

A process killed outright cannot delete its directory, so each store holds a
lock on a file inside it while it lives; a new store first deletes the
directories under ``state.directory`` whose lock nobody holds. A write that
fails (a full disk) is a :class:`~workers.errors.StateError` naming the
directory, and the store deletes its directory at once, so the space is free
for the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Protocol

from workers.config import StateConfig
from workers.core.features import ProfileState
from workers.errors import StateError
from workers.state.codec import pack, unpack

ProfileId = str
# one profile as bytes: ProfileState's compact list state (its __getstate__), packed by
# workers.state.codec
Dumped = tuple[ProfileId, bytes]


class ProfileStore(Protocol):
    """The mapping the pipeline keeps profiles in."""

    def get(self, pid: ProfileId, default: None = None) -> ProfileState | None: ...
    def __getitem__(self, pid: ProfileId) -> ProfileState: ...
    def __setitem__(self, pid: ProfileId, state: ProfileState) -> None: ...
    def __contains__(self, pid: object) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[ProfileId]: ...
    def pop(self, pid: ProfileId) -> ProfileState: ...
    def values(self) -> Iterable[ProfileState]: ...
    def items(self) -> Iterable[tuple[ProfileId, ProfileState]]: ...

    def sorted_chunks(self, size: int) -> Iterator[tuple[list[ProfileId], list[ProfileState]]]:
        """Every profile in id order, ``size`` at a time as (ids, states): two lists a
        loop indexes, not a tuple per profile. A changed state must be assigned back
        (the store may write it once the next chunk is asked for)."""
        ...

    def sync(self) -> None:
        """The states handed out so far are final for now: persist them."""
        ...

    def dump(self) -> list[Dumped]:
        """Every profile, store-independent, in id order (checkpoints, state files)."""
        ...

    def close(self) -> None: ...


def encode(state: ProfileState) -> bytes:
    return pack(state.__getstate__())


def decode(data: bytes) -> ProfileState:
    state = ProfileState.__new__(ProfileState)
    state.__setstate__(unpack(data))
    return state


class MemoryStore(dict[ProfileId, ProfileState]):
    """A dict: every state decoded and resident, nothing to write back."""

    def sorted_chunks(self, size: int) -> Iterator[tuple[list[ProfileId], list[ProfileState]]]:
        # the dict is rebuilt in id order: the next call sorts the ids it held then, in
        # order, followed by those added since (a merge, not a sort of them all), and
        # reads the states in the order they sit in memory
        pids = sorted(self)
        states = [self[pid] for pid in pids]
        self.clear()
        self.update(zip(pids, states, strict=True))
        for at in range(0, len(pids), size):
            yield pids[at:at + size], states[at:at + size]

    def sync(self) -> None:
        pass

    def dump(self) -> list[Dumped]:
        return [(pid, encode(self[pid])) for pid in sorted(self)]

    def close(self) -> None:
        pass


class RocksDBStore(MutableMapping[ProfileId, ProfileState]):
    """Profiles in a local RocksDB; the states a tick touches stay decoded until ``sync``."""

    def __init__(self, directory: str | None, contents: Iterable[Dumped] = ()) -> None:
        from rocksdict import Options, Rdict, WriteBatch, WriteOptions

        _sweep(directory)
        try:
            self.path = tempfile.mkdtemp(prefix=_PREFIX, dir=directory)
            self._lock = os.open(os.path.join(self.path, _LOCK), os.O_CREAT | os.O_RDWR)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            options = Options(raw_mode=True)  # keys and values are bytes: no rocksdict pickling
            self._db: Any = Rdict(self.path, options)  # raw mode: bytes, which stubs cannot say
            # no write-ahead log: the store is never reopened (a restart rebuilds it from the
            # changelogs or a state file), so the log would be written for nothing
            unlogged: Any = WriteOptions()
            unlogged.disable_wal = True
            self._db.set_write_options(unlogged)
        except Exception as exc:  # rocksdict raises plain Exceptions
            raise StateError(_failed("create the profile store in", directory, exc)) from None
        self._cache: dict[ProfileId, ProfileState] = {}
        self._count = 0
        self._closer = weakref.finalize(self, _destroy, self._db, self.path, self._lock)
        batch = WriteBatch(raw_mode=True)
        for pid, data in contents:
            batch.put(pid.encode(), data)
            self._count += 1
        self._write(batch)

    # -- mapping ------------------------------------------------------------------------

    def __getitem__(self, pid: ProfileId) -> ProfileState:
        state = self._cache.get(pid)
        if state is None:
            data = self._db.get(pid.encode())
            if data is None:
                raise KeyError(pid)
            state = self._cache[pid] = decode(data)
        return state

    def get(self, pid: ProfileId, default: None = None) -> ProfileState | None:  # type: ignore[override]
        try:
            return self[pid]
        except KeyError:
            return default

    def __setitem__(self, pid: ProfileId, state: ProfileState) -> None:
        if pid not in self:
            self._count += 1
        self._cache[pid] = state

    def __delitem__(self, pid: ProfileId) -> None:
        if pid not in self:
            raise KeyError(pid)
        self._cache.pop(pid, None)
        self._db.delete(pid.encode())
        self._count -= 1

    def __contains__(self, pid: object) -> bool:
        return pid in self._cache or (isinstance(pid, str)
                                      and self._db.get(pid.encode()) is not None)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[ProfileId]:
        self._write_back()
        for key in self._db.keys():  # noqa: SIM118 (an Rdict, not a dict: no __iter__)
            yield key.decode()

    def items(self) -> Iterator[tuple[ProfileId, ProfileState]]:  # type: ignore[override]
        """Decoded one at a time and not kept: reading every profile costs no memory.

        A state handed out earlier (and maybe being changed) is yielded as that object.
        """
        self._write_back()
        cache = self._cache
        for key, value in self._db.items():
            pid = key.decode()
            state = cache.get(pid)
            yield pid, decode(value) if state is None else state

    def values(self) -> Iterator[ProfileState]:  # type: ignore[override]
        return (state for _, state in self.items())

    # -- store duties -------------------------------------------------------------------

    def sorted_chunks(self, size: int) -> Iterator[tuple[list[ProfileId], list[ProfileState]]]:
        items = self.items()  # RocksDB keeps keys in byte order: id order for ASCII ids
        while chunk := list(itertools.islice(items, size)):
            yield [pid for pid, _ in chunk], [state for _, state in chunk]

    def sync(self) -> None:
        self._write_back()
        self._cache.clear()

    def _write_back(self) -> None:
        if not self._cache:
            return
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for pid, state in self._cache.items():
            batch.put(pid.encode(), encode(state))
        self._write(batch)

    def _write(self, batch: Any) -> None:
        """Write ``batch``; on failure (a full disk: found when a flush of the memtable
        failed, as no log is written) delete the store and say where."""
        try:
            self._db.write(batch)
        except Exception as exc:  # rocksdict raises plain Exceptions
            self._closer()
            raise StateError(_failed("write the profile store in", self.path, exc)) from None

    def dump(self) -> list[Dumped]:
        self._write_back()
        return [(key.decode(), value) for key, value in self._db.items()]

    def close(self) -> None:
        self._closer()


_PREFIX = "persona-stream-profiles-"
_LOCK = "owner.lock"
_YOUNG = 60.0  # seconds: a directory this new is left alone by the sweep


def _destroy(db: Any, path: str, lock: int) -> None:
    with contextlib.suppress(Exception):  # after a failed write, closing fails too: no matter
        db.close()
    shutil.rmtree(path, ignore_errors=True)
    os.close(lock)


def _sweep(directory: str | None) -> None:
    """Delete the stores of processes that died without deleting theirs."""
    for path in Path(directory or tempfile.gettempdir()).glob(_PREFIX + "*"):
        if time.time() - path.stat().st_mtime < _YOUNG:
            continue  # may be a store another process is creating right now
        try:
            lock = os.open(path / _LOCK, os.O_RDWR)
        except OSError:
            continue  # no lock file: not ours, or still being created
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a living store holds it
        finally:
            os.close(lock)
        shutil.rmtree(path, ignore_errors=True)


def _failed(doing: str, where: str | None, exc: Exception) -> str:
    return (f"cannot {doing} {where or tempfile.gettempdir()} (state.directory): {exc};"
            " the store was deleted, free space there and start again")


def open_store(cfg: StateConfig, contents: Iterable[Dumped] = ()) -> ProfileStore:
    """The store ``state.store`` names, filled with ``contents`` (from :meth:`dump`)."""
    if cfg.store == "memory":
        return MemoryStore((pid, decode(data)) for pid, data in contents)
    return RocksDBStore(cfg.directory, contents)
