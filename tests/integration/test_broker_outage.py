"""A broker outage, on a second real broker of its own (the suite's broker stays up).

The worker keeps answering ``/healthz``, ``/readyz`` goes 503 with the reason and
``/status`` says since when, persona-stream itself says it once (a WARNING when
the broker goes, one when it is back), the client libraries' retry lines are
rate-limited, and once the broker is back nothing was lost.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from workers.simulation.generator import simulate
from workers.testing import (
    ROOT,
    Record,
    WorkerProcess,
    http_get,
    pipeline_over,
    produce,
    wait_for,
    worker_config,
)

pytestmark = pytest.mark.integration


def _kafka(command: str, port: int, data: Path) -> None:
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA": str(data),
           "KAFKA_HEAP": "256m"}
    subprocess.run(["bash", str(ROOT / "deploy" / "kafka.sh"), command], env=env, check=True,
                   capture_output=True, timeout=180)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A broker of this test's own on three free ports (client, controller, SASL_SSL)."""
    port = _port_triple()
    data = tmp_path / "kafka"
    _kafka("start", port, data)
    try:
        yield port, data
    finally:
        _kafka("stop", port, data)


def _port_triple() -> int:
    """A port whose next two are free too (the broker's controller and SASL_SSL listeners),
    below the range the kernel hands out to outgoing connections: the broker restarts on
    them after the outage, and in that range any connection made meanwhile may hold one
    (CI once, in that range: "failed to bind to 127.0.0.1:50184: Address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(50):
        port = rng.randrange(low // 2, low - 3)
        if all(_bindable(p) for p in (port, port + 1, port + 2)):
            return port
    pytest.fail("no three free ports in a row")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True



def _page(worker: WorkerProcess, path: str) -> tuple[int, dict[str, object]]:
    status, body = http_get(worker.url + path, timeout=3.0)
    return status, orjson.loads(body)


# longer than aiokafka waits for a topic's metadata before a send gives up (40 s): the
# timers' sends (persona cards, card reports, the idle flush) fail during the outage, and
# used to stop the worker
OUTAGE_SECONDS = 50


def test_an_outage_is_said_plainly_and_loses_nothing(
        own_broker: tuple[int, Path], unique_name: Callable[[str], str],
        tmp_path: Path) -> None:
    port, data = own_broker
    bootstrap = f"127.0.0.1:{port}"
    lines = simulate(150, seed=41, days=2)[0]
    config, settings = worker_config(tmp_path, unique_name, bootstrap=bootstrap, partitions=1,
                                     connect_timeout_seconds=3)
    topic = settings["kafka"]["input_topic"]
    half = len(lines) // 2
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as worker:
        wait_for(lambda: _page(worker, "/readyz")[0] == 200 if worker.status() else False,
                 90, "the worker to be ready")
        produce(topic, [Record(line) for line in lines[:half]], bootstrap)
        wait_for(lambda: (worker.status() or {}).get("events_read") == half, 120,
                 "the first half to be processed")
        # the first half committed: nothing is due to the broker during the outage but the
        # timers' sends (a commit refused for good stops the worker: README)
        wait_for(lambda: (worker.status() or {}).get("committed_offset")
                 == (worker.status() or {}).get("next_offset"), 30, "the first half committed")
        time.sleep(3)  # and the other roles' commits, every second

        _kafka("stop", port, data)
        wait_for(lambda: _page(worker, "/readyz")[0] == 503, 30, "readiness to drop")
        code, ready = _page(worker, "/readyz")
        assert code == 503 and ready["status"] == "broker unreachable" and ready["reason"]
        assert _page(worker, "/healthz")[0] == 200  # alive: no restart for an outage
        started = time.monotonic()
        status = worker.status()
        assert time.monotonic() - started < 3.0  # /status answers during the outage
        assert status is not None and status["broker"]["reachable"] is False
        assert status["broker"]["since"]
        time.sleep(OUTAGE_SECONDS)
        assert worker.proc.poll() is None  # a timer's failed send did not stop it

        _kafka("start", port, data)
        wait_for(lambda: _page(worker, "/readyz")[0] == 200, 90, "readiness to come back")
        produce(topic, [Record(line) for line in lines[half:]], bootstrap)
        wait_for(lambda: (worker.status() or {}).get("events_read") == len(lines), 120,
                 "the second half to be processed")
        assert worker.proc.poll() is None
    log = [orjson.loads(line) for line in (tmp_path / f"worker-solo-{worker.port}.log")
           .read_text().splitlines() if line.startswith("{")]
    said = [entry["message"] for entry in log if entry["logger"] == "persona_stream.worker"]
    assert said.count("the broker does not answer; outputs wait, nothing is lost") == 1
    assert said.count("the broker answers again") == 1
    from_clients = [e for e in log if e["logger"].startswith(("aiokafka", "kafka", "faust"))]
    assert len(from_clients) < 60, [e["message"] for e in from_clients][:20]


def test_sigterm_during_an_outage_stops_the_worker_and_its_restart_loses_nothing(
        own_broker: tuple[int, Path], unique_name: Callable[[str], str],
        tmp_path: Path) -> None:
    """Stopping waits for the roles' last commits, which a broker that is gone never
    takes: the worker gives up after STOP_SECONDS (it used to wait forever, ignoring
    SIGTERM), and a restart replays what was not committed."""
    from workers.service.app import STOP_SECONDS

    port, data = own_broker
    bootstrap = f"127.0.0.1:{port}"
    lines = simulate(150, seed=42, days=2)[0]
    half = len(lines) // 2
    config, settings = worker_config(tmp_path, unique_name, bootstrap=bootstrap, partitions=1,
                                     connect_timeout_seconds=3)
    topic = settings["kafka"]["input_topic"]
    worker = WorkerProcess(config, instance_id="solo", log_dir=tmp_path)
    try:
        wait_for(lambda: (worker.status() or {}).get("tasks_caught_up") is not None, 90,
                 "the worker to hold its partitions")
        produce(topic, [Record(line) for line in lines[:half]], bootstrap)
        wait_for(lambda: (worker.status() or {}).get("events_read") == half, 120,
                 "the first half to be processed")
        _kafka("stop", port, data)
        wait_for(lambda: _page(worker, "/readyz")[0] == 503, 30, "readiness to drop")
        worker.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: worker.proc.poll() is not None, STOP_SECONDS + 20,
                 "the worker to stop")
    finally:
        worker.stop(signal.SIGKILL)
    assert worker.proc.returncode == 0
    log = (tmp_path / f"worker-solo-{worker.port}.log").read_text()
    assert "stopped without a last commit" in log

    _kafka("start", port, data)
    with WorkerProcess(config, instance_id="solo", log_dir=tmp_path) as again:
        produce(topic, [Record(line) for line in lines[half:]], bootstrap)

        def finished() -> bool:
            status = again.status() or {}
            return bool(status.get("caught_up") and status.get("tasks_caught_up"))

        wait_for(finished, 180, "the restarted worker to apply every record")
        code, body = again.admin_get("/profiles")
        assert code == 200
    got = {p["profile_id"]: ({t: sorted(v) for t, v in p["identifiers"].items()},
                             p["event_count"]) for p in map(orjson.loads, body.splitlines())}
    expected = pipeline_over(lines)
    want = {pid: ({t: sorted(v) for t, v in snap["identifiers"].items()},
                  snap["event_count"])
            for pid in expected.profiles for snap in [expected.profile_snapshot(pid)]}
    assert got == want
