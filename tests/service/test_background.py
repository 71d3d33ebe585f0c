"""A role's commit in the background (workers.service.background): one at a time, and a
failure never lost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from workers.errors import BrokerError
from workers.service.background import BackgroundCommit


async def _refused() -> None:
    raise BrokerError("the broker refused the transaction")


def test_a_failed_commit_is_raised_at_the_next_step_and_blocks_later_commits() -> None:
    async def scenario() -> None:
        commits = BackgroundCommit("lost")
        commits.start(_refused())
        await asyncio.sleep(0)  # it ran and failed while the role went on
        with pytest.raises(BrokerError):
            await commits.check()
        assert commits.failed
        await commits.check()  # raised once; nothing under way now

    asyncio.run(scenario())


def test_check_does_not_wait_for_a_commit_under_way_and_settled_does() -> None:
    async def scenario() -> list[str]:
        done: list[str] = []
        go = asyncio.Event()

        async def commit() -> None:
            await go.wait()
            done.append("committed")

        commits = BackgroundCommit("lost")
        commits.start(commit())
        await commits.check()
        assert done == []  # still under way
        second = commit()
        with pytest.raises(AssertionError):
            commits.start(second)  # one at a time
        second.close()
        go.set()
        await commits.settled()
        return done

    assert asyncio.run(scenario()) == ["committed"]


def test_a_failure_while_letting_partitions_go_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> bool:
        commits = BackgroundCommit("the next holder replays")
        commits.start(_refused())
        await commits.settled(quiet=True)
        return commits.failed

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario())
    assert "the next holder replays" in caplog.text
