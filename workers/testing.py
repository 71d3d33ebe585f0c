"""Helpers shared by the tests and the benchmarks (like Bytewax's ``testing.py``).

Nothing in the product imports this module. Each helper is written once, here:

- ports and names: :func:`free_port`, :func:`unique_names`
- configurations on fresh topics: :func:`fresh_topics`, :func:`fresh_settings`,
  :func:`fresh_config`, :func:`config_from`, :func:`write_config`
- the broker: :func:`producer`, :func:`produce` (with :class:`Record` and
  :func:`identity_key`), :func:`topic_records`, :func:`sasl_listener`
- streams with personal data: :func:`personal_stream`
- the in-process reference: :func:`pipeline_over`
- processes and pages: :func:`run_cli`, :class:`WorkerProcess`,
  :func:`worker_processes`, :func:`http_get`, :func:`worker_status`,
  :func:`require_tool`, :func:`output_under_other_hashseed`
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson
import yaml

from workers.config import Config, load, validate

if TYPE_CHECKING:
    from workers.core.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent  # the checkout (tests run from one)
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
"""The local broker the integration tests and the Kafka benchmarks use."""
_T = TypeVar("_T")

Settings = dict[str, dict[str, Any]]
"""Configuration overrides by section, the shape of a ``--config`` file."""


# ---- ports and names --------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now and that this process has not
    handed out before (the system picks it; use it soon, nothing holds it). A worker
    binds its ports a second or so after it starts: until then the system can pick the
    same port again, and a worker restarted meanwhile found its admin port taken."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


_GIVEN: set[int] = set()  # ports free_port handed out


def wait_for(check: Callable[[], _T], seconds: float, what: str,
             state: Callable[[], object] | None = None) -> _T:
    """Poll ``check`` twice a second until it gives a true value, and return that value
    (what held when the wait ended: a second look may already see another assignment);
    TimeoutError naming ``what`` after ``seconds`` (a test fails with it, a benchmark
    stops), with what ``state()`` says then: a CI log's only view of what was missing."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    seen = "" if state is None else f"; at the end: {state()}"
    raise TimeoutError(f"timed out waiting for {what}{seen}")


def answers(bootstrap: str = BOOTSTRAP) -> bool:
    """Does something listen at ``bootstrap`` (one TCP connect, not a Kafka request)?"""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return False
    return True


#: the random suffixes :func:`unique_names` handed out in this process: the test suite
#: deletes the topics named with them when it ends (:func:`delete_issued_topics`)
ISSUED: set[str] = set()


def unique_names(run: str | None = None) -> Callable[[str], str]:
    """``name(prefix) -> "prefix-RUN"``: topic and group names that no other test, bench or
    earlier run uses; RUN is ``run``, or 8 random hex digits."""
    suffix = run or uuid.uuid4().hex[:8]
    if run is None:
        ISSUED.add(suffix)
    return lambda prefix: f"{prefix}-{suffix}"


