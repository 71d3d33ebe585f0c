"""Keys changed since a changelog last took them, and the no-op stand-in when none will.

``run`` and ``replay`` keep no changelog: a set of every profile a stream changed would
hold each profile id ever seen (absorbed ones included) until the end, ~150-250 B per
profile. A store starts with :class:`Untracked`; a changelog's
:class:`~workers.state.changelog.StateWriter` swaps in a real ``set`` when it begins
taking changes (its first call writes everything, so nothing before it is missed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Untracked(set[Any]):
    """A set that keeps nothing added to it: changes nobody will commit."""

    __slots__ = ()

    def add(self, item: Any) -> None:
        """Nothing to remember."""

    def update(self, *others: Iterable[Any]) -> None:
        """Nothing to remember."""
