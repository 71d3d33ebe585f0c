"""persona-stream benchmarks: each figure measured next to a baseline in the same run.

    python benchmarks/bench.py [intake] [pipeline] [quality]   (all when none given)

Writes benchmarks/results/<name>.json and rewrites the results table in
BENCHMARKS.md. Never part of the test suite: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers import collector  # noqa: E402
from workers.compiled import MODULES, PURE_ENV, compiled  # noqa: E402
from workers.config import load  # noqa: E402
from workers.core.dedup import Deduplicator  # noqa: E402
from workers.core.identity import IdentityGraph, IdentityRules  # noqa: E402
from workers.core.identity_stage import IdentityStage  # noqa: E402
from workers.core.intake import Intake, Rejected  # noqa: E402
from workers.core.partitioned.router import PartitionRouter  # noqa: E402
from workers.core.pipeline import Pipeline  # noqa: E402
from workers.core.touchpoints import IntakeLimits, TouchpointParser  # noqa: E402
from workers.errors import InvalidEvent  # noqa: E402
from workers.service.batch import bundles, process_batch  # noqa: E402
from workers.service.clients import BATCH  # noqa: E402
from workers.simulation.generator import VARIANTS, write_stream  # noqa: E402
from workers.simulation.quality import (  # noqa: E402
    batch_kmeans_ari,
    evaluate_run,
    stitching,
)
from workers.state.wire import encode_per_partition  # noqa: E402
from workers.testing import (  # noqa: E402
    BOOTSTRAP,
    Settings,
    WorkerProcess,
    config_from,
    free_port,
    fresh_settings,
    identity_key,
    pipeline_over,
    produce,
    topic_records,
    unique_names,
    worker_status,
    write_config,
)

DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
BIG_PROFILES = 40_000  # about 1M events
QUALITY_PROFILES = 3_000
COMPILED_LINES = 400_000
HOTSPOTS_WARM, HOTSPOTS_LINES = 300_000, 200_000


def stream(profiles: int, seed: int) -> tuple[Path, Path]:
    """The simulate file (cached: generating 1M events takes ~20 s)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path, truth = DATA / f"sim-{profiles}-{seed}.jsonl", DATA / f"sim-{profiles}-{seed}.truth.json"
    if not path.exists() or not truth.exists():
        write_stream(str(path), profiles=profiles, seed=seed, truth=str(truth))
    return path, truth


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def parse_only(lines: list[bytes], clock: Callable[[], float] = time.perf_counter) -> float:
    """Baseline: decode every line with orjson, nothing else."""
    loads = orjson.loads
    start = clock()
    for line in lines:
        with contextlib.suppress(orjson.JSONDecodeError):
            loads(line)
    return clock() - start


def _in_process_seconds(lines: list[bytes]) -> float:
    """The in-process pipeline over ``lines``: the reference every Kafka figure is set against."""
    start = time.perf_counter()
    pipeline_over(lines)
    return time.perf_counter() - start


def bench_intake() -> dict[str, Any]:
    """Validation + de-duplication + identity resolution, per event, on ~1M events; and the
    same with identifiers pseudonymised at intake (identity.pseudonymise)."""
    path, _ = stream(BIG_PROFILES, 7)
    lines = lines_of(path)
    baseline = parse_only(lines)
    # off and on alternately, best of two each: a busy machine slows one pass, not a side
    runs = [_intake_pass(lines, pseudonymise=on) for on in (False, True, False, True)]
    seconds, hashed_seconds = min(runs[0][0], runs[2][0]), min(runs[1][0], runs[3][0])
    profiles = runs[0][1]
    assert all(found == profiles for _, found in runs)  # the same groups, on hashed values
    return {"events": len(lines), "seconds": round(seconds, 2),
            "events_per_second": round(len(lines) / seconds),
            "parse_only_per_second": round(len(lines) / baseline),
            "ratio_to_parse_only": round(baseline / seconds, 3), "profiles": profiles,
            "pseudonymised_events_per_second": round(len(lines) / hashed_seconds),
            "pseudonymised_us_per_event_added": round(
                (hashed_seconds - seconds) / len(lines) * 1e6, 2)}


def _intake_pass(lines: list[bytes], pseudonymise: bool) -> tuple[float, int]:
    """One timed pass of the intake over ``lines``: seconds, and the profiles it made."""
    from workers.core.privacy import Pseudonymiser

    config = load()
    parser = TouchpointParser(IntakeLimits.from_config(config))
    dedup = Deduplicator(config.intake.dedup_window_seconds)
    ident = config.identity
    graph = IdentityGraph(IdentityRules.from_config(ident.limits, ident.blocklist_values,
                                                    ident.blocklist_patterns))
    hashing = Pseudonymiser(b"a benchmark key of 32 characters", graph) if pseudonymise else None
    start = time.perf_counter()
    newest = 0.0
    for line in lines:
        try:
            tp = parser.parse(line)
        except InvalidEvent:
            continue
        if hashing is not None:  # as Pipeline.accept does
            tp = hashing.event(tp)
        if dedup.seen(tp.event_id, tp.ts):
            continue
        if tp.ts > newest:
            newest = tp.ts
            dedup.expire(newest)
        graph.resolve(tp.identity)
    return time.perf_counter() - start, len(graph)


#: lines per slice of ``bench_pipeline``: the pipeline and parse-only take turns
PIPELINE_SLICE = 50_000


def bench_pipeline() -> dict[str, Any]:
    """The whole in-process pipeline (what `run` does, minus file writing) vs parse-only.

    The two take turns slice by slice over the stream (parse-only decodes a slice, then
    the pipeline reads it on), each timed in CPU time: a busy minute on this shared
    machine falls on both alike, and time spent waiting for the CPU counts for neither.
    Measured once before the pipeline in wall time, the ratio swung from 0.10x to 0.15x
    between runs (BENCHMARKS.md, session 30)."""
    path, _ = stream(BIG_PROFILES, 7)
    lines = lines_of(path)
    pipeline = Pipeline(load())
    feed = pipeline.feed
    baseline = seconds = wall = 0.0
    outputs = 0
    for at in range(0, len(lines), PIPELINE_SLICE):
        part = lines[at:at + PIPELINE_SLICE]
        baseline += parse_only(part, clock=time.process_time)
        start, start_wall = time.process_time(), time.perf_counter()
        for line in part:
            outputs += len(feed(line))
        seconds += time.process_time() - start
        wall += time.perf_counter() - start_wall
    start, start_wall = time.process_time(), time.perf_counter()
    outputs += len(pipeline.flush())
    seconds += time.process_time() - start
    wall += time.perf_counter() - start_wall
    return {"events": len(lines), "seconds": round(seconds, 2), "wall_seconds": round(wall, 2),
            "events_per_second": round(len(lines) / seconds),
            "parse_only_per_second": round(len(lines) / baseline),
            "ratio_to_parse_only": round(baseline / seconds, 3), "outputs": outputs,
            "profiles": len(pipeline.profiles)}


class _Sequenced(NamedTuple):
    """A sequenced record as the owner reads it."""

    key: bytes | None
    value: bytes
    offset: int


class _Input(NamedTuple):
    value: bytes
    offset: int


def bench_identity() -> dict[str, Any]:
    """The identity stage alone (de-dup, event-time order,
    identity decisions, records for 6 profile partitions encoded as the worker sends
    them) fed the bundles routers write
    (the events read where they enter: formats, validation), next to the routers' reading
    and the whole pipeline on the same events, alternating, best of 3 each (CPU time)."""
    path, _ = stream(BIG_PROFILES, 7)
    lines = lines_of(path)[:300_000]
    config = load()
    best = {"read": math.inf, "stage": math.inf, "pipeline": math.inf}
    for _ in range(3):
        intake = Intake(config)
        start = time.process_time()
        sequenced: list[_Sequenced] = []
        for at in range(0, len(lines), BATCH):  # a router's batches of one input partition
            batch = [_Input(line, at + i) for i, line in enumerate(lines[at:at + BATCH])]
            for key, value in bundles("touchpoints", 0, batch, intake):
                sequenced.append(_Sequenced(key, value, len(sequenced)))
        best["read"] = min(best["read"], time.process_time() - start)
        router = PartitionRouter(6, config.segmentation.version_epoch_ticks)
        stage = IdentityStage(config, router.attach)
        start = time.process_time()
        for at in range(0, len(sequenced), 8):  # the owner's batches
            process_batch(stage, sequenced[at:at + 8])
            encode_per_partition(router.take())  # as the worker sends them
        stage.flush()
        encode_per_partition(router.take())
        best["stage"] = min(best["stage"], time.process_time() - start)
        pipeline = Pipeline(config)
        start = time.process_time()
        for line in lines:
            pipeline.feed(line)
        pipeline.flush()
        best["pipeline"] = min(best["pipeline"], time.process_time() - start)
    return {"events": len(lines),
            "read_per_second": round(len(lines) / best["read"]),
            "stage_per_second": round(len(lines) / best["stage"]),
            "pipeline_per_second": round(len(lines) / best["pipeline"]),
            "stage_share_of_pipeline": round(best["stage"] / best["pipeline"], 3)}