def delete_issued_topics(bootstrap: str = BOOTSTRAP) -> int:
    """Delete the broker's topics named with a suffix this process handed out, so that a
    developer's broker does not pile up a suite's 1,200-odd partitions a run (its heap holds
    their metadata). How many it deleted; none when the broker does not answer."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not ISSUED or not answers(bootstrap):
        return 0
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    except KafkaError:
        return 0
    try:
        mine = [t for t in admin.list_topics()
                if any(suffix in t for suffix in ISSUED)]
        for start in range(0, len(mine), 100):
            admin.delete_topics(mine[start:start + 100], timeout_ms=30_000)
        return len(mine)
    except KafkaError:
        return 0
    finally:
        admin.close()


# ---- configurations on fresh topics -----------------------------------------------------


def fresh_topics(name: Callable[[str], str] | None = None,
                 bootstrap: str = BOOTSTRAP) -> dict[str, str]:
    """The ``kafka`` settings of a run of its own: the broker at ``bootstrap``, and an
    application id and input/output topics named by ``name`` (fresh ones by default)."""
    name = name or unique_names()
    return {"bootstrap_servers": bootstrap, "application_id": name("app"),
            "input_topic": name("touchpoints"), "dlq_topic": name("dlq"),
            "segment_changes_topic": name("changes"), "identity_merges_topic": name("merges"),
            "personas_topic": name("personas"), "audiences_topic": name("audiences"),
            "forget_topic": name("forget")}


def fresh_settings(name: Callable[[str], str] | None = None, *, bootstrap: str = BOOTSTRAP,
                   **sections: Mapping[str, Any]) -> Settings:
    """Configuration overrides whose ``kafka`` section is :func:`fresh_topics` and whose admin
    listener is on a free port; each keyword is a section whose keys are set too
    (``kafka={"partitions": 1}``, ``segmentation={"warmup_profiles": 50}``)."""
    settings = {section: dict(values) for section, values in sections.items()}
    settings["kafka"] = {**fresh_topics(name, bootstrap), **settings.get("kafka", {})}
    settings["admin"] = {"port": free_port(), **settings.get("admin", {})}
    return settings


def config_from(settings: Mapping[str, Mapping[str, Any]]) -> Config:
    """The defaults (and any ``PERSONA_STREAM_*`` variables) with ``settings`` set over them,
    checked as the loader checks a configuration."""
    base = load()
    return validate(dataclasses.replace(base, **{
        section: dataclasses.replace(getattr(base, section), **values)
        for section, values in settings.items()}))


def fresh_config(name: Callable[[str], str] | None = None, *, bootstrap: str = BOOTSTRAP,
                 **sections: Mapping[str, Any]) -> Config:
    """:func:`fresh_settings` as a :class:`Config`, for a pipeline, replay or worker run
    in this process."""
    return config_from(fresh_settings(name, bootstrap=bootstrap, **sections))


def write_config(path: Path, settings: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``settings`` as a YAML file for ``--config``; returns ``path``."""
    path.write_text(yaml.safe_dump({k: dict(v) for k, v in settings.items()}),
                    encoding="utf-8")
    return path


def worker_config(directory: Path, name: Callable[[str], str] | None = None, *,
                  bootstrap: str = BOOTSTRAP, state: Mapping[str, Any] | None = None,
                  **kafka: Any) -> tuple[Path, Settings]:
    """What the worker-process tests run: fresh topics, the ``kafka`` keys given, a small
    warm-up (50 profiles, so models appear on small streams), pages on 127.0.0.1, WARNING
    logs; written to ``directory/config.yaml``. Returns the file and the settings."""
    settings = fresh_settings(name, bootstrap=bootstrap, kafka=kafka,
                              segmentation={"warmup_profiles": 50},
                              metrics={"host": "127.0.0.1", "log_level": "WARNING"},
                              state=state or {})
    return write_config(directory / "config.yaml", settings), settings


# ---- the broker -------------------------------------------------------------------------


def sasl_listener(bootstrap: str = BOOTSTRAP) -> dict[str, str] | None:
    """The ``kafka`` settings of the local broker's SASL_SSL listener (SCRAM-SHA-512, its own
    CA): from ``KAFKA_SASL_BOOTSTRAP``, ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD`` and
    ``KAFKA_SSL_CAFILE`` when set, else from ``deploy/kafka.sh env`` for the broker at
    ``bootstrap``; None when that broker has no such listener."""
    names = ("KAFKA_SASL_BOOTSTRAP", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
             "KAFKA_SSL_CAFILE")
    found = {name: os.environ[name] for name in names if os.environ.get(name)}
    if len(found) < len(names):
        port = bootstrap.rpartition(":")[2]
        done = subprocess.run(["bash", str(ROOT / "deploy" / "kafka.sh"), "env"],
                              env={**os.environ, "KAFKA_PORT": port}, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            return None
        found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {"bootstrap_servers": found["KAFKA_SASL_BOOTSTRAP"], "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": found["KAFKA_SASL_USERNAME"],
            "sasl_password": found["KAFKA_SASL_PASSWORD"],
            "ssl_cafile": found["KAFKA_SSL_CAFILE"]}


class Record(NamedTuple):
    """One record to produce: its value, and optionally a key and a timestamp."""

    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None


def producer(bootstrap: str = BOOTSTRAP, **options: Any) -> Any:
    """A kafka-python ``KafkaProducer`` set up for test and bench data (batched, every
    record acknowledged); ``options`` override its settings. Close it when done."""
    from kafka import KafkaProducer

    settings: dict[str, Any] = {"linger_ms": 20, "batch_size": 256 * 1024, "acks": "all",
                                **options}
    return KafkaProducer(bootstrap_servers=bootstrap, **settings)


def produce(topic: str, records: Iterable[bytes | Record], bootstrap: str = BOOTSTRAP,
            **options: Any) -> int:
    """Send ``records`` (raw values, or :class:`Record`) to ``topic`` in order and wait until
    the broker has every one; returns how many were sent. ``options`` go to
    :func:`producer`."""
    client = producer(bootstrap, **options)
    sent = 0
    try:
        for record in records:
            value, key, timestamp_ms = record if isinstance(record, Record) else (record,
                                                                                  None, None)
            client.send(topic, value=value, key=key, timestamp_ms=timestamp_ms)
            sent += 1
        client.flush()
    finally:
        client.close()
    return sent


def identity_key(line: bytes, id_type: str | None = None) -> bytes | None:
    """The key a tracking SDK gives an event: the value of its ``id_type`` identifier (its
    first identifier when None); None for a line that has no such identifier."""
    try:
        identity = orjson.loads(line)["identity"]
        value = identity[id_type] if id_type else next(iter(identity.values()))
        return value.encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, StopIteration):
        return None


