"""Saved state cannot run code: the codec builds only data and allowlisted classes."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import msgpack
import pytest
from river import cluster, preprocessing

from workers.config import load
from workers.core.pipeline import Pipeline
from workers.errors import StateError
from workers.state.changelog import StateRecord, rebuild
from workers.state.codec import pack, unpack
from workers.state.saved import MAGIC, dump_state, header, load_state


@pytest.mark.parametrize("model", [
    cluster.KMeans(n_clusters=3, halflife=0.5, seed=1), cluster.STREAMKMeans(
        n_clusters=3, seed=1, chunk_size=40), cluster.DBSTREAM(),
    cluster.CluStream(n_macro_clusters=3, seed=1), preprocessing.StandardScaler()])
def test_every_river_model_continues_as_if_never_saved(model: object) -> None:
    rng = random.Random(3)
    xs = [{f"f{j}": rng.random() + i % 3 for j in range(3)} for i in range(400)]
    for x in xs[:200]:
        model.learn_one(x)  # type: ignore[attr-defined]
    saved, kept = unpack(pack(model)), pickle.loads(pickle.dumps(model))
    for x in xs[200:]:
        saved.learn_one(x)
        kept.learn_one(x)
    assert pack(saved) == pack(kept)  # the same learned state, byte for byte


def test_shared_objects_stay_shared() -> None:
    """river's KMeans draws new centres from its own generator: after a round trip the
    centres' default still draws from the model's generator, not a copy of it."""
    model = cluster.KMeans(n_clusters=2, seed=4)
    model.learn_one({"a": 1.0})
    restored = unpack(pack(model))
    factory = restored.centers[0].default_factory
    assert factory.func.__self__ is restored._rng


def test_each_value_packs_on_its_own_whatever_was_packed_before() -> None:
    """The packers are reused value after value: a value refused half-way leaves nothing
    in them, and an object packed before is not a reference in the next value."""
    model = cluster.KMeans(n_clusters=2, seed=4)
    model.learn_one({"a": 1.0})
    alone = pack(model)
    with pytest.raises(StateError):
        pack([(1, 2), {"x": (3, object())}])  # refused inside a nested tuple
    assert pack(model) == alone
    assert unpack(pack(model)).centers == model.centers
    nested = (1, [(2, (3, frozenset({4}))), {"k": (5.0, None)}])
    assert unpack(pack(nested)) == nested


def _object(module: str, qualname: str, attributes: dict[str, object]) -> bytes:
    inner = msgpack.packb([0, module, qualname, attributes], use_bin_type=True)
    return msgpack.packb(msgpack.ExtType(9, inner), use_bin_type=True)


@pytest.mark.parametrize(("module", "qualname"), [
    ("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"),
    ("workers.core.pipeline.os", "system"), ("river.<locals>", "x")])
def test_a_crafted_value_naming_another_class_is_refused(module: str, qualname: str,
                                                         tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(StateError):
        unpack(_object(module, qualname, {"cmd": f"touch {marker}"}))
    assert not marker.exists()


def test_a_pickle_is_not_a_state_file(tmp_path: Path) -> None:
    """The classic attack: a pickle whose loading runs a command. It is never unpickled."""
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            import os
            return (os.system, (f"touch {marker}",))

    config = load()
    crafted = tmp_path / "state.bin"
    crafted.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(StateError, match="not a persona-stream state file"):
        load_state(crafted, config)
    # the same pickle behind a valid header, as a state record value and as the body
    body = MAGIC + b" " + header(config) + b"\n" + pickle.dumps(Boom())
    crafted.write_bytes(body)
    with pytest.raises(StateError):
        load_state(crafted, config)
    with pytest.raises(StateError):
        rebuild(config, [StateRecord("meta", b"pipeline", pickle.dumps(Boom()))], "crafted")
    assert not marker.exists()


def test_a_cut_or_altered_state_file_is_refused(tmp_path: Path) -> None:
    pipeline = Pipeline(load())
    data = dump_state(pipeline)
    path = tmp_path / "s.bin"
    path.write_bytes(data[:-10])
    with pytest.raises(StateError, match="damaged or cut"):
        load_state(path, load())
    altered = bytearray(data)
    altered[-60] ^= 1
    path.write_bytes(bytes(altered))
    with pytest.raises(StateError):
        load_state(path, load())


def test_a_compiled_object_whose_fields_it_cannot_see_is_refused_not_saved_empty() -> None:
    """A class compiled with C fields (a ``.pxd``) and no ``__slots__`` has no ``__dict__``
    either: saved as it is, it would read back with no fields at all."""
    from workers.core.features import FeatureSpec

    spec = FeatureSpec(load().features)
    if hasattr(spec, "__dict__"):
        pytest.skip("FeatureSpec runs as Python source here: its fields are in __dict__")
    with pytest.raises(StateError, match="not listed in __slots__"):
        pack(spec)