QUALITY_SEEDS = (1, 2, 3)
QUALITY_VARIANT_PROFILES = 2_000


def _variant_stream(variant: str, seed: int) -> tuple[Path, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"sim-{variant}-{QUALITY_VARIANT_PROFILES}-{seed}.jsonl"
    truth = path.with_suffix(".truth.json")
    if not path.exists() or not truth.exists():
        write_stream(str(path), profiles=QUALITY_VARIANT_PROFILES, seed=seed, truth=str(truth),
                     variant=variant)  # type: ignore[arg-type]
    return path, truth


def bench_quality() -> dict[str, Any]:
    """Per simulate variant and seed: `run`, then `evaluate` against the truth, next to
    batch sklearn KMeans on the same final features; stitching on the default stream."""
    import dataclasses
    import tempfile

    from workers.io.drive import run_files

    path, truth_path = stream(QUALITY_PROFILES, 3)
    truth = json.loads(truth_path.read_bytes())
    config = load()
    pipeline = pipeline_over(lines_of(path), config)
    groups = [[f"{t}:{v}" for t, vs in pipeline.graph.identifiers(pid).items() for v in vs]
              for pid in pipeline.profiles]
    score = stitching(groups, truth)
    variants: dict[str, Any] = {}
    for variant in VARIANTS:
        runs = []
        for seed in QUALITY_SEEDS:
            source, truth_file = _variant_stream(variant, seed)
            truth = json.loads(truth_file.read_bytes())
            with tempfile.TemporaryDirectory() as out:
                run_files(config, [str(source)], out)
                figures = dataclasses.asdict(evaluate_run(out, truth))
                figures["ari_batch_sklearn_kmeans"] = round(
                    batch_kmeans_ari(out, truth, config), 4)
            runs.append({"seed": seed, **figures})
        variants[variant] = runs
    return {"stitching_precision": round(score.precision, 4),
            "stitching_recall": round(score.recall, 4),
            "profiles_per_stream": QUALITY_VARIANT_PROFILES, "variants": variants}


WORKER_EVENTS = 200_000


def _settings(tag: str, **sections: Any) -> Settings:
    """A bench run's configuration: fresh topics on the local broker (named after ``tag``
    and the time), pages on 127.0.0.1 at a free port, quiet worker logs."""
    return fresh_settings(unique_names(f"bench-{tag}-{int(time.time())}"), **sections,
                          metrics={"host": "127.0.0.1", "port": free_port(),
                                   "log_level": "WARNING"})


async def _bare_consume(topic: str, count: int) -> float:
    """Baseline: the same client library reads and decodes every record, nothing else."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = 0
    start = time.perf_counter()
    try:
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for record in records:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        orjson.loads(record.value)
                    seen += 1
    finally:
        await consumer.stop()
    return time.perf_counter() - start


async def _worker_run(config: Any, count: int) -> float:
    """Start a worker on a pre-filled topic; time until every record's outputs are produced."""
    import asyncio

    from workers.service.app import build_app, provision_topics

    provision_topics(config)
    app = build_app(config)
    start = time.perf_counter()
    await app.start()
    try:
        state = app.worker_state
        while True:
            stage = state.stage
            if (stage is not None and stage.stats.events_read >= count and not stage.held
                    and state.tasks_caught_up):
                break
            await asyncio.sleep(0.05)
        return time.perf_counter() - start
    finally:
        await app.stop()


def _worker_lines() -> list[bytes]:
    """The events every worker bench reads: the first WORKER_EVENTS of the big stream."""
    path, _ = stream(BIG_PROFILES, 7)
    return lines_of(path)[:WORKER_EVENTS]


def _prefilled(settings: Settings, lines: list[bytes]) -> Any:
    """The configuration of ``settings`` with its topics made (a 4-partition input among
    them) and its input holding ``lines``."""
    from workers.service.app import provision_topics

    config = config_from(settings)
    provision_topics(config)
    produce(config.kafka.input_topic, lines)
    return config


def bench_worker() -> dict[str, Any]:
    """One worker end to end vs in-process `run` vs a bare consumer, same events."""
    import asyncio

    lines = _worker_lines()
    config = _prefilled(_settings("worker"), lines)
    bare = asyncio.run(_bare_consume(config.kafka.input_topic, len(lines)))
    worker = asyncio.run(_worker_run(config, len(lines)))
    in_process = _in_process_seconds(lines)
    n = len(lines)
    return {"events": n, "worker_per_second": round(n / worker),
            "in_process_per_second": round(n / in_process),
            "bare_consumer_per_second": round(n / bare),
            "worker_to_in_process": round(in_process / worker, 3)}


def bench_replay() -> dict[str, Any]:
    """`replay` from a file and from a topic vs the in-process pipeline and parse-only."""
    import tempfile

    from workers.replay import ReplayRequest, run_replay

    path, _ = stream(QUALITY_PROFILES, 3)  # ~74k events: seconds per replay, rates are steady
    lines = lines_of(path)
    n = len(lines)
    baseline = parse_only(lines)
    in_process = _in_process_seconds(lines)
    config = _prefilled(_settings("replay"), lines)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_replay(config, ReplayRequest(files=[str(path)], out=f"{tmp}/file"))
        from_file = time.perf_counter() - start
        start = time.perf_counter()
        run_replay(config, ReplayRequest(topic=config.kafka.input_topic, out=f"{tmp}/topic"))
        from_topic = time.perf_counter() - start
    return {"events": n, "file_per_second": round(n / from_file),
            "topic_per_second": round(n / from_topic),
            "in_process_per_second": round(n / in_process),
            "parse_only_per_second": round(n / baseline),
            "topic_partitions": config.kafka.partitions}


LATENCY_RATES = (1_000, 5_000, 20_000)
LIVE_PROFILE = ROOT / "examples" / "live.yaml"
LATENCY_SECONDS = 15  # per rate: long enough for thousands of segment changes
# sent at the rate first and not counted: the first model version comes into force about
# 2 s after the first 100 profiles (the live profile), and the segment changes it releases
# at once, with the clients' first requests for each topic, are the worker's start, not
# its path (they took 0.5-1.6 s in the first 1-3 s of each run, 2026-12-01); their p99 is
# reported apart
LATENCY_WARMUP_SECONDS = 5
_STAMP = "\x00occurred_at\x00"  # where each event's send time goes


def _latency_at(rate: int, lines: list[bytes]) -> dict[str, Any]:
    """Produce at ``rate`` events/s stamped with the wall clock, keyed as README asks
    producers to; a worker process keeps up; event-time-to-emit of the segment changes
    it emits, from the records themselves, for events sent after the warm-up."""
    from confluent_kafka import Producer

    from workers.core.touchpoints import parse_time

    # the live profile users copy (examples/live.yaml); with epochs of 10 ticks instead of
    # its 4, p99 at 5,000/s was 244-297 ms against 204-227 (partitioned, two runs each,
    # alternated, 2026-11-30); a model after 100 profiles, so one is in force within
    # seconds of the start
    live = yaml.safe_load(LIVE_PROFILE.read_text(encoding="utf-8"))
    settings = _settings(f"lat{rate}", intake=live["intake"],
                         segmentation={**live["segmentation"], "warmup_profiles": 100})
    stamped = _stampable(lines)
    worker = WorkerProcess(_config_file(settings))
    try:
        _wait_ready(worker.port)  # every group joined, its state restored: the clock starts
        # librdkafka sends from a thread of its own: the records leave when produced, and
        # this process takes a few microseconds of the cores the worker uses per record
        client = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 1, "acks": "all"})
        topic = settings["kafka"]["input_topic"]
        start = time.time()
        measured = start + LATENCY_WARMUP_SECONDS
        sent = 0
        millisecond, stamp = -1, b""
        for key, head, tail in stamped:
            now = time.time()
            due = start + sent / rate
            if due > now + 0.001:  # a sleep a millisecond, not one per event: this process
                time.sleep(due - now)  # shares the worker's cores
                now = time.time()
            if now - measured > LATENCY_SECONDS:
                break
            if int(now * 1000) != millisecond:  # the time as sent, to the millisecond
                millisecond = int(now * 1000)
                stamp = datetime.fromtimestamp(millisecond / 1000, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.%f")[:-3].encode() + b"Z"
            client.produce(topic, head + stamp + tail if tail is not None else head, key)
            client.poll(0)
            sent += 1
        achieved = sent / (time.time() - start)
        client.flush(30)
        time.sleep(3)  # the last batches
    finally:
        worker.stop()
    lags: tuple[list[float], list[float]] = ([], [])
    for r in topic_records(settings["kafka"]["segment_changes_topic"]):
        if r["trigger_event_id"] is not None:
            occurred = parse_time(r["occurred_at"])
            lags[occurred >= measured].append(parse_time(r["emitted_at"]) - occurred)

    def pct(values: list[float], q: float) -> float:
        values.sort()
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1
                     ) if values else -1.0

    warmup, steady = lags
    return {"target_rate": rate, "achieved_rate": round(achieved), "changes": len(steady),
            "p50_ms": pct(steady, 0.5), "p99_ms": pct(steady, 0.99),
            "warmup_p99_ms": pct(warmup, 0.99)}


