"""The partitioned stages' records on the wire: each kind back as it was, nothing else read."""

from __future__ import annotations

import pytest

from workers.core.partitioned.local import LocalTopology
from workers.core.partitioned.records import Moved, Routed, Version
from workers.errors import StateError
from workers.simulation.generator import simulate
from workers.state.codec import pack
from workers.state.wire import (
    BUNDLE_BYTES,
    decode,
    decode_numbered,
    encode,
    encode_per_partition,
)
from workers.testing import small_stream_config


def _records() -> list[object]:
    """Every record the stages of a small stream sent each other."""
    topology = LocalTopology(small_stream_config(), 3)
    sent: list[object] = []
    take = topology.router.take

    def spy() -> list[tuple[int, int, object]]:
        records = take()
        sent.extend(r for _, _, r in records)
        return records  # type: ignore[return-value]

    topology.router.take = spy  # type: ignore[method-assign]
    for task in topology.tasks:
        run = task.run

        def spied(task=task, run=run) -> None:  # type: ignore[no-untyped-def]
            run()
            sent.extend(m for _, m in task.to_tasks)
            sent.extend(task.to_trainer)

        task.run = spied  # type: ignore[method-assign]
    versions = topology.trainer.take_versions

    def spied_versions() -> list[Version]:
        out = versions()
        sent.extend(out)
        return out

    topology.trainer.take_versions = spied_versions  # type: ignore[method-assign]
    topology.feed_many(simulate(300, seed=3, days=3)[0])
    topology.flush()
    return sent


def test_every_kind_of_record_comes_back_as_it_was() -> None:
    records = _records()
    kinds = {type(r).__name__ for r in records}
    assert kinds == {"Routed", "Move", "Tick", "Moved", "Sample", "Mark", "Version"}
    assert any(isinstance(r, Version) and r.snapshots for r in records)
    for record in records:
        [value] = encode([record])  # type: ignore[list-item]
        [back] = decode(value)
        assert type(back) is type(record)
        assert encode([back]) == [value]
        if isinstance(record, Routed):
            assert isinstance(back, Routed)
            assert (back.tp.event_id, back.tp.ts, back.tp.identity, back.tp.data) == (
                record.tp.event_id, record.tp.ts, record.tp.identity, record.tp.data)
            assert back.absorbed == record.absorbed
            assert back.tp.raw == b""  # the bytes it came in stay with the identity stage
        elif isinstance(record, Moved):
            assert isinstance(back, Moved) and back[:2] == record[:2]
        elif not isinstance(record, Version):
            assert back == record


def test_a_bundle_keeps_its_records_in_order_and_is_cut_before_it_grows_large() -> None:
    records = _records()
    bundles = encode(records)  # type: ignore[arg-type]
    assert len(bundles) > 1
    assert all(len(value) < BUNDLE_BYTES + 65536 for value in bundles)
    back = [r for value in bundles for r in decode(value)]
    assert [encode([r]) for r in back] == [encode([r]) for r in records]  # type: ignore[list-item]


@pytest.mark.parametrize("value", [None, b"", pack(["Nothing", 1]), pack({"a": 1}),
                                   pack([pack(["Tick"])]), pack([pack(["Move", "p_1"])]),
                                   pack([pack(["Nothing", 1])]), pack([1]),
                                   pack([pack(["Tick", 1]), b"junk"])])
def test_anything_else_is_a_state_error(value: bytes | None) -> None:
    with pytest.raises(StateError):
        decode(value)


def test_the_identity_stages_bundles_carry_the_number_of_their_first_record() -> None:
    """Numbered per partition and on across the bundles a large batch is cut into; a
    bundle of a task (moved states) or of an earlier version has none."""
    records = [r for r in _records() if isinstance(r, Routed)]
    sent = [(p, n, r) for p in (0, 1) for n, r in enumerate(records, start=100 * p)]
    bundles = encode_per_partition(sent)  # type: ignore[arg-type]
    assert len([b for p, b in bundles if p == 0]) > 1  # cut: a large batch
    for p in (0, 1):
        numbered = [decode_numbered(value) for q, value in bundles if q == p]
        firsts = [first for first, _ in numbered]
        sizes = [len(items) for _, items in numbered]
        assert firsts == [100 * p + sum(sizes[:i]) for i in range(len(sizes))]
        assert sum(sizes) == len(records)
        assert [encode([r]) for _, items in numbered for r in items] == [
            encode([r]) for r in records]
    [plain] = encode(records[:3])  # type: ignore[arg-type]
    assert decode_numbered(plain)[0] is None and len(decode(plain)) == 3
