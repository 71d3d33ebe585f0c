"""What one worker process knows: one small object its roles share and its pages read.

The roles (:mod:`~workers.service.router`, :mod:`~workers.service.owner`,
:mod:`~workers.service.standby`, :mod:`~workers.service.cards`) each write their
own fields; the web pages and the tests only read (``app.worker_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.core.identity_stage import IdentityStage
from workers.core.partitioned.profile_task import ProfileTask
from workers.core.records import PersonaCard
from workers.service.changelog import ChangelogCopy


@dataclass
class BrokerHealth:
    """What the broker probe (:mod:`workers.service.health`) found, since when (wall clock)."""

    reachable: bool = True
    since: float = 0.0
    reason: str | None = None


@dataclass
class WorkerState:
    """What one worker process knows; the web pages and the tests read it."""

    # owner
    owner: bool = False
    stage: IdentityStage | None = None  # the identity stage, while this worker owns it
    restored_from: int | None = None  # sequenced offset the owner's state started at
    next_offset: int = 0  # first sequenced offset the owner's state has not seen
    committed_offset: int = 0  # the same, for the state last committed to the changelogs
    last_input: float = 0.0  # monotonic clock of the last batch, for the idle flush
    flush_sent: bool = True
    commits: int = 0
    took_over_from_standby: bool = False
    # the owner's state, handed over at a revocation and given straight back: not restored
    kept_over_rebalance: bool = False
    # states handed over at a revocation and kept until the next assignment says whether
    # they come back: the standby does not copy them meanwhile
    owner_kept: bool = False
    partitions_kept: frozenset[int] = frozenset()
    # profile partitions and trainer
    task_partitions: list[int] = field(default_factory=list)
    tasks: dict[int, ProfileTask] = field(default_factory=dict)  # the ones held, by partition
    tasks_caught_up: bool | None = None  # every record of the partitions held applied
    tasks_waiting: int = 0  # records the tasks hold, waiting for a state or a version
    tasks_waiting_for: dict[int, str | None] = field(default_factory=dict)  # by partition
    tasks_read_to: dict[int, int] = field(default_factory=dict)  # input offset, by partition
    task_commits: int = 0
    tasks_from_standby: list[int] = field(default_factory=list)  # taken from a standby copy
    tasks_kept: list[int] = field(default_factory=list)  # given straight back: not restored
    trainer: bool = False
    trainer_learned_through: int = -1
    # router
    routed: int = 0
    router_assigned: bool = False
    input_partitions: list[int] = field(default_factory=list)
    # standby: a non-owner's copy of the owner's changelogs, for a quick takeover, and a
    # copy of each profile partition this worker does not hold
    standby: ChangelogCopy | None = None
    task_standbys: dict[int, ChangelogCopy] = field(default_factory=dict)
    # every worker: the owner's persona cards, by segment id
    cards: dict[int, PersonaCard] = field(default_factory=dict)
    broker: BrokerHealth = field(default_factory=BrokerHealth)

    @property
    def model_version(self) -> int:
        """The newest model this worker knows, from the persona cards it follows."""
        return max((c["model_version"] for c in self.cards.values()), default=0)

    def current_cards(self) -> list[PersonaCard]:
        """The cards of the newest model version followed, by segment id."""
        version = max((c["model_version"] for c in self.cards.values()), default=0)
        return sorted((c for c in self.cards.values() if c["model_version"] == version),
                      key=lambda c: c["segment_id"])