def _stampable(lines: list[bytes]) -> list[tuple[bytes | None, bytes, bytes | None]]:
    """Each line as its key and the bytes before and after its ``occurred_at`` value, so
    sending it costs a concatenation (a malformed line: its bytes, and None after)."""
    out: list[tuple[bytes | None, bytes, bytes | None]] = []
    marker = orjson.dumps(_STAMP)
    for key, line in _keyed(lines):
        try:
            event = orjson.loads(line)
            event["occurred_at"] = _STAMP
            head, tail = orjson.dumps(event).split(marker)
            out.append((key, head + b'"', b'"' + tail))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            out.append((key, line, None))  # malformed lines stay malformed
    return out


def _config_file(settings: Settings) -> Path:
    """``settings`` as a config file for worker processes (in a fresh temporary folder)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="persona-stream-bench-"))
    return write_config(folder / "config.yaml", settings)


def _groups_stable(application_id: str, members: int) -> bool:
    """Router and owner groups both stable with ``members`` members: no join pending."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        groups = admin.describe_groups([f"{application_id}.router", f"{application_id}.owner"])
    finally:
        admin.close()
    return all(g["group_state"] == "Stable" and len(g["members"]) == members
               for g in groups.values())


def _wait_ready(*ports: int, seconds: float = 60.0,
                application_id: str | None = None) -> list[dict[str, Any]]:
    """Until every worker on ``ports`` routes input partitions and holds profile
    partitions, every profile partition is held (there are as many as input partitions),
    exactly one worker makes the identity decisions and one trains (and, given
    ``application_id``, the router and owner groups are stable with one member per
    worker); the statuses then. Records produced before would wait for a group's join."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = [worker_status(port, timeout=2) for port in ports]
        if (all(s is not None and s["input_partitions"] and s["task_partitions"]
                for s in statuses)
                and sum(len(s["task_partitions"]) for s in statuses if s)
                == sum(len(s["input_partitions"]) for s in statuses if s)
                and sum(bool(s and s["owner"]) for s in statuses) == 1
                and sum(bool(s and s["trainer"]) for s in statuses) == 1
                and (application_id is None or _groups_stable(application_id, len(ports)))):
            return [s for s in statuses if s is not None]
        time.sleep(0.2)
    raise RuntimeError(f"the workers on ports {ports} did not become ready")


def bench_latency() -> dict[str, Any]:
    """One worker process at each rate."""
    path, _ = stream(BIG_PROFILES, 7)
    lines = lines_of(path)
    return {"runs": [_latency_at(rate, lines) for rate in LATENCY_RATES]}


SCALE_ORDER = (1, 2, 2, 1)  # worker counts, one run each: ABBA, so a drift hits both alike
SCALE_POLL = 0.1  # seconds between /status polls: each costs the owner a ListOffsets request
SPREAD_PARTITIONS = 6


def _spread_settled(statuses: list[dict[str, Any]], events: int) -> bool:
    """The owner read all ``events`` and every profile partition applied what it was sent."""
    owner = [s for s in statuses if s["owner"]]
    held = sorted(p for s in statuses for p in s["task_partitions"])
    return (len(owner) == 1 and (owner[0]["events_read"] or 0) >= events
            and bool(owner[0]["caught_up"]) and held == list(range(SPREAD_PARTITIONS))
            and all(s["tasks_caught_up"] for s in statuses if s["task_partitions"]))


def _spread_ready(statuses: list[dict[str, Any] | None]) -> bool:
    """Every worker holds its share of the input and profile partitions, one the owner's:
    until the group has taken the last worker in, the first may hold them all."""
    return (all(statuses) and any(s["owner"] for s in statuses if s)
            and sum(len(s["input_partitions"]) for s in statuses if s) == SPREAD_PARTITIONS
            and sum(len(s["task_partitions"]) for s in statuses if s) == SPREAD_PARTITIONS
            and all(s["input_partitions"] and s["task_partitions"] for s in statuses if s))


def _feed(topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> float:
    """Produce ``(key, value)`` records while the processes under test read them; the CPU
    seconds it took this process. confluent-kafka's producer (the ``bench`` extra):
    kafka-python's took about 25 us of CPU per record, a fifth of a core at the rates
    timed, on the two cores the processes under test share; librdkafka takes a few."""
    try:
        from confluent_kafka import Producer
    except ImportError:
        raise SystemExit("bench: confluent-kafka is not installed;"
                         " pip install -e '.[bench]'") from None
    client = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 20, "acks": "all",
                       "batch.size": 256 * 1024})
    used = time.process_time()
    for key, value in records:
        while True:
            try:
                client.produce(topic, value, key)
                break
            except BufferError:  # its queue is full: let it send
                client.poll(0.05)
        client.poll(0)
    if client.flush(120):
        raise RuntimeError(f"records not acknowledged by the broker on {topic}")
    return time.process_time() - used


def _keyed(lines: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    """Each line keyed by its first identifier, as README asks producers to key."""
    return [(identity_key(line), line) for line in lines]


def _spread_run(workers: int, lines: list[bytes]) -> dict[str, Any]:
    """``workers`` processes: once every one holds its
    share of the partitions (an empty input, so no record is read before), ``lines`` are
    produced and the clock runs until every profile partition applied every record; the
    events each worker's profile partitions applied (the work split)."""
    from workers.service.app import provision_topics

    settings = _settings(f"spread{workers}",
                         kafka={"partitions": SPREAD_PARTITIONS})
    config = config_from(settings)
    provision_topics(config)
    config_file = _config_file(settings)
    procs = [WorkerProcess(config_file, instance_id=f"s{i}", log_dir=config_file.parent)
             for i in range(workers)]
    try:
        deadline = time.monotonic() + 120
        while not _spread_ready([worker_status(p.port, timeout=2) for p in procs]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} partitioned worker(s) not ready")
            time.sleep(SCALE_POLL)
        pids = [p.proc.pid for p in procs] + [_broker_pid()]
        cpu_start = [_cpu_seconds(pid) for pid in pids]
        start = time.perf_counter()
        feeding = _feed(config.kafka.input_topic, _keyed(lines))
        deadline = time.monotonic() + 900
        statuses: list[dict[str, Any]] = []
        while not _spread_settled(statuses, len(lines)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} partitioned worker(s) did not finish")
            time.sleep(SCALE_POLL * 5)
            statuses = [s for s in (worker_status(p.port, timeout=2) for p in procs) if s]
        seconds = time.perf_counter() - start
        cpu = [end - begin for begin, end in zip(cpu_start, map(_cpu_seconds, pids),
                                                   strict=True)]
        applied = []
        for proc in procs:
            _, body = proc.admin_get("/profiles")
            applied.append(sum(orjson.loads(line)["event_count"] for line in body.splitlines()))
    finally:
        for proc in procs:
            proc.stop()
    events = len(lines)
    return {"workers": workers, "events_timed": events, "seconds": round(seconds, 2),
            "per_second": round(events / seconds),
            "split": [round(n / max(1, sum(applied)), 3) for n in applied],
            **_cpu_figures("workers", cpu, feeding, events, seconds)}


def _cpu_figures(role: str, cpu: list[float], feeding: float, events: int,
                 seconds: float) -> dict[str, Any]:
    """CPU over a timed window (``cpu``: each process's under test, then the broker's):
    per event, the processes' together, the broker's and the producer's, which shares the
    cores with them; and the cores each used."""
    return {"cpu_us_per_event": {role: round(sum(cpu[:-1]) / events * 1e6, 1),
                                 "broker": round(cpu[-1] / events * 1e6, 1),
                                 "producer": round(feeding / events * 1e6, 1)},
            "cores": {role: [round(c / seconds, 2) for c in cpu[:-1]],
                      "broker": round(cpu[-1] / seconds, 2)}}


