"""A worker on the real local broker, observed the way operations observe it: its
/metrics (parsed, checked by promtool, scraped by a real Prometheus), /readyz
through start-up, and /personas rendered by headless Chromium.

One worker serves every test of the module (started once in a thread, so the
tests talk to it over HTTP like Prometheus does). Prometheus, promtool and
Chromium are optional locally (the test skips) but required in CI (it fails).
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import subprocess
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from workers.core.partitioned.local import LocalTopology
from workers.service import router, web
from workers.service.app import build_app, provision_topics
from workers.simulation.generator import simulate
from workers.testing import free_port, fresh_config, produce, require_tool
from workers.testing import http_get as get

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


@dataclasses.dataclass
class Worker:
    app: Any
    url: str
    port: int
    lines: list[bytes]
    readyz_codes: list[int]
    expected: LocalTopology  # the same stages over the same lines, in this process

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        _, body = get(f"{self.url}/metrics")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str) -> Iterator[Worker]:
    port = free_port()
    config = fresh_config(bootstrap=kafka_bootstrap, kafka={"partitions": 1},
                          metrics={"host": "127.0.0.1", "port": port},
                          segmentation={"warmup_profiles": 50})
    provision_topics(config)
    lines, _, _ = simulate(300, seed=11, days=3)
    lines = [*lines, b"\xff\xfe not utf-8", lines[0]]  # plus an invalid and a duplicate
    produce(config.kafka.input_topic, lines, kafka_bootstrap)

    box: dict[str, Any] = {}
    started = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box["loop"] = loop
        app = box["app"] = build_app(config)
        loop.run_until_complete(app.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(app.stop())
        loop.close()

    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        # sample lag and sizes often, so a short test sees lag reach 0 and a drawn line
        mp.setattr(router, "LAG_INTERVAL", 0.5)
        mp.setattr(web, "HISTORY_INTERVAL", 0.3)
        # the router's first assignment a second late: the probe below sees /readyz
        # before it (the group's join takes a few milliseconds on a local broker)
        assigned = router.Router.on_partitions_assigned

        async def late(self: router.Router, partitions: Any) -> None:
            await asyncio.sleep(1.0)
            await assigned(self, partitions)

        mp.setattr(router.Router, "on_partitions_assigned", late)
        thread = threading.Thread(target=serve, name="worker", daemon=True)
        thread.start()
        codes = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                code, _ = get(f"{url}/readyz", timeout=1)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)  # web server not listening yet
                continue
            codes.append(code)
            if code == 200:
                break
            time.sleep(0.02)
    assert started.wait(60), "worker did not start"
    expected = LocalTopology(config, config.kafka.partitions)
    expected.feed_many(lines)
    expected.flush()
    running = Worker(box["app"], url, port, lines, codes, expected)
    try:
        state = running.app.worker_state
        deadline = time.monotonic() + 90
        read = held = lag = None
        while time.monotonic() < deadline:
            lag = running.metrics().get(("persona_stream_consumer_lag", (("partition", "0"),)))
            stage = state.stage
            if stage is not None:
                read, held = stage.stats.events_read, stage.held
                if (read >= len(lines) and not held and lag == 0 and state.tasks_caught_up
                        and state.current_cards()):
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"worker did not catch up: read {read} of {len(lines)}, {held} held, "
                        f"lag {lag}, {len(state.current_cards())} persona cards followed")
        time.sleep(1.0)  # one more history sample and lag sample after the idle flush
        yield running
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(60)


def test_readyz_is_503_until_partitions_are_assigned_then_200(worker: Worker) -> None:
    assert worker.readyz_codes[-1] == 200
    assert 503 in worker.readyz_codes, worker.readyz_codes
    assert set(worker.readyz_codes) == {503, 200}
    assert get(f"{worker.url}/healthz")[0] == 200


def test_one_worker_alone_rebalances_each_role_group_once(worker: Worker) -> None:
    """Joining is its groups' one rebalance; the metric an operator's storm alert reads."""
    m = worker.metrics()
    rebalances = {dict(labels)["role"]: v for (name, labels), v in m.items()
                  if name == "persona_stream_rebalances_total"}
    assert rebalances == {"router": 1, "owner": 1, "profiles": 1, "trainer": 1}
    for role in rebalances:
        assert m[("persona_stream_rebalance_pause_seconds_count", (("role", role),))] == 1


def test_counters_equal_what_was_fed_and_lag_returns_to_zero(worker: Worker) -> None:
    """Each counter is what the same stages counted over the same lines in this process."""
    want = worker.expected.stats()
    assert want.events_read == len(worker.lines)
    m = worker.metrics()
    for outcome in ("valid", "invalid", "duplicate"):
        assert m[("persona_stream_events_total", (("outcome", outcome),))] == getattr(
            want, f"events_{outcome}"), outcome
    assert want.events_invalid >= 1 and want.events_duplicate >= 1
    assert sum(v for (name, _), v in m.items()
               if name == "persona_stream_invalid_events_total") == want.events_invalid
    assert m[("persona_stream_identity_merges_total", ())] == want.identity_merges
    assert m[("persona_stream_profiles", ())] == sum(
        len(task.work.profiles) for task in worker.expected.tasks)
    assert m[("persona_stream_model_version", ())] >= 1
    assert m[("persona_stream_consumer_lag", (("partition", "0"),))] == 0
    assert m[("persona_stream_last_event_time_seconds", (("partition", "0"),))] > 1e9
    assert m[("persona_stream_event_processing_seconds_count", ())] >= 1
    changes = sum(v for (name, _), v in m.items()
                  if name == "persona_stream_segment_changes_total")
    assert changes == want.segment_changes >= 1


def test_promtool_accepts_the_exposition(worker: Worker) -> None:
    promtool = require_tool("promtool")
    _, body = get(f"{worker.url}/metrics")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=30, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_a_real_prometheus_scrapes_the_worker(worker: Worker, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: persona-stream\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker.port}']}}]\n",
        encoding="utf-8")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    query = urllib.parse.urlencode({"query": "persona_stream_events_total"})
    result: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30  # start-up plus a couple of 1 s scrapes
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                _, body = get(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=2)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                continue
            result = orjson.loads(body).get("data", {}).get("result", [])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert result, "Prometheus never answered with persona_stream_events_total"
    scraped = {r["metric"]["outcome"]: float(r["value"][1]) for r in result}
    want = worker.expected.stats()
    assert scraped == {o: getattr(want, f"events_{o}") for o in ("valid", "invalid", "duplicate")}


def test_personas_page_renders_in_chromium(worker: Worker, tmp_path: Path) -> None:
    status, body = get(f"{worker.url}/personas")
    assert status == 200
    page = body.decode()
    cards = worker.app.worker_state.current_cards()
    assert cards
    for card in cards:
        assert html.escape(card["name"]) in page, card["name"]
    assert page.count("<polyline") == len({s for _, sizes in worker.app.size_history
                                           for s in sizes})
    chromium = require_tool("chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "personas.png"
    shot.unlink(missing_ok=True)
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
         f"--screenshot={shot}", "--window-size=1280,2000", f"{worker.url}/personas"],
        capture_output=True, timeout=60, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