def topic_records(topic: str, bootstrap: str = BOOTSTRAP, idle_ms: int = 3000,
                  isolation_level: str = "read_uncommitted") -> list[dict[str, Any]]:
    """Every JSON record in ``topic``: at least those it held when called, then on until
    none arrives for ``idle_ms`` (no consumer group, nothing committed); ``read_committed``
    skips what transactions aborted or have not committed yet."""
    return [record for record, _ in topic_messages(topic, bootstrap, idle_ms, isolation_level)]


# a topic's records up to its end offsets are read even when the broker is slow to serve
# them, but not longer than this (a transaction left open holds read_committed back)
_READ_TO_END_SECONDS = 60.0


def topic_messages(topic: str, bootstrap: str = BOOTSTRAP, idle_ms: int = 3000,
                   isolation_level: str = "read_uncommitted",
                   ) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """As :func:`topic_records`, with each record's headers.

    The end offsets are taken first and read up to, so a broker slow to answer a new
    consumer (a busy CI machine, thousands of partitions) cannot make a short ``idle_ms``
    return nothing; only after them does the idle wait begin.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level=isolation_level)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        found: list[tuple[dict[str, Any], dict[str, bytes]]] = []
        started = last = time.monotonic()
        while True:
            batches = consumer.poll(timeout_ms=100)
            now = time.monotonic()
            if batches:
                found.extend((orjson.loads(m.value), dict(m.headers or []))
                             for messages in batches.values() for m in messages)
                last = now
                continue
            at_end = all(consumer.position(tp) >= ends[tp] for tp in partitions)
            if (at_end or now - started > _READ_TO_END_SECONDS) and now - last >= idle_ms / 1000:
                return found
    finally:
        consumer.close()


def cloudevents_problems(kind: str, record: dict[str, Any], headers: dict[str, bytes],
                         origin: str) -> list[str]:
    """What a message of ``kind`` breaks of CloudEvents' binary mode (attributes as
    ``ce_`` headers, the body the record itself, untouched); empty when nothing."""
    from workers.io.cloudevents import SCHEMAS, event_type

    text = {name: value.decode() for name, value in headers.items()}
    ident, time = {"audience": ("messageId", "timestamp"),
                   "segment_change": ("event_id", "occurred_at"),
                   "identity_merge": ("event_id", "occurred_at"),
                   "segment_lineage": ("event_id", "occurred_at")}.get(kind, (None, None))
    expected = {"ce_specversion": "1.0", "ce_type": event_type(kind),  # type: ignore[arg-type]
                "ce_source": origin, "content-type": "application/json",
                "schema": SCHEMAS[kind],  # type: ignore[index]
                "ce_id": record[ident] if ident else text.get("ce_id"),
                "ce_time": record[time] if time else None}
    problems = [f"{name}: {text.get(name)!r}, not {value!r}" for name, value in expected.items()
                if text.get(name) != value]
    if ident is None and len(text.get("ce_id", "")) != 32:
        problems.append("ce_id: no value hash")
    if "schema" in record and record["schema"] != text.get("schema"):
        problems.append("the body's schema differs from the header's")
    return problems


# ---- streams with personal data ---------------------------------------------------------


def segmented_person(pipeline: Pipeline) -> tuple[str, dict[str, list[str]]]:
    """A profile in a segment with an email and more identifiers: its id and identifiers
    (someone worth forgetting in the forget tests)."""
    for pid, state in sorted(pipeline.profiles.items()):
        ids = pipeline.graph.identifiers(pid)
        if state.segment is not None and ids.get("email") and len(ids) > 1:
            return pid, {t: list(v) for t, v in ids.items()}
    raise AssertionError("the stream has no segmented profile with an email")


def lines_naming(identifiers: dict[str, list[str]], lines: list[bytes]) -> list[bytes]:
    """The lines whose identity names one of ``identifiers`` (that person's events)."""
    values = {(t, v) for t, vs in identifiers.items() for v in vs}
    out = []
    for line in lines:
        try:
            identity = orjson.loads(line)["identity"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(identity, dict) and values & set(identity.items()):
            out.append(line)
    return out



def personal_stream(profiles: int, seed: int) -> tuple[list[bytes], set[str]]:
    """A simulated stream whose people also give a phone number (with every email, the
    person's own), plus three invalid records that carry an email and a phone: the lines,
    and every identifier value in them that is not junk (what must not show where
    identifiers do not go; junk such as ``null`` is no one's and shows everywhere)."""
    import hashlib

    from workers.core.identity import IdentityGraph, IdentityRules
    from workers.simulation.generator import simulate

    rules = load(env={}).identity
    junk = IdentityGraph(IdentityRules.from_config(
        rules.limits, rules.blocklist_values, rules.blocklist_patterns)).is_junk

    lines: list[bytes] = []
    values: set[str] = set()
    for line in simulate(profiles, seed=seed, days=2)[0]:
        try:
            event = orjson.loads(line)
            identity = event["identity"]
            email = identity.get("email")
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
            lines.append(line)
            continue
        if isinstance(email, str):
            digits = int(hashlib.blake2b(email.encode(), digest_size=4).hexdigest(), 16)
            identity["phone"] = f"+44 7700 {digits % 1_000_000:06d}"
            line = orjson.dumps(event)
        values.update(v for v in identity.values() if isinstance(v, str) and not junk(v))
        lines.append(line)
    lines += [b'{"event_id": "bad-1", "occurred_at": "yesterday", "type": "page_view",'
              b' "identity": {"email": "lost.person@mailbox.org", "phone": "+31 6 1234 5678"}}',
              b"email=lost.person@mailbox.org phone=+31612345678 not json",
              b'{"event_id": "bad-2", "type": "purchase", "identity": {"user_id": "u-lost-42"}}']
    values |= {"lost.person@mailbox.org", "+31 6 1234 5678", "+31612345678", "u-lost-42"}
    return lines, values


# ---- the in-process reference -----------------------------------------------------------


SMALL_WARMUP = 200


def small_stream_config(config: Config | None = None) -> Config:
    """The configuration (default unless ``config``) with a warm-up a test stream of a few
    hundred people reaches (200 rich profiles instead of 600): for tests that need
    segments, not their quality."""
    config = config or load()
    return dataclasses.replace(config, segmentation=dataclasses.replace(
        config.segmentation, warmup_profiles=SMALL_WARMUP))


def pipeline_over(lines: Iterable[bytes], config: Config | None = None) -> Pipeline:
    """A pipeline (default configuration unless ``config``) fed ``lines`` in order and
    flushed: what one process makes of them, the reference the shells are held to."""
    from workers.core.pipeline import Pipeline

    pipeline = Pipeline(config or load())
    for line in lines:
        pipeline.feed(line)
    pipeline.flush()
    return pipeline


# ---- processes and pages ----------------------------------------------------------------


def _cli_command() -> list[str]:
    """The installed console script next to this interpreter, as an operator runs it;
    ``python -m workers.cli`` where it is not installed."""
    script = Path(sys.executable).with_name("persona-stream")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "workers.cli"]


CLI: list[str] = _cli_command()
"""The command line that starts ``persona-stream``."""


def run_cli(*args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    """Run ``persona-stream ARGS`` in a fresh process and wait: exit code, stdout and
    stderr (bytes). ``env`` adds to (or overrides) this process's environment."""
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env}, check=False)