def _broker_pid() -> int:
    """The local broker's process (``deploy/kafka.sh`` writes its pid in its run folder)."""
    port = BOOTSTRAP.rsplit(":", 1)[1]
    cache = Path(os.environ.get("KAFKA_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "persona-stream")
    return int((Path(os.environ.get("KAFKA_DATA", cache / f"run-{port}")) / "kafka.pid")
               .read_text())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_spread() -> dict[str, Any]:
    """1 and 2 worker processes (ABBA) on the same events."""
    lines = _worker_lines()
    _spread_run(1, lines[:50_000])  # not counted: a broker just started is slower at first
    rounds = [_spread_run(n, lines) for n in SCALE_ORDER]
    runs = {str(n): {"per_second": round(sum(r["per_second"] for r in rounds
                                             if r["workers"] == n) / 2),
                     "rounds": [r for r in rounds if r["workers"] == n]}
            for n in (1, 2)}
    return {"events": len(lines), "partitions": SPREAD_PARTITIONS, "runs": runs,
            "two_to_one": round(runs["2"]["per_second"] / runs["1"]["per_second"], 3),
            "split_two": [r["split"] for r in runs["2"]["rounds"]],
            "cpu_count": os.cpu_count()}


PEER_JOB = ROOT / "benchmarks" / "peer_job.py"
PEER_SETTLE = 1.0  # seconds every job must have held its share before the clock starts


class _PeerJob:
    """A Quix Streams job process (benchmarks/peer_job.py) and the input partitions it says
    it holds: its ASSIGNED / REVOKED lines, read on a thread."""

    def __init__(self, args: list[str], log: Path) -> None:
        import subprocess
        import threading

        self.log = log
        with log.open("w") as errors:
            self.proc = subprocess.Popen([sys.executable, str(PEER_JOB), *args],
                                         stdout=subprocess.PIPE, stderr=errors, text=True)
        self.held: frozenset[int] = frozenset()  # replaced, never changed: read elsewhere
        self.changes = 0  # assignments and revocations seen
        self.processed: int | None = None  # its count, once it stopped
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "PROCESSED":
                self.processed = int(rest)
            elif word in ("ASSIGNED", "REVOKED"):
                partitions = {int(p) for p in rest.split(",") if p}
                self.held = (self.held | partitions if word == "ASSIGNED"
                             else self.held - partitions)
                self.changes += 1

    def alive(self) -> None:
        """RuntimeError, with the end of its log, if the job exited."""
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"a Quix job exited (rc {self.proc.returncode}): "
                               + " | ".join(tail))

    def stop(self) -> None:
        """After ``proc.terminate()``: wait for the job (on SIGTERM Quix takes a last
        checkpoint and returns), SIGKILL after 30 s."""
        import subprocess

        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)


def _peer_ready(jobs: list[_PeerJob], admin: Any, group: str) -> bool:
    """Every job holds input partitions, together all of them once, and the group is
    stable with one member per job: no rebalance pending."""
    held = [job.held for job in jobs]
    if not (all(held) and sum(map(len, held)) == SPREAD_PARTITIONS
            and len(frozenset().union(*held)) == SPREAD_PARTITIONS):
        return False
    state = admin.describe_groups([group])[group]
    return bool(state["group_state"] == "Stable" and len(state["members"]) == len(jobs))


def _peer_run(processes: int, records: list[tuple[bytes | None, bytes]]) -> dict[str, Any]:
    """``processes`` Quix jobs, timed as ``_spread_run`` times workers: fresh topics, group
    and state; once every job holds its share of the (empty) input, ``records`` are
    produced and the clock runs until the output holds one record per input."""
    import tempfile

    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    name = unique_names()
    source, sink, group = name("bench-peer-in"), name("bench-peer-out"), name("bench-peer")
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    meter = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    admin.create_topics([NewTopic(t, SPREAD_PARTITIONS, 1) for t in (source, sink)])
    ends = [TopicPartition(sink, p) for p in range(SPREAD_PARTITIONS)]
    jobs: list[_PeerJob] = []
    try:
        with tempfile.TemporaryDirectory(prefix="persona-stream-bench-peer-") as tmp:
            try:
                jobs = [_PeerJob(["--bootstrap", BOOTSTRAP, "--group", group, "--input",
                                  source, "--output", sink, "--state-dir", f"{tmp}/state{i}"],
                                 Path(tmp) / f"job{i}.log") for i in range(processes)]
                deadline = time.monotonic() + 120
                since = None
                while since is None or time.monotonic() - since < PEER_SETTLE:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{processes} Quix job(s) not ready: "
                                           f"{[sorted(job.held) for job in jobs]}")
                    for job in jobs:
                        job.alive()
                    ready = _peer_ready(jobs, admin, group)
                    since = (since or time.monotonic()) if ready else None
                    time.sleep(SCALE_POLL)
                changes = sum(job.changes for job in jobs)
                pids = [job.proc.pid for job in jobs] + [_broker_pid()]
                cpu_start = [_cpu_seconds(pid) for pid in pids]
                start = time.perf_counter()
                feeding = _feed(source, records)  # as _spread_run does, while the jobs read
                produced = time.perf_counter() - start
                deadline = time.monotonic() + 900
                while sum(meter.end_offsets(ends).values()) < len(records):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{processes} Quix job(s) did not finish")
                    for job in jobs:
                        job.alive()
                    time.sleep(SCALE_POLL)
                seconds = time.perf_counter() - start
                cpu = [end - begin for begin, end in zip(cpu_start, map(_cpu_seconds, pids),
                                                           strict=True)]
                rebalanced = sum(job.changes for job in jobs) != changes
            finally:  # all at once, so that none takes over another's partitions
                for job in jobs:
                    job.proc.terminate()
                for job in jobs:
                    job.stop()
    finally:
        # Quix names its changelog topics after the group
        with contextlib.suppress(Exception):
            admin.delete_topics([t for t in admin.list_topics() if group in t]
                                + [source, sink])
        meter.close()
        admin.close()
    events = len(records)
    processed = [job.processed or 0 for job in jobs]
    return {"processes": processes, "events_timed": events, "seconds": round(seconds, 2),
            "per_second": round(events / seconds), "produce_seconds": round(produced, 2),
            "rebalanced_while_timed": rebalanced,
            "split": [round(n / max(1, sum(processed)), 3) for n in processed],
            **_cpu_figures("jobs", cpu, feeding, events, seconds)}


