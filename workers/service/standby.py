"""The standby role: while another worker holds a state, keep a copy of its changelogs.

Like a faust standby replica: the copy follows the changelog topics as the
owner commits, so a takeover reads only the changes since the last refresh
and then replays the sequenced records after the state's offset
(``state.standby: true``; it costs the memory of the state's records and the
CPU to read each commit). The same holds for every profile partition this worker
does not hold: the consumer group's
assignor does not know standbys, so whichever worker is given a partition has
its copy.
"""

from __future__ import annotations

import asyncio

from workers.config import Config
from workers.service.changelog import ChangelogCopy
from workers.service.clients import Clients
from workers.service.state import WorkerState
from workers.service.tasks import task_copy

# a standby reads the owner's newest commits this often: each read is what changed
_POLL = 2.0


class StandbyReplica:
    """Follows the changelogs while this worker is not the owner."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState) -> None:
        self.config = config
        self.clients = clients
        self.state = state

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await asyncio.sleep(_POLL)
            await self.refresh()

    async def refresh(self) -> None:
        """Brings every copy up to date. A state this worker handed over at a revocation
        and keeps is not copied until the assignment: it usually comes straight back, and
        reading its changelogs whole (seconds at a million profiles, on the loop the other
        roles share) would then be wasted."""
        state = self.state
        await self._follow_partitions()
        if state.owner or state.owner_kept:
            return
        copy = state.standby or ChangelogCopy(self.config, self.clients.security)
        await copy.catch_up()
        if not state.owner:  # the owner takes the copy over when it is assigned
            state.standby = copy

    async def _follow_partitions(self) -> None:
        """A copy of each profile partition held elsewhere, brought up to date; a partition
        taken here takes its copy (:meth:`ProfileTasks._take`)."""
        state = self.state
        copies = state.task_standbys
        for p in range(self.config.kafka.partitions):
            if p in state.task_partitions:
                copies.pop(p, None)
                continue
            if p in state.partitions_kept:
                continue
            copy = copies.get(p) or task_copy(self.config, self.clients.security, p)
            await copy.catch_up()
            if p not in state.task_partitions:
                copies[p] = copy