def http_get(url: str, timeout: float = 5.0,
             headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``url`` (with ``headers``): its status and body, also for an error status; raises
    ``OSError`` (``URLError``, ``ConnectionError``, ``TimeoutError``) when nothing answers."""
    try:
        request = urllib.request.Request(url, headers=dict(headers or {}))
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, bytes(exc.read())


def worker_status(port: int, host: str = "127.0.0.1",
                  timeout: float = 5.0) -> dict[str, Any] | None:
    """The ``/status`` page of the worker on ``port``; None while none answers there."""
    try:
        status, body = http_get(f"http://{host}:{port}/status", timeout)
    except OSError:
        return None
    return dict(orjson.loads(body)) if status == 200 else None


class WorkerProcess:
    """A ``persona-stream worker --config FILE`` process with its public pages on ``port``
    and its admin pages on ``admin_port`` (free ones by default), its static group
    membership ``instance_id``, ``env`` added to its environment and, given ``log_dir``,
    its output in ``log_dir/worker-INSTANCE-PORT.log``. A context manager: leaving it
    stops the process."""

    def __init__(self, config: str | os.PathLike[str], *, port: int | None = None,
                 instance_id: str | None = None, log_dir: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.admin_port = free_port()
        env = {"PERSONA_STREAM_METRICS__PORT": str(self.port),
               "PERSONA_STREAM_ADMIN__PORT": str(self.admin_port), **(env or {})}
        if instance_id is not None:
            env["PERSONA_STREAM_KAFKA__INSTANCE_ID"] = instance_id
        self._log = None if log_dir is None else open(  # noqa: SIM115
            log_dir / f"worker-{instance_id or 'worker'}-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [*CLI, "worker", "--config", os.fspath(config)], env={**os.environ, **env},
            stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> bytes | None:
        """The body of the page at ``path``; None unless it answers 200."""
        try:
            status, body = http_get(self.url + path)
        except OSError:
            return None
        return body if status == 200 else None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin_get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """Status and body of the admin page at ``path``, with ``token`` as the bearer."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return http_get(self.admin_url + path, headers=headers)

    def status(self) -> dict[str, Any] | None:
        """Its ``/status`` page; None while it does not answer."""
        return worker_status(self.port)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Send ``sig`` (SIGKILL: no goodbye) and wait; killed when it outstays ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def worker_processes(config: str | os.PathLike[str], count: int,
                     log_dir: Path | None = None) -> Iterator[list[WorkerProcess]]:
    """``count`` worker processes on one configuration file (instances ``w0``, ``w1``...),
    started together and stopped on leaving."""
    started: list[WorkerProcess] = []
    failed = True
    try:
        for i in range(count):
            started.append(WorkerProcess(config, instance_id=f"w{i}", log_dir=log_dir))
        yield started
        failed = False
    finally:
        # after a failure, quickly: a minute's grace each outlasted pytest-timeout, which
        # left the rest running beside the next tests
        for worker in started:
            worker.stop(timeout=10.0 if failed else 60.0)


def require_tool(binary: str) -> str:
    """The path of ``binary``: a missing tool skips the test locally and fails it in CI
    (where ``CI`` is set: CI must install it)."""
    import pytest

    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed (CI must install it: see .ci/run)")
        pytest.skip(f"{binary} is not installed")
    return path


def output_under_other_hashseed(script: str, timeout: float) -> str:
    """Run ``script`` in a child Python whose PYTHONHASHSEED differs from this process's,
    and return what it printed: determinism must not hang on set or dict order."""
    seed = "4242" if os.environ.get("PYTHONHASHSEED") != "4242" else "1"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