def bench_peer() -> dict[str, Any]:
    """``bench_spread`` with a minimal Quix Streams job (benchmarks/peer_job.py) in place of
    persona-stream's workers: the same events, produced the same way (keyed by their first
    identifier), 1 and 2 processes (ABBA)."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("quixstreams") is None:
        raise SystemExit("bench peer: quixstreams is not installed; pip install -e '.[bench]'")
    records = _keyed(_worker_lines())
    _peer_run(1, records[:50_000])  # not counted, as in bench_spread
    rounds = [_peer_run(n, records) for n in SCALE_ORDER]
    runs = {str(n): {"per_second": round(sum(r["per_second"] for r in rounds
                                             if r["processes"] == n) / 2),
                     # the timed window and the producer's share of it, means
                     **{k: round(sum(r[k] for r in rounds if r["processes"] == n) / 2, 1)
                        for k in ("seconds", "produce_seconds")},
                     "rounds": [r for r in rounds if r["processes"] == n]}
            for n in (1, 2)}
    return {"events": len(records), "partitions": SPREAD_PARTITIONS, "runs": runs,
            "two_to_one": round(runs["2"]["per_second"] / runs["1"]["per_second"], 3),
            "split_two": [r["split"] for r in runs["2"]["rounds"]],
            "quixstreams": importlib.metadata.version("quixstreams"),
            "cpu_count": os.cpu_count()}


JOIN_POLL = 0.05  # seconds between the first worker's /status polls while one joins


def _join_paused(procs: list[WorkerProcess], seconds: float) -> dict[str, Any]:
    """Poll both workers while ``procs[1]`` joins ``procs[0]`` (holding every role): how
    long no worker held the identity stage, and the first held no profile partition, from
    the revocation to the role (wherever it went) and the first's share held again; and
    whether the first took its states back without a restore."""
    lost: dict[str, float] = {}
    back: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while len(back) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the roles were not held again")
        statuses = [worker_status(p.port, timeout=2) for p in procs]
        now = time.perf_counter()
        first = statuses[0]
        if first is None:
            continue
        holding = {"identity_stage": any(s and s["owner"] for s in statuses),
                   "profile_partitions": len(first["task_partitions"]) == SPREAD_PARTITIONS // 2}
        if not first["owner"] and "identity_stage" not in lost:
            lost["identity_stage"] = now
        if len(first["task_partitions"]) < SPREAD_PARTITIONS and "profile_partitions" not in lost:
            lost["profile_partitions"] = now
        for role, held in holding.items():
            if held and role in lost:
                back.setdefault(role, now)
        time.sleep(JOIN_POLL)
    return {"paused_seconds": {role: round(back[role] - lost[role], 2) for role in back},
            "identity_stage_moved": not first["owner"],
            "kept_identity_stage": first["kept_over_rebalance"],
            "kept_partitions": first["tasks_kept"],
            "partitions_held": first["task_partitions"]}


def bench_join() -> dict[str, Any]:
    """One worker holds the state of the 1M-event stream; a
    second one joins (its member ids sort first). How long the first stops."""
    from workers.service.app import provision_topics

    lines = lines_of(stream(BIG_PROFILES, 7)[0])
    settings = _settings("join",
                         kafka={"partitions": SPREAD_PARTITIONS})
    config = config_from(settings)
    provision_topics(config)
    config_file = _config_file(settings)
    procs = [WorkerProcess(config_file, instance_id="s1", log_dir=config_file.parent)]
    try:
        produce(config.kafka.input_topic, lines)
        deadline = time.monotonic() + 1800
        while not _spread_settled([s for s in [worker_status(procs[0].port, timeout=2)] if s],
                                  len(lines)):
            if time.monotonic() > deadline:
                raise RuntimeError("the first worker did not process the stream")
            time.sleep(1)
        _, body = procs[0].admin_get("/profiles")
        profiles = len(body.splitlines())
        procs.append(WorkerProcess(config_file, instance_id="s0", log_dir=config_file.parent))
        result = _join_paused(procs, 300)
    finally:
        for proc in procs:
            proc.stop()
    return {"events": len(lines), "profiles": profiles, "partitions": SPREAD_PARTITIONS,
            **result}


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_child(profiles: int, store: str) -> dict[str, Any]:
    """Resident bytes per profile: each person browses anonymously, then identifies."""
    import dataclasses
    import gc
    import tempfile

    from workers.config import StateConfig

    base = load()
    directory = tempfile.mkdtemp(prefix="persona-stream-bench-")
    pipeline = Pipeline(dataclasses.replace(base, state=StateConfig(store=store,
                                                                    directory=directory)))
    spread = 30 * 86400 / profiles  # a month of event time, so de-dup holds ~1 day of ids
    gc.collect()
    before = _rss()
    for i in range(profiles):
        t = 1_767_571_200 + i * spread
        anon = {"anonymous_id": f"a-{i:09d}"}
        known = {"anonymous_id": f"a-{i:09d}", "user_id": f"u-{i:09d}",
                 "email": f"person{i}@mail.example"}
        for j, (kind, ident) in enumerate((("page_view", anon), ("product_view", anon),
                                           ("identify", known), ("purchase", known))):
            pipeline.feed(orjson.dumps({
                "event_id": f"e-{i}-{j}", "occurred_at": _iso(t + j * 60), "type": kind,
                "identity": ident, "channel": "web", "device": {"type": "mobile"},
                "properties": {"product_id": f"sku-{i % 500}", "revenue": 20.0,
                               "payment_method": "card"}}))
    pipeline.flush()
    gc.collect()
    used = _rss() - before
    disk = sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
    profiles_held = len(pipeline.profiles)
    pipeline.profiles.close()
    shutil.rmtree(directory, ignore_errors=True)
    return {"profiles": profiles_held, "rss_bytes": used,
            "bytes_per_profile": round(used / profiles_held), "disk_bytes": disk}


def _people(first: int, count: int, t0: float, spread: float) -> Iterator[bytes]:
    """``count`` known people from ``first`` on: an identify and a purchase each."""
    for i in range(first, first + count):
        t = t0 + i * spread
        known = {"user_id": f"u-{i:09d}", "email": f"person{i}@mail.example"}
        for j, kind in enumerate(("identify", "purchase")):
            yield orjson.dumps({
                "event_id": f"e-{i}-{j}-{t0}", "occurred_at": _iso(t + j * 60), "type": kind,
                "identity": known, "channel": "web",
                "properties": {"product_id": f"sku-{i % 500}", "revenue": 20.0}})


def _returning(profiles: int, t0: float, spread: float) -> Iterator[bytes]:
    """1% of the people come back a day after the stream's end: one more purchase each."""
    back = t0 + 31 * 86400
    for i in range(0, profiles, 100):
        yield orjson.dumps({
            "event_id": f"again-{i}", "occurred_at": _iso(back + i * spread / 100),
            "type": "purchase", "identity": {"user_id": f"u-{i:09d}"}, "channel": "web",
            "properties": {"revenue": 5.0}})


def _bytes_of(records: Iterable[Any]) -> int:
    return sum(len(r.key) + len(r.value or b"") for r in records)


def bench_partition() -> dict[str, Any]:
    """At 1M profiles over 6 partitions, the stages in one
    process (LocalTopology): (a) bytes the commits of every stage write when 1% of the
    people come back, next to the whole state's; (b) one profile partition restored from
    its changelogs on the broker (read to their end, then the task rebuilt). The people
    have two events each, as in ``state``: fewer than the model learns from, so the
    trainer's state is an empty model's."""
    import asyncio

    from aiokafka import TopicPartition

    from workers.core.partitioned.local import LocalTopology
    from workers.core.partitioned.profile_task import ProfileTask
    from workers.io.kafka import changelog_topic, profiles_topic
    from workers.service.changelog import ChangelogCopy, ChangelogWriter
    from workers.state.changelog import StateWriter, Store, everything, restore

    profiles = int(os.environ.get("BENCH_STATE_PROFILES", 1_000_000))
    partitions = 6
    config = _prefilled(_settings("partition", kafka={
                                                      "partitions": partitions}), [])
    topology = LocalTopology(config, partitions)
    spread = 30 * 86400 / profiles
    t0 = 1_767_571_200.0
    started = time.perf_counter()
    topology.feed_many(_people(0, profiles, t0, spread))
    topology.flush()
    fed = time.perf_counter() - started
    writers = [StateWriter(topology.stage, saved=False),
               *(StateWriter(t, saved=False) for t in topology.tasks),
               StateWriter(topology.trainer, saved=False)]
    full_bytes = [_bytes_of(w.changes()) for w in writers]
    topology.feed_many(_returning(profiles, t0, spread))
    topology.flush()
    commit_bytes = [_bytes_of(w.changes()) for w in writers]
    task = topology.tasks[0]
    held = len(task.work.profiles)

    async def restore_one() -> dict[str, Any]:
        stores: dict[Store, str] = {"profile": changelog_topic(config, "profile"),
                                    "view": changelog_topic(config, "view"),
                                    "meta": changelog_topic(config, "task")}
        out = ChangelogWriter(config, {}, role="profiles", topics=stores, partition=0)
        await out.start()
        records = list(everything(task))
        for i in range(0, len(records), 100_000):  # a transaction each, as commits are
            await out.commit(records[i:i + 100_000],
                             TopicPartition(profiles_topic(config), 0), 0)
        await out.stop()
        copy = ChangelogCopy(config, {}, {t: s for s, t in stores.items()}, partition=0)
        started = time.perf_counter()
        read = await copy.catch_up()
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        restored = restore(ProfileTask(config, 0, partitions), copy.records(), "bench")
        built = time.perf_counter() - started
        assert len(restored.work.profiles) == held
        return {"records": read, "read_seconds": round(read_seconds, 1),
                "rebuild_seconds": round(built, 1)}

    return {"profiles": profiles, "partitions": partitions, "fed_seconds": round(fed, 1),
            "partition_profiles": held, "full_state_bytes": sum(full_bytes),
            "commit_bytes": sum(commit_bytes),
            "commit_share": round(sum(commit_bytes) / sum(full_bytes), 4),
            "by_stage": {"identity": [full_bytes[0], commit_bytes[0]],
                         "profiles": [sum(full_bytes[1:-1]), sum(commit_bytes[1:-1])],
                         "trainer": [full_bytes[-1], commit_bytes[-1]]},
            "restore_partition_0": asyncio.run(restore_one())}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def bench_memory() -> dict[str, Any]:
    """Each size in a fresh process, so one run's heap does not count in the next."""
    import subprocess

    out: dict[str, Any] = {}
    for store in ("memory", "rocksdb"):
        for profiles in (100_000, 1_000_000):
            result = subprocess.run([sys.executable, __file__, "--memory-child", str(profiles),
                                     "--store", store],
                                    capture_output=True, check=True, text=True)
            out.setdefault(store, {})[str(profiles)] = json.loads(result.stdout)
    return out


