"""Pipeline checkpoints in Kafka, so a worker that dies is replaced without losing state.

A checkpoint is the pipeline's state (:func:`workers.state.saved.dump_state`) taken
between two batches of the sequenced stream, with the offset it covers. The
bytes go to ``<app>-checkpoint-chunks`` in pieces below Kafka's default message
size limit; then a manifest naming those pieces' offsets goes to the compacted
``<app>-checkpoints`` under one key. The manifest is written last, so a crash
half-way through a checkpoint leaves the previous one in force.

Restoring = the newest manifest's state + replaying the sequenced stream from
its offset. Because the core is deterministic and the sequenced stream has one
partition (one order), the replay recomputes exactly the outputs that were lost
or already sent, with the same ``event_id`` s.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import orjson

from workers.config import Config
from workers.errors import StateError
from workers.io.kafka import chunk_topic, manifest_topic

CHUNK_BYTES = 900_000  # under the broker's default 1 MiB message limit, with headroom
_MANIFEST_KEY = b"latest"
# reading a topic to its end: stop waiting for records after this long without any
_READ_IDLE_MS = 1000


class Manifest(TypedDict):
    """Names one checkpoint: the chunks' offsets, and the sequenced offset it covers."""

    next_offset: int  # the first sequenced offset the state has not seen
    chunks: list[int]
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Checkpoint:
    state: bytes
    next_offset: int  # the first sequenced offset the state has not seen


class CheckpointStore:
    """Writes and reads checkpoints with the worker's aiokafka clients."""

    def __init__(self, config: Config, producer: Any, client_options: dict[str, Any]) -> None:
        self.config = config
        self.producer = producer
        self.client_options = client_options

    async def save(self, state: bytes, next_offset: int) -> None:
        chunks = [state[i:i + CHUNK_BYTES] for i in range(0, len(state), CHUNK_BYTES)]
        topic = chunk_topic(self.config)
        sent = [await self.producer.send(topic, value=chunk) for chunk in chunks]
        offsets = [meta.offset for meta in await asyncio.gather(*sent)]
        manifest: Manifest = {"next_offset": next_offset,
                              "chunks": offsets, "bytes": len(state),
                              "sha256": hashlib.sha256(state).hexdigest()}
        await (await self.producer.send(manifest_topic(self.config), key=_MANIFEST_KEY,
                                        value=orjson.dumps(manifest)))

    async def newest(self) -> Manifest | None:
        """The newest manifest (small): what :meth:`load` would load, without loading it."""
        manifests = await self._read(manifest_topic(self.config), 0)
        if not manifests or manifests[-1].value is None:  # none, or deleted (a tombstone)
            return None
        try:
            return cast(Manifest, orjson.loads(manifests[-1].value))
        except orjson.JSONDecodeError:
            raise StateError(f"the newest record on {manifest_topic(self.config)} is no"
                             " checkpoint manifest; delete it (a tombstone) to start over"
                             ) from None

    async def load(self, manifest: Manifest) -> Checkpoint:
        """The checkpoint a manifest from :meth:`newest` names."""
        offsets = manifest["chunks"]
        records = await self._read(chunk_topic(self.config), offsets[0],
                                   until=offsets[-1] + 1)
        by_offset = {r.offset: r.value for r in records}
        state = b"".join(by_offset[o] for o in offsets)
        if hashlib.sha256(state).hexdigest() != manifest["sha256"]:
            raise StateError(f"the checkpoint chunks on {chunk_topic(self.config)} do not"
                             " match their manifest (deleted by retention?)")
        return Checkpoint(state, manifest["next_offset"])

    async def _read(self, topic: str, start: int, until: int | None = None) -> list[Any]:
        """Records of partition 0 from ``start`` to ``until`` (default: the current end)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.config.kafka.bootstrap_servers,
                                    enable_auto_commit=False, group_id=None,
                                    max_partition_fetch_bytes=2 * CHUNK_BYTES,
                                    **self.client_options)
        await consumer.start()
        try:
            consumer.assign([tp])
            end = until if until is not None else (await consumer.end_offsets([tp]))[tp]
            if end <= start:
                return []
            consumer.seek(tp, start)
            out: list[Any] = []
            while not out or out[-1].offset < end - 1:
                batch = await consumer.getmany(tp, timeout_ms=_READ_IDLE_MS)
                if not batch:
                    break  # compacted away or truncated: return what there is
                out.extend(r for r in batch[tp] if r.offset < end)
            return out
        finally:
            await consumer.stop()
