"""The standby role: while another worker owns the state, keep a copy of its changelogs.

Like a faust standby replica: the copy follows the changelog topics as the
owner commits, so a takeover reads only the changes since the last refresh
and then replays the sequenced records after the state's offset
(``state.standby: true``; it costs the memory of the state's records and the
CPU to read each commit).
"""

from __future__ import annotations

import asyncio

from workers.config import Config
from workers.service.changelog import ChangelogCopy
from workers.service.clients import Clients
from workers.service.state import WorkerState

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
            state = self.state
            if state.owner:
                continue
            copy = state.standby or ChangelogCopy(self.config, self.clients.security)
            await copy.catch_up()
            if not state.owner:  # the owner takes the copy over when it is assigned
                state.standby = copy