def _peak_of_run(source: Path, out: Path) -> tuple[int, float]:
    """Peak resident memory (VmHWM, bytes: a forked child's ru_maxrss would count the
    parent's) and seconds of ``persona-stream run`` over ``source``, in a fresh process."""
    import subprocess

    script = ("import re, sys, time\nfrom workers.cli import main\nstart = time.perf_counter()\n"
              "main(sys.argv[1:])\nseconds = time.perf_counter() - start\n"
              "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
              "print(int(peak.group(1)) * 1024, seconds, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script, "run", str(source), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, check=True)
    peak, seconds = done.stderr.split()[-2:]
    return int(peak), float(seconds)


def bench_hostile() -> dict[str, Any]:
    """`run` over a stream, over it with the hostile corpus mixed in, and with the corpus
    40 times (200 MB of poison): peak memory and time, side by side."""
    import tempfile

    from workers.simulation.hostile import hostile_records

    lines = lines_of(stream(2000, 9)[0])
    corpus = [r for r in hostile_records(kafka=False) if r is not None]
    step = len(lines) // len(corpus)
    mixed = list(lines)
    for i, record in enumerate(corpus):
        mixed.insert(i * (step + 1), record)
    runs = {"stream": lines, "stream + corpus": mixed,
            "stream + corpus x40": mixed + corpus * 39}
    out: dict[str, Any] = {"corpus_records": len(corpus), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="persona-stream-bench-") as tmp:
        for name, data in runs.items():
            source = Path(tmp) / "in.jsonl"
            source.write_bytes(b"".join(line + b"\n" for line in data))
            peak, seconds = _peak_of_run(source, Path(tmp) / "out")
            out["runs"][name] = {"lines": len(data), "input_bytes": source.stat().st_size,
                                 "peak_bytes": peak, "seconds": round(seconds, 2)}
    return out


def bench_formats() -> dict[str, Any]:
    """Intake per event: the touchpoint parser, and the Segment format (adapter + the same
    checks, skipped for the events the adapter vouches for, as in the pipeline) on the
    same events written as Segment calls, side by side: alternating, best of 5."""
    from workers.core.formats.segment import SegmentAdapter
    from workers.simulation.as_segment import to_segment

    config = load()
    parser = TouchpointParser(IntakeLimits.from_config(config))
    lines = []
    for line in lines_of(stream(3000, 7)[0]):
        try:
            parser.parse(line)
        except InvalidEvent:
            continue
        lines.append(line)
    # laid out as the touchpoint lines are, one buffer split into records (as a file or a
    # fetch gives them): built one by one between the temporaries of to_segment, they lay
    # scattered in memory, which alone cost a few tenths of a µs per event (either intake)
    calls = b"\n".join(orjson.dumps(to_segment(orjson.loads(line))) for line in lines).split(b"\n")
    segment = SegmentAdapter(config)

    def touchpoints() -> None:
        parse = TouchpointParser(IntakeLimits.from_config(config)).parse
        for line in lines:
            parse(line)

    def segment_calls() -> None:  # as the pipeline reads a record of another format
        check = TouchpointParser(IntakeLimits.from_config(config)).check
        for call in calls:
            for item in segment.events(call):
                check(item, call, segment.vouch(item))  # type: ignore[arg-type]

    def whole(records: list[bytes], fmt: Any) -> Any:
        def run() -> None:
            pipeline = Pipeline(config)
            for record in records:
                pipeline.feed(record, None, fmt)
            pipeline.flush()
        return run

    wall = {"touchpoint": math.inf, "segment": math.inf}
    cpu = dict(wall)
    for _ in range(5):  # alternating, so that a busy moment of the machine hits both
        for name, run in (("touchpoint", touchpoints), ("segment", segment_calls)):
            seconds = _clocked(run)
            wall[name], cpu[name] = min(wall[name], seconds[0]), min(cpu[name], seconds[1])
    pipeline = {name: _clocked(run) for name, run in (
        ("touchpoint", whole(lines, None)), ("segment", whole(calls, "segment")))}

    def per_event(times: dict[str, float]) -> dict[str, float]:
        return {name: round(seconds / len(lines) * 1e6, 2) for name, seconds in times.items()}

    return {"events": len(lines), "us_per_event": per_event(wall),
            "segment_to_touchpoint": round(wall["segment"] / wall["touchpoint"], 2),
            # CPU time of this process: what the other work of a shared machine adds to
            # the wall clock is not in it
            "cpu_us_per_event": per_event(cpu),
            "cpu_segment_to_touchpoint": round(cpu["segment"] / cpu["touchpoint"], 2),
            "pipeline_segment_to_touchpoint": round(pipeline["segment"][0]
                                                    / pipeline["touchpoint"][0], 2),
            "cpu_pipeline_segment_to_touchpoint": round(pipeline["segment"][1]
                                                        / pipeline["touchpoint"][1], 2)}


def _clocked(run: Any) -> tuple[float, float]:
    """Seconds of wall clock and of this process's CPU time that ``run`` took."""
    started, used = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - started, time.process_time() - used


def bench_dedup() -> dict[str, Any]:
    """Resident bytes per event id the de-dup window holds (1M UUID ids over a week)."""
    import gc
    import uuid

    gc.collect()
    before = _rss()
    dedup = Deduplicator(7 * 86400.0)
    for i in range(1_000_000):  # an id string is kept by the window, as in the pipeline
        dedup.seen(str(uuid.UUID(int=i + 1)), 1_767_571_200 + i * 0.6)
    gc.collect()
    held = len(dedup)
    return {"ids": held, "bytes_per_id": round((_rss() - before) / held)}


CODEC_LINES = 100_000
CODEC_PROFILES = 5_000


def bench_codec() -> dict[str, Any]:
    """State records (workers.state.codec): a profile packed and unpacked, and an identity
    record made and packed, per profile (best of 5), on the profiles of the first lines of
    the 1M-event stream; what every changelog commit, RocksDB tick and state file pays."""
    import timeit

    from workers.state.codec import pack
    from workers.state.store import decode, encode

    pipeline = Pipeline(load())
    for line in lines_of(stream(BIG_PROFILES, 7)[0])[:CODEC_LINES]:
        pipeline.feed(line)
    store = pipeline.profiles
    pids = sorted(store)[:CODEC_PROFILES]
    states = [store[pid] for pid in pids]
    blobs = [encode(state) for state in states]
    graph = pipeline.graph

    def best(work: Any) -> float:
        return round(min(timeit.repeat(work, number=1, repeat=5)) / len(pids) * 1e6, 2)

    return {"lines": CODEC_LINES, "profiles": len(pids),
            "pack_profile_us": best(lambda: [encode(state) for state in states]),
            "unpack_profile_us": best(lambda: [decode(blob) for blob in blobs]),
            "identity_record_us": best(lambda: [pack(graph.record(pid)) for pid in pids]),
            "profile_record_bytes": round(sum(map(len, blobs)) / len(blobs))}


def _child(bench: str, pure: bool) -> dict[str, Any]:
    """``bench`` (one of ``CHILDREN``) in a fresh process, compiled or the Python source."""
    import subprocess

    env = {**os.environ, PURE_ENV: "1" if pure else ""}
    done = subprocess.run([sys.executable, __file__, "--child", bench], env=env,
                          capture_output=True, text=True, timeout=3600, check=True)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def _pipeline_slice() -> dict[str, Any]:
    """The in-process pipeline over the first lines of the 1M-event stream, CPU time."""
    path, _ = stream(BIG_PROFILES, 7)
    lines = lines_of(path)[:COMPILED_LINES]
    pipeline = Pipeline(load())
    feed = pipeline.feed
    start = time.process_time()
    for line in lines:
        feed(line)
    pipeline.flush()
    return {"compiled": len(compiled()),
            "per_second": round(len(lines) / (time.process_time() - start))}


def _typed_steps() -> dict[str, Any]:
    """The per-event steps the ``.pxd`` files type, best of 5 over the first 200,000
    lines: the intake's reading of a record and folding a read event into its profile
    (per event); a tick's work on the profiles it touched, learning aside (per profile
    assessed under the model in force, every profile of the 200,000 lines with
    ``segmentation.min_events``, most of which stay where they are); and learning (per
    learn, a new model fed the profiles' vectors: checks and publishes included)."""
    from workers.core.features import FeatureSpec, ProfileState
    from workers.core.profile_work import Dirty, _id_hash
    from workers.core.segments import SegmentModel

    path, _ = stream(BIG_PROFILES, 7)
    lines = lines_of(path)[:200_000]
    config = load()
    spec = FeatureSpec(config.features)
    intake = Intake(config)
    events = [(tp, next(iter(tp.identity.values())), _id_hash(tp.event_id))
              for line in lines for tp in intake.read(line) if not isinstance(tp, Rejected)]
    pipeline = Pipeline(config)
    for line in lines:
        pipeline.feed(line)
    pipeline.flush()
    snapshot = pipeline.model.snapshot
    assert snapshot is not None
    seg = config.segmentation
    states = [pipeline.profiles[pid] for pid in sorted(pipeline.profiles)]
    work = pipeline.work
    assessed = {pid: Dirty(f"tick-{n}", 0.0, False) for n, pid in enumerate(
        sorted(pipeline.profiles)) if pipeline.profiles[pid].event_count >= seg.min_events}
    for pid in assessed:
        pipeline.profiles[pid].last_learned = 0.0  # not learned from at 0.0: assessed only
    wanted = frozenset(pipeline.model.columns)
    vectors = [s.vector(spec, wanted) for s in states if s.event_count >= seg.learn_min_events]
    read = fold = assess = learn = math.inf
    for _ in range(5):
        intake = Intake(config)
        start = time.perf_counter()
        for line in lines:
            intake.read(line)
        read = min(read, (time.perf_counter() - start) / len(lines))
        folded: dict[str, ProfileState] = {}
        start = time.perf_counter()
        for tp, key, id_hash in events:
            state = folded.get(key)
            if state is None:
                state = folded[key] = ProfileState(spec.size, tp.ts)
            state.update(spec, tp, id_hash)
        fold = min(fold, (time.perf_counter() - start) / len(events))
        work.dirty = dict(assessed)
        start = time.perf_counter()
        work.run_tick()
        assess = min(assess, (time.perf_counter() - start) / len(assessed))
        work.out.clear()
        model = SegmentModel(seg, spec)
        start = time.perf_counter()
        for n, vector in enumerate(vectors):
            model.learn(vector, n * 60.0)
        learn = min(learn, (time.perf_counter() - start) / len(vectors))
    return {"compiled": len(compiled()), "read_us": round(read * 1e6, 2),
            "fold_us": round(fold * 1e6, 2), "assess_us": round(assess * 1e6, 2),
            "assessed": len(assessed), "learn_us": round(learn * 1e6, 2),
            "learned": len(vectors)}


def bench_compiled() -> dict[str, Any]:
    """The compiled modules against their Python source: the same pipeline and lines in
    child processes, alternating (ABBA), CPU time."""
    if not compiled():
        raise SystemExit("bench compiled: no compiled module here; run `make build`")
    runs: dict[str, list[int]] = {"compiled": [], "pure": []}
    for pure in (False, True, True, False):
        result = _child("slice", pure)
        assert (result["compiled"] == 0) == pure, result
        runs["pure" if pure else "compiled"].append(result["per_second"])
    mean = {k: round(sum(v) / len(v)) for k, v in runs.items()}
    steps = {"compiled": _child("steps", False), "pure": _child("steps", True)}
    return {"lines": COMPILED_LINES, "modules": len(compiled()), "runs": runs, "steps": steps,
            "compiled_per_second": mean["compiled"], "pure_per_second": mean["pure"],
            "ratio": round(mean["compiled"] / mean["pure"], 3)}


def bench_profile() -> dict[str, Any]:
    """Where the time goes on the per-event path (cProfile, top functions by own time), in
    the Python source: cProfile does not see into compiled functions."""
    import cProfile
    import pstats

    if compiled():
        return _child("profile", pure=True)

    path, _ = stream(QUALITY_PROFILES, 3)
    lines = lines_of(path)
    pipeline = Pipeline(load())
    profiler = cProfile.Profile()
    profiler.enable()
    for line in lines:
        pipeline.feed(line)
    pipeline.flush()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
    return {"events": len(lines), "top": [
        {"function": f"{Path(f).name}:{line}({name})", "calls": v[1],
         "own_share": round(v[2] / total, 3)} for (f, line, name), v in rows]}


def bench_hotspots() -> dict[str, Any]:
    """Where the compiled pipeline's time goes, by function (``benchmarks/hotspots.py``:
    perf's samples over lines 300,000..500,000 of the 1M-event stream)."""
    from hotspots import record

    if not compiled():
        raise SystemExit("bench hotspots: needs the compiled modules (make build)")
    total, found = record(HOTSPOTS_WARM, HOTSPOTS_LINES)
    return {"samples": total, "warm": HOTSPOTS_WARM, "lines": HOTSPOTS_LINES,
            "top": [{"function": name, "share": round(share, 3)} for name, share in found[:12]]}


CHILDREN = {"slice": _pipeline_slice, "profile": bench_profile, "steps": _typed_steps}
BENCHES = {"intake": bench_intake, "pipeline": bench_pipeline, "quality": bench_quality,
           "memory": bench_memory, "profile": bench_profile, "worker": bench_worker,
           "replay": bench_replay, "latency": bench_latency,
           "hostile": bench_hostile, "formats": bench_formats, "dedup": bench_dedup,
           "identity": bench_identity, "spread": bench_spread, "peer": bench_peer,
           "partition": bench_partition, "compiled": bench_compiled, "join": bench_join,
           "codec": bench_codec, "hotspots": bench_hotspots}
COMMAND = "python benchmarks/bench.py"


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    built = compiled()
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
            + (f"{len(built)} of {len(MODULES)} modules compiled" if built else "pure Python"))


