"""A minimal Quix Streams job, timed by `bench.py peer`.

`bench.py peer` times it as `bench.py spread` times persona-stream's workers, so that
the two 1-to-2-process ratios come from one harness.

    python benchmarks/peer_job.py --bootstrap HOST:PORT --group G --input IN --output OUT \
        --state-dir DIR

Per input record (a JSON value keyed by a string): Quix's JSON deserializer, a per-key
counter in Quix's RocksDB state (a stateful apply), one small JSON record to the output
topic. It prints ``ASSIGNED p,q`` / ``REVOKED p,q`` (input partitions) when its share
changes, ``PROCESSED n`` when it stops (SIGTERM), for the harness to read.
Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

try:
    import orjson
    from confluent_kafka import Consumer, TopicPartition
    from quixstreams import Application
    from quixstreams.models.serializers.json import JSONDeserializer
    from quixstreams.state import State
except ImportError:
    sys.exit("peer_job: quixstreams is not installed; pip install -e '.[bench]'")


def lenient_loads(value: bytes) -> Any:
    """orjson, as Quix's own JSON deserializer uses, but None for a malformed value: the
    bench's stream holds a few, and the job must still emit one output per input for the
    harness to know when all are processed (Quix would raise, or skip it with no trace)."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def announce(word: str, input_topic: str, partitions: list[TopicPartition]) -> None:
    """One line for the harness: which input partitions this process gained or gave up."""
    held = ",".join(str(tp.partition) for tp in partitions if tp.topic == input_topic)
    print(word, held, flush=True)


class AnnouncingApplication(Application):
    """An Application that says when it holds or gives up input partitions.

    Quix 3.28 has no public rebalance callback (Application takes error and
    message-processed callbacks only), so this overrides the private methods it passes to
    ``consumer.subscribe`` in ``run()``; they may change in another Quix release. A
    partition counts as held once ``_on_assign`` returns, since that is where Quix opens
    its RocksDB store (which took seconds after a rebalance in the prototype's runs)."""

    def __init__(self, input_topic: str, **options: Any) -> None:
        super().__init__(**options)
        self.input_topic = input_topic

    def _on_assign(self, consumer: Consumer, topic_partitions: list[TopicPartition]) -> None:
        super()._on_assign(consumer, topic_partitions)
        if topic_partitions:  # librdkafka also calls it with none
            announce("ASSIGNED", self.input_topic, topic_partitions)

    def _on_revoke(self, consumer: Consumer, topic_partitions: list[TopicPartition]) -> None:
        announce("REVOKED", self.input_topic, topic_partitions)  # before: no longer ours
        super()._on_revoke(consumer, topic_partitions)

    def _on_lost(self, consumer: Consumer, topic_partitions: list[TopicPartition]) -> None:
        announce("REVOKED", self.input_topic, topic_partitions)
        super()._on_lost(consumer, topic_partitions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)

    # Quix's defaults otherwise (at-least-once, a checkpoint every 5 s, changelog topics):
    # the job as a Quix user would write it
    app = AnnouncingApplication(
        args.input, broker_address=args.bootstrap, consumer_group=args.group,
        auto_offset_reset="earliest", state_dir=args.state_dir, loglevel=args.loglevel)
    source = app.topic(args.input, key_deserializer="str",
                       value_deserializer=JSONDeserializer(loads=lenient_loads))
    sink = app.topic(args.output, key_serializer="str", value_serializer="json")
    processed = 0

    def count(value: dict[str, Any] | None, state: State) -> dict[str, Any]:
        """The per-key counter (Quix prefixes state keys with the record's key)."""
        nonlocal processed
        n = state.get("n", 0) + 1
        state.set("n", n)
        processed += 1
        if not isinstance(value, dict):
            return {"invalid": True, "n": n}
        return {"event_id": value.get("event_id"), "n": n}

    app.dataframe(source).apply(count, stateful=True).to_topic(sink)
    app.run()  # until SIGTERM, which Quix handles: a last checkpoint, then it returns
    print("PROCESSED", processed, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
