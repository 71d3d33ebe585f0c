"""The run a profile-guided build of the compiled modules is trained on.

``PERSONA_STREAM_PGO=1`` asks ``setup.py`` for such a build: GCC builds the modules of
``workers/compiled.py`` instrumented, this module runs on them (``python -m
workers.pgo_workload``), and GCC builds them again laid out by its counts: what ran
here sits together and branches the way it went, which spares the instruction cache
most (BENCHMARKS.md, "profile-guided"). Code this run never reached is built as a plain
build builds it (``-fprofile-partial-training``), so input it does not hold loses
nothing; outputs are the same bytes either way (it changes layout, not arithmetic).

It runs what a deployment runs, at about its mix: a simulated stream through the
in-process pipeline (``run``, ``replay``), the same people as Segment calls, the Kafka
worker's steps (the routers' bundles, the identity stage's records encoded for the
profile partitions), the partitioned stages in one process, and state records packed
and read back. It needs only the package and its dependencies: it runs in the build.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import orjson

from workers.config import Config, load
from workers.core.identity_stage import IdentityStage
from workers.core.intake import Intake
from workers.core.partitioned.local import LocalTopology
from workers.core.partitioned.router import PartitionRouter
from workers.core.pipeline import Pipeline
from workers.service.batch import bundles, process_batch
from workers.service.clients import BATCH
from workers.simulation.as_segment import to_segment
from workers.simulation.generator import simulate
from workers.state.store import decode, encode
from workers.state.wire import encode_per_partition

#: people simulated: enough events (about 25 a person) for the models to warm up, learn,
#: check and publish versions, as a deployment's run does all the time
PEOPLE = 1_200
SEED = 11
PARTITIONS = 3


class _Record:
    """An input record as the worker's consumer hands it over (value, offset)."""

    __slots__ = ("key", "offset", "value")

    def __init__(self, value: bytes, offset: int, key: bytes | None = None) -> None:
        self.key, self.offset, self.value = key, offset, value


def in_process(config: Config, lines: list[bytes]) -> Pipeline:
    """``run`` and ``replay``: every line through the pipeline, then the flush."""
    pipeline = Pipeline(config)
    feed = pipeline.feed
    for line in lines:
        feed(line)
    pipeline.flush()
    return pipeline


def segment_calls(lines: list[bytes]) -> Iterator[bytes]:
    """The valid touchpoints among ``lines`` written as the Segment calls a tracker sends."""
    for line in lines:
        try:
            yield orjson.dumps(to_segment(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue  # a malformed line of the stream: no call to write


def worker_steps(config: Config, lines: list[bytes]) -> None:
    """The Kafka worker's steps between reads and writes: a router's bundles, the identity
    stage over them in the owner's batches, its records encoded per profile partition."""
    intake = Intake(config)
    sequenced: list[_Record] = []
    for at in range(0, len(lines), BATCH):
        batch = [_Record(line, at + i) for i, line in enumerate(lines[at:at + BATCH])]
        for key, value in bundles("touchpoints", 0, batch, intake):
            sequenced.append(_Record(value, len(sequenced), key))
    router = PartitionRouter(PARTITIONS, config.segmentation.version_epoch_ticks)
    stage = IdentityStage(config, router.attach)
    for at in range(0, len(sequenced), 8):
        process_batch(stage, sequenced[at:at + 8])
        encode_per_partition(router.take())
    stage.flush()
    encode_per_partition(router.take())


def partitioned(config: Config, lines: list[bytes]) -> None:
    """The identity stage, the profile partitions and the trainer, in one process."""
    topology = LocalTopology(config, PARTITIONS)
    topology.feed_many(lines)
    topology.flush()


def state_records(pipeline: Pipeline) -> None:
    """Every profile's state packed and read back, as a changelog commit and a restore do."""
    store = pipeline.profiles
    for pid in sorted(store):
        decode(encode(store[pid]))


def main() -> None:
    start = time.perf_counter()
    config = load()
    lines, _, _ = simulate(PEOPLE, SEED)
    pipeline = in_process(config, lines)
    state_records(pipeline)
    segment = dataclasses.replace(config, intake=dataclasses.replace(config.intake,
                                                                      format="segment"))
    in_process(segment, list(segment_calls(lines)))
    worker_steps(config, lines)
    partitioned(config, lines)
    print(f"persona-stream: profile-guided build trained on {len(lines):,} events "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