def _quality_row(variant: str, runs: list[dict[str, Any]]) -> str:
    def worst(key: str, low: bool = True) -> Any:
        values = [r[key] for r in runs]
        return min(values) if low else max(values)

    gap = max(r["ari_batch_sklearn_kmeans"] - r["ari"] for r in runs)
    return (f"**{variant}**: ARI online {worst('ari')} vs batch {worst('ari_batch_sklearn_kmeans')}"
            f" (gap up to {gap:+.3f}), ids changed meaning {worst('ids_changed_meaning', False)},"
            f" behaviour moves w/o lineage {worst('behaviour_moves_without_lineage', False)},"
            f" own segment {worst('behaviours_with_own_segment')}/{runs[0]['behaviours']},"
            + (f" changers in new segment {worst('changers_in_new_segment')} (per person;"
               f" latest profile never seen after the change: up to"
               f" {max(r['changers_unseen_since_change'] / r['changers'] for r in runs):.0%}),"
               if runs[0]["changers"] else "")
            + f" moves/steady person {worst('moves_per_steady_person', False)},"
            f" empty segments {worst('empty_segments', False)},"
            f" card values out of domain {worst('card_values_out_of_domain', False)}")


def write_table() -> None:
    rows = []
    for name in BENCHES:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        res = r["result"]
        if name in ("intake", "pipeline"):
            what = ("validation + de-dup + identity, events/s" if name == "intake"
                    else "whole `run` pipeline in process, events/s of CPU time (it and"
                    f" parse-only take turns, {PIPELINE_SLICE:,} lines each)")
            value = (f"{res['events_per_second']:,} ({res['ratio_to_parse_only']:.2f}x of "
                     f"parse-only {res['parse_only_per_second']:,}/s), {res['events']:,} events")
            if "pseudonymised_events_per_second" in res:
                value += (f"; identifiers pseudonymised {res['pseudonymised_events_per_second']:,}"
                          f" (+{res['pseudonymised_us_per_event_added']} µs per event)")
        elif name == "worker":
            what = "one Kafka worker end to end (pre-filled 4-partition topic), events/s"
            value = (f"{res['worker_per_second']:,} = {res['worker_to_in_process']:.0%} of "
                     f"in-process {res['in_process_per_second']:,}/s; bare aiokafka consumer "
                     f"{res['bare_consumer_per_second']:,}/s; {res['events']:,} events")
        elif name == "replay":
            what = "`replay` to an output folder, events/s"
            value = (f"from a file {res['file_per_second']:,}, from a "
                     f"{res['topic_partitions']}-partition topic {res['topic_per_second']:,}; "
                     f"in-process pipeline {res['in_process_per_second']:,}/s, parse-only "
                     f"{res['parse_only_per_second']:,}/s; {res['events']:,} events")
        elif name == "latency":
            what = ("event time to segment-change emit, one worker keeping up (live profile),"
                    f" {LATENCY_SECONDS} s after {LATENCY_WARMUP_SECONDS} s of warm-up")
            value = ", ".join(
                f"{r['target_rate']:,}/s (sent {r['achieved_rate']:,}/s): p50 "
                f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms ("
                + (f"warm-up p99 {r['warmup_p99_ms']} ms)" if r["warmup_p99_ms"] >= 0
                   else "no segment change in the warm-up)")
                for r in res["runs"])
        elif name == "identity":
            what = ("the identity stage alone (fed the routers'"
                    " bundles, its records encoded for 6 partitions) vs the routers' reading"
                    " and the whole pipeline, same events, CPU time, best of 3")
            value = (f"identity stage {res['stage_per_second']:,} events/s, routers' reading "
                     f"{res['read_per_second']:,}/s, whole pipeline "
                     f"{res['pipeline_per_second']:,}/s (the stage is "
                     f"{res['stage_share_of_pipeline']:.0%} of the pipeline's work); "
                     f"{res['events']:,} events")
        elif name == "spread":
            one, two = res["runs"]["1"], res["runs"]["2"]
            what = (f"1 vs 2 worker processes, a "
                    f"{res['partitions']}-partition input produced once each holds its share,"
                    " events/s from the first record produced to every partition caught up"
                    " (mean of 2 runs each, ABBA, after a round not counted)")
            value = (f"2 workers {two['per_second']:,} = {res['two_to_one']:.2f}x of 1 worker "
                     f"{one['per_second']:,}/s; profile work split between the 2: "
                     f"{res['split_two']}; CPU per event (workers + broker + producer): "
                     + ", ".join(f"{r['workers']} worker(s) {r['cpu_us_per_event']['workers']}"
                                 f" + {r['cpu_us_per_event']['broker']}"
                                 f" + {r['cpu_us_per_event'].get('producer', '?')} µs"
                                 for r in one["rounds"] + two["rounds"])
                     + f"; {res['events']:,} events keyed by their first identifier, "
                     f"{res['cpu_count']} cores shared with the broker and the producer")
        elif name == "join":
            paused = res["paused_seconds"]
            what = (f"a second worker joins one holding "
                    f"{res['profiles']:,} profiles ({res['events']:,} events, "
                    f"{res['partitions']} partitions); how long the first holds no identity"
                    " stage and no profile partition, revocation to its share held again")
            value = (f"identity stage {paused['identity_stage']} s"
                     f"{' (moved to the newcomer)' if res['identity_stage_moved'] else ''}, "
                     f"profile partitions {paused['profile_partitions']} s; taken back "
                     "without a restore: the identity stage "
                     f"{'yes' if res['kept_identity_stage'] else 'no'}, partitions "
                     f"{res['kept_partitions']} of {res['partitions_held']} held")
        elif name == "memory":
            what = "resident memory per profile, in process (RSS growth / profiles)"
            value = "; ".join(f"{store} store, {int(k):,} profiles: "
                              f"{v['bytes_per_profile']:,} B/profile"
                              for store, sizes in res.items() for k, v in sizes.items())
        elif name == "codec":
            what = ("state records: one profile packed and unpacked, one identity record made"
                    " and packed (per profile, best of 5)")
            value = (f"pack {res['pack_profile_us']} µs, unpack {res['unpack_profile_us']} µs"
                     f" ({res['profile_record_bytes']} B), identity record"
                     f" {res['identity_record_us']} µs; {res['profiles']:,} profiles of the"
                     f" first {res['lines']:,} lines of the 1M-event stream")
        elif name == "dedup":
            what = "de-dup window memory per event id held (UUID ids)"
            value = f"{res['bytes_per_id']:,} B/id, {res['ids']:,} ids"
        elif name == "formats":
            what = "intake per event: Segment calls vs the same events as touchpoints"
            value = (f"Segment {res['us_per_event']['segment']} µs = "
                     f"{res['segment_to_touchpoint']:.2f}x of touchpoint "
                     f"{res['us_per_event']['touchpoint']} µs (CPU time "
                     f"{res['cpu_us_per_event']['segment']} vs "
                     f"{res['cpu_us_per_event']['touchpoint']} µs = "
                     f"{res['cpu_segment_to_touchpoint']:.2f}x); the whole `run` pipeline "
                     f"{res['pipeline_segment_to_touchpoint']:.2f}x (CPU "
                     f"{res['cpu_pipeline_segment_to_touchpoint']:.2f}x); "
                     f"{res['events']:,} events")
        elif name == "hostile":
            what = ("`run` peak memory (VmHWM) with the hostile corpus "
                    f"({res['corpus_records']} records) mixed into a 2,000-person stream")
            value = "; ".join(f"{k}: {v['input_bytes'] / 2**20:,.0f} MiB in, peak "
                              f"{v['peak_bytes'] / 2**20:,.0f} MiB, {v['seconds']} s"
                              for k, v in res["runs"].items())
        elif name == "peer":
            one, two = res["runs"]["1"], res["runs"]["2"]
            what = ("a minimal Quix Streams job (parse, per-key RocksDB state, one output"
                    " per input): 1 vs 2 processes, the bench spread harness")
            value = (f"2 processes {two['per_second']:,} = {res['two_to_one']:.2f}x of 1 "
                     f"process {one['per_second']:,}/s; work split between the 2: "
                     f"{res['split_two']}; CPU per event (jobs + broker + producer): "
                     + ", ".join(f"{r['processes']} process(es) {r['cpu_us_per_event']['jobs']}"
                                 f" + {r['cpu_us_per_event']['broker']}"
                                 f" + {r['cpu_us_per_event']['producer']} µs"
                                 for r in one["rounds"] + two["rounds"])
                     + "; producing took "
                     + f"{one['produce_seconds']} of {one['seconds']} s (1 process), "
                     f"{two['produce_seconds']} of {two['seconds']} s (2)"
                     + f"; {res['events']:,} events, Quix Streams {res['quixstreams']}, "
                     f"{res['cpu_count']} cores shared with the broker and the producer")
        elif name == "partition":
            rest, stage = res["restore_partition_0"], res["by_stage"]
            what = (f"at {res['profiles']:,} profiles over "
                    f"{res['partitions']} partitions: the commits of every stage after 1% of "
                    "the people came back, and one profile partition restored")
            value = (f"commits {res['commit_bytes'] / 2**20:,.1f} MiB = "
                     f"{res['commit_share']:.2%} of the whole state's "
                     f"{res['full_state_bytes'] / 2**20:,.0f} MiB (identity stage "
                     f"{stage['identity'][1] / 2**20:,.1f} of "
                     f"{stage['identity'][0] / 2**20:,.0f}, profile partitions "
                     f"{stage['profiles'][1] / 2**20:,.1f} of "
                     f"{stage['profiles'][0] / 2**20:,.0f}, trainer "
                     f"{stage['trainer'][1] / 2**10:,.1f} KiB of "
                     f"{stage['trainer'][0] / 2**10:,.1f}); partition 0 "
                     f"({res['partition_profiles']:,} profiles, {rest['records']:,} records):"
                     f" read {rest['read_seconds']} s + rebuild {rest['rebuild_seconds']} s")
        elif name == "compiled":
            what = (f"the {res['modules']} per-event modules compiled (Cython) vs their Python"
                    " source: in-process pipeline, events/s of CPU time, 2 runs each, ABBA")
            value = (f"compiled {res['compiled_per_second']:,} = {res['ratio']:.2f}x of pure"
                     f" Python {res['pure_per_second']:,}/s; first {res['lines']:,} lines of"
                     " the 1M-event stream")
            if "steps" in res:
                c, p = res["steps"]["compiled"], res["steps"]["pure"]
                value += (f"; per event (best of 5), compiled vs pure: reading a record"
                          f" {c['read_us']} vs {p['read_us']} µs, folding it into its profile"
                          f" {c['fold_us']} vs {p['fold_us']} µs")
                if "assess_us" in c:
                    value += (f"; per profile assessed, {c['assess_us']} vs {p['assess_us']} µs;"
                              f" per learn, {c['learn_us']} vs {p['learn_us']} µs")
        elif name == "profile":
            what = ("own time of the costliest functions (cProfile, 3,000 people; the Python"
                    " source, as cProfile does not see into compiled functions)")
            value = ", ".join(f"{t['function']} {t['own_share']:.0%}" for t in res["top"][:5])
        elif name == "hotspots":
            what = ("share of the compiled pipeline's time by function, its C API calls"
                    " included (perf's samples, CPU clock, lines"
                    f" {res['warm']:,}..{res['warm'] + res['lines']:,} of the 1M-event stream)")
            value = (", ".join(f"{t['function']} {t['share']:.1%}" for t in res["top"][:10])
                     + f"; {res['samples']:,} samples")
        else:
            what = (f"quality vs simulate truth per variant ({res['profiles_per_stream']:,}"
                    " people, the worst of seeds 1, 2, 3)")
            value = (f"stitching P {res['stitching_precision']}, R {res['stitching_recall']}; "
                     + "; ".join(_quality_row(v, runs) for v, runs in res["variants"].items()))
        rows.append(f"| {name} | {what} | {value} | {r['date']} | {r['machine']} | "
                    f"`{COMMAND} {name}` |")
    table = ("| bench | what | result (baseline in the same run) | date | machine | command |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    doc = ROOT / "BENCHMARKS.md"
    text = doc.read_text() if doc.exists() else ""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin in text and end in text:
        text = text[: text.index(begin) + len(begin)] + "\n" + table + text[text.index(end):]
    else:
        text += f"\n{begin}\n{table}{end}\n"
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="*", help=f"benchmarks to run: {', '.join(BENCHES)}")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--store", default="memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    collector.tune()  # what every persona-stream command runs with
    if args.child:
        print(json.dumps(CHILDREN[args.child]()))
        return
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child, args.store)))
        return
    unknown = [b for b in args.bench if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.bench or list(BENCHES):
        result = BENCHES[name]()
        record = {"bench": name, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                  "machine": machine(), "command": f"{COMMAND} {name}", "result": result}
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(name, json.dumps(result), flush=True)
    write_table()


if __name__ == "__main__":
    main()
