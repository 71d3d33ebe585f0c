"""The RocksDB store on a full disk, and after a process that died without cleaning up."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.core.features import ProfileState
from workers.errors import StateError
from workers.state.store import RocksDBStore, encode


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.decode().strip()}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _profiles(n: int) -> Iterator[tuple[str, bytes]]:
    state = ProfileState(64, 1.7e9)
    data = encode(state) + b"\0" * 2000  # padded: the disk fills after a few hundred
    return ((f"p{i:06d}", data) for i in range(n))


def test_a_full_disk_is_one_clear_error_and_the_store_is_gone(tiny_disk: Path) -> None:
    """The store writes no log, so the disk fills when RocksDB flushes its memtable (up to
    64 MiB held in memory first), and the write after that flush failed says so."""
    store = RocksDBStore(str(tiny_disk))
    with pytest.raises(StateError, match=r"cannot write the profile store in .*"
                                         r"\(state\.directory\): .*space") as info:
        for i in range(200_000):  # 200 MB of profiles for a 1 MiB disk, a sync per tick
            store[f"p{i:07d}"] = ProfileState(64, 1.7e9)
            if i % 1000 == 999:
                store.sync()
    assert "free space there and start again" in str(info.value)
    assert list(tiny_disk.glob("persona-stream-profiles-*")) == []
    # space is back (the failed store is gone): the next start works
    store = RocksDBStore(str(tiny_disk), _profiles(10))
    assert len(store) == 10
    store.close()


def test_stores_left_by_dead_processes_are_swept(tmp_path: Path) -> None:
    living = RocksDBStore(str(tmp_path))
    dead = tmp_path / "persona-stream-profiles-dead"
    dead.mkdir()
    (dead / "owner.lock").write_bytes(b"")  # its process is gone: nobody holds the lock
    old = time.time() - 3600
    for path in (dead, Path(living.path)):
        os.utime(path, (old, old))
    RocksDBStore(str(tmp_path)).close()
    assert not dead.exists()
    assert Path(living.path).exists()  # its lock is held: left alone
    living.close()
    assert not Path(living.path).exists()
