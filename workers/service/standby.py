"""The standby role: while another worker owns the state, keep its newest checkpoint restored.

Like a faust standby replica: a takeover then starts from a state already in
memory and only replays the sequenced records after it (``state.standby: true``;
it costs a second copy of the state's memory and the CPU to restore each
checkpoint).
"""

from __future__ import annotations

import asyncio

from workers.config import Config
from workers.service.checkpoints import CheckpointStore
from workers.service.clients import Clients
from workers.service.logs import worker_log
from workers.service.state import RestoredCheckpoint, WorkerState
from workers.state.saved import restore_state

# a standby looks for a newer checkpoint this often (and at least twice per
# checkpoint interval): a manifest read is one small record
_POLL_MAX = 5.0


class StandbyReplica:
    """Follows the checkpoints while this worker is not the owner."""

    def __init__(self, config: Config, clients: Clients, state: WorkerState) -> None:
        self.config = config
        self.clients = clients
        self.state = state
        self.poll = min(_POLL_MAX, config.kafka.checkpoint_interval_seconds / 2)

    async def run(self, stopping: asyncio.Event) -> None:
        checkpoints = await self.clients.checkpoints()
        while not stopping.is_set():
            await asyncio.sleep(self.poll)
            if not self.state.owner:
                await self._refresh(checkpoints)

    async def _refresh(self, checkpoints: CheckpointStore) -> None:
        """Restore the newest checkpoint unless it is the one held (or this worker now owns)."""
        state = self.state
        manifest = await checkpoints.newest()
        held = state.standby
        if manifest is None or (held is not None and held.manifest == manifest):
            return
        saved = await checkpoints.load(manifest)
        if state.owner:
            return
        # unpickling is CPU work: a thread lets the router's loop go on meanwhile
        pipeline = await asyncio.to_thread(restore_state, saved.state, self.config,
                                           "the Kafka checkpoint")
        if not state.owner:
            state.standby = RestoredCheckpoint(manifest, pipeline)
            worker_log.info("standby state updated",
                            extra={"next_offset": manifest["next_offset"]})
