"""One profile partition: a merge across partitions does not stop the survivor's events;
the absorbed state is merged at the next tick every partition is sent."""

from __future__ import annotations

import itertools

import orjson

from workers.config import load
from workers.core.intake import Intake
from workers.core.partitioned.profile_task import ProfileTask
from workers.core.partitioned.records import Move, Moved, Routed, Tick
from workers.core.partitioned.router import partition_of
from workers.core.touchpoints import Touchpoint, format_time

CONFIG = load()
EPOCH = CONFIG.segmentation.version_epoch_ticks
T0 = 1_767_600_000.0


def _event(n: int, user: str) -> Touchpoint:
    [tp] = Intake(CONFIG).read(orjson.dumps({
        "event_id": f"e-{n}", "occurred_at": format_time(T0 + n), "type": "page_view",
        "identity": {"user_id": user}}))
    assert isinstance(tp, Touchpoint)
    return tp


def _two_partitions() -> tuple[str, str]:
    """A survivor held by partition 0 and a profile of partition 1 it absorbs."""
    ids = (f"p-{i}" for i in itertools.count())
    survivor = next(p for p in ids if partition_of(p, 2) == 0)
    absorbed = next(p for p in ids if partition_of(p, 2) == 1)
    return survivor, absorbed


def test_the_survivor_goes_on_and_the_absorbed_state_is_merged_at_a_due_tick() -> None:
    survivor, absorbed = _two_partitions()
    home, away = ProfileTask(CONFIG, 0, 2), ProfileTask(CONFIG, 1, 2)
    for task in (home, away):
        task.learned_through = 10**6  # no model wait in this test
    for n in range(3):  # the absorbed profile's own three events, on its partition
        away.offer(Routed(absorbed, _event(n, "a"), (), None))
    away.run()
    home.offer(Routed(survivor, _event(3, "s"), (absorbed,), None))  # the merge
    home.offer(Routed(survivor, _event(4, "s"), (), None))
    home.offer(Tick(EPOCH + 1))  # not due: neither an epoch's first nor last tick
    home.offer(Tick(2 * EPOCH))  # due: the first of an epoch
    home.run()
    # the survivor's events and the tick in between went on without the absorbed state
    assert home.work.profiles[survivor].event_count == 2
    assert home.inbox[0] == Tick(2 * EPOCH) and "p-" in (home.waiting_for or "")
    away.offer(Move(absorbed, survivor))
    away.run()
    [(partition, moved)] = away.to_tasks
    assert partition == 0 and absorbed not in away.work.profiles
    home.offer_moved(moved)
    home.run()
    assert not home.inbox and home.work.profiles[survivor].event_count == 5


def test_a_profile_moved_away_first_takes_the_states_it_held_back_with_it() -> None:
    survivor, absorbed = _two_partitions()
    home = ProfileTask(CONFIG, 0, 2)
    home.learned_through = 10**6
    home.offer(Routed(survivor, _event(1, "s"), (absorbed,), None))
    home.offer(Move(survivor, "q-elsewhere"))  # the survivor is absorbed in turn
    home.run()
    assert home.inbox and isinstance(home.inbox[0], Move)  # waits for what it holds back
    away = ProfileTask(CONFIG, 1, 2)
    away.offer(Routed(absorbed, _event(0, "a"), (), None))
    away.offer(Move(absorbed, survivor))
    away.run()
    home.offer_moved(away.to_tasks[0][1])
    home.run()
    [(_, sent)] = home.to_tasks
    assert isinstance(sent, Moved) and sent.state is not None
    assert sent.state.event_count == 2 and not home.held


def test_each_number_of_the_stage_is_taken_once_and_a_commit_notes_the_first_unapplied() -> None:
    """A stage replaying from an older commit sends numbers the task has: refused. The
    state notes the number of the first record still waiting, offered again after a
    restart."""
    task = ProfileTask(CONFIG, 0, 1)
    waits = Tick(100 * EPOCH)  # waits for the trainer's epochs: stays in the inbox
    for number, record in enumerate([Tick(0), Tick(1), Tick(2), waits, Tick(100 * EPOCH + 1)]):
        assert task.offer(record, number)
    task.run()
    assert list(task.inbox) == [waits, Tick(100 * EPOCH + 1)]
    assert task.meta_state()["next_number"] == 3
    assert not task.offer(Tick(1), 1) and not task.offer(waits, 3)  # sent again: refused
    assert task.offer(Tick(100 * EPOCH + 2), 5)
    restarted = ProfileTask(CONFIG, 0, 1)
    restarted.load_meta(task.meta_state())
    assert not restarted.offer(Tick(2), 2)
    assert restarted.offer(waits, 3)  # read again from the first record not applied
