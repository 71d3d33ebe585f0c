"""Metrics follow the pipeline's Stats by deltas: exact, monotonic, never counted twice."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from workers.config import load
from workers.core.intake import Intake
from workers.core.pipeline import Pipeline
from workers.core.records import Output
from workers.core.stats import Stats
from workers.service.logs import JsonFormatter, logging_config
from workers.service.metrics import Metrics, counts_of
from workers.simulation.generator import simulate
from workers.testing import pipeline_over, require_tool

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "persona-stream.json"
METRIC = re.compile(r"\bpersona_stream_[a-z0-9_]+")
# series that exist once a label value is first seen (no zero series at start)
LABELLED = {"persona_stream_identity_merges_refused_total", "persona_stream_consumer_lag",
            "persona_stream_segment_size", "persona_stream_invalid_events_total",
            "persona_stream_last_event_time_seconds", "persona_stream_rebalances_total",
            "persona_stream_rebalance_pause_seconds_bucket",
            "persona_stream_rebalance_pause_seconds_sum",
            "persona_stream_rebalance_pause_seconds_count"}


@dataclass
class Msg:
    partition: int
    offset: int
    timestamp: int  # milliseconds


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_two_updates_do_not_double_count_and_end_equal_to_the_summary() -> None:
    lines, _, _ = simulate(120, seed=3, days=2)
    pipeline = Pipeline(load())
    metrics = Metrics()
    half = len(lines) // 2
    for line in lines[:half]:
        pipeline.feed(line)
    metrics.sync(pipeline)
    metrics.sync(pipeline)  # nothing new: nothing added
    first = value(metrics, "persona_stream_events_total", outcome="duplicate")
    assert first == pipeline.stats.events_duplicate
    for line in lines[half:]:
        pipeline.feed(line)
    pipeline.flush()
    metrics.sync(pipeline)
    metrics.sync(pipeline)
    summary = pipeline.summary()
    for outcome in ("valid", "invalid", "duplicate"):
        assert value(metrics, "persona_stream_events_total", outcome=outcome) == summary[
            f"events_{outcome}"], outcome
    for code, n in summary["invalid_by_error"].items():
        assert value(metrics, "persona_stream_invalid_events_total", error=code) == n
    for reason, n in summary["changes_by_reason"].items():
        assert value(metrics, "persona_stream_segment_changes_total", reason=reason) == n
    assert value(metrics, "persona_stream_identity_merges_total") == summary["identity_merges"]
    assert value(metrics, "persona_stream_identifiers_blocked_total") == summary[
        "identifiers_blocked"]


def test_held_valid_events_are_counted_once_their_outcome_is_final() -> None:
    lines, _, _ = simulate(40, seed=5, days=1)
    pipeline = Pipeline(load())
    metrics = Metrics()
    for line in lines:
        pipeline.feed(line)
    assert pipeline.buffered > 0
    metrics.sync(pipeline)
    assert value(metrics, "persona_stream_events_total", outcome="valid") == (
        pipeline.stats.events_valid - pipeline.buffered)
    pipeline.flush()
    metrics.sync(pipeline)
    assert value(metrics, "persona_stream_events_total", outcome="valid") == (
        pipeline.stats.events_valid)


def test_retired_segments_lose_their_series() -> None:
    metrics = Metrics()
    metrics._set_segment_sizes({0: 3, 1: 4})
    metrics._set_segment_sizes({1: 5, 2: 1})
    sizes = {k[1][0][1]: v for k, v in samples(metrics).items()
             if k[0] == "persona_stream_segment_size"}
    assert sizes == {"1": 5, "2": 1}


def test_batch_observations_lag_and_partitions() -> None:
    pipeline = Pipeline(load())
    metrics = Metrics()
    outputs = [
        Output("segment_change", "p", {"trigger_event_id": "e1", "occurred_at":
                                       "2026-01-01T00:00:00.000Z",
                                       "emitted_at": "2026-01-01T00:00:00.020Z"}),
        Output("segment_change", "p", {"trigger_event_id": None, "occurred_at":
                                       "2025-01-01T00:00:00.000Z",
                                       "emitted_at": "2026-01-01T00:00:00.020Z"}),
        Output("dead_letter", None, {"error": "not_json"}),
    ]
    intake = Intake(load())
    metrics.observe_routed([Msg(0, 8, 1_600_000), Msg(0, 9, 1_700_000)], intake)
    metrics.observe_routed([Msg(1, 4, 1_800_000)], intake)
    metrics.observe_batch(pipeline, 2, 0.002, outputs)
    assert value(metrics, "persona_stream_event_processing_seconds_count") == 1
    assert value(metrics, "persona_stream_event_processing_seconds_sum") == 0.001
    assert value(metrics, "persona_stream_event_to_emit_lag_seconds_count") == 1  # triggered only
    assert value(metrics, "persona_stream_event_to_emit_lag_seconds_bucket", le="0.025") == 1
    assert value(metrics, "persona_stream_event_to_emit_lag_seconds_bucket", le="0.01") == 0
    assert value(metrics, "persona_stream_last_event_time_seconds", partition="1") == 1800.0
    assert metrics.next_offset(0) == 10
    metrics.observe_consumer_lag({0: 5, 1: 0})
    metrics.forget_partitions([1])
    metrics.observe_consumer_lag({0: 0})
    lags = {k[1][0][1]: v for k, v in samples(metrics).items()
            if k[0] == "persona_stream_consumer_lag"}
    assert lags == {"0": 0}
    assert metrics.next_offset(1) is None
    metrics.replay_progress.set(0.5)
    assert value(metrics, "persona_stream_replay_progress_ratio") == 0.5


def test_registry_is_private_and_labels_carry_no_identifiers() -> None:
    lines, _, _ = simulate(60, seed=2, days=1)
    pipeline = pipeline_over(lines)
    a, b = Metrics(), Metrics()  # two registries: no "Duplicated timeseries" error
    a.sync(pipeline)
    allowed = {"outcome", "error", "reason", "segment", "partition", "le", "role", "hop"}
    for name, labels in samples(a):
        if name.startswith(("process_", "python_info", "persona_stream_build_info")):
            continue  # the standard collectors and the build: no identifier there
        assert name.startswith("persona_stream_"), name
        assert {k for k, _ in labels} <= allowed, (name, labels)
    assert value(b, "persona_stream_events_total", outcome="valid") == 0


def test_process_metrics_and_build_info_are_exposed() -> None:
    """What an operator reads first: memory and CPU of the process, and which build runs."""
    import platform

    from workers import __version__
    from workers.compiled import MODULES, compiled

    exposed = samples(Metrics())
    names = {name for name, _ in exposed}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total",
            "process_open_fds", "python_info"} <= names
    assert value(Metrics(), "process_resident_memory_bytes") > 10_000_000
    build = {labels: v for (name, labels), v in exposed.items()
             if name == "persona_stream_build_info"}
    assert build == {(("compiled", f"{len(compiled())}/{len(MODULES)}"),
                      ("python", platform.python_version()), ("version", __version__)): 1.0}


def test_json_log_lines_carry_extras() -> None:
    record = logging.LogRecord("persona_stream.worker", logging.INFO, __file__, 1,
                               "partitions %s", ("assigned",), None)
    record.partitions = [0, 1]
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "persona_stream.worker"
    assert line["message"] == "partitions assigned" and line["partitions"] == [0, 1]
    assert line["ts"].endswith("Z")
    assert logging_config("debug")["root"]["level"] == "DEBUG"


def test_promtool_accepts_the_alert_rules() -> None:
    """Unlike tests/test_deploy.py's check, this one fails in CI when promtool is missing."""
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_hop_reports_how_long_the_oldest_record_of_a_batch_waited() -> None:
    """Per partition batch, the wait of its first record: where a segment change's
    latency builds up between the stages."""
    metrics = Metrics()
    now = time.time() * 1000
    metrics.observe_hop("sequenced", {0: [Msg(0, 5, int(now - 2000)), Msg(0, 6, int(now))],
                                      1: [Msg(1, 9, int(now - 30))], 2: []})
    assert value(metrics, "persona_stream_hop_wait_seconds_count", hop="sequenced") == 2
    assert value(metrics, "persona_stream_hop_wait_seconds_bucket", hop="sequenced",
                 le="1.0") == 1  # the 30 ms one; the other waited 2 s
    assert value(metrics, "persona_stream_hop_wait_seconds_bucket", hop="sequenced",
                 le="2.5") == 2
    assert value(metrics, "persona_stream_hop_wait_seconds_count", hop="input") == 0
    assert value(metrics, "persona_stream_hop_wait_seconds_count", hop="profiles") == 0


def test_alerts_and_dashboard_use_only_exposed_metric_names() -> None:
    exposed = {s.name for f in text_string_to_metric_families(Metrics().exposition().decode())
               for s in f.samples}
    exposed |= {f"{name}_bucket" for name in ("persona_stream_event_processing_seconds",
                                               "persona_stream_event_to_emit_lag_seconds")}
    used = set(METRIC.findall(ALERTS.read_text(encoding="utf-8")))
    used |= set(METRIC.findall(DASHBOARD.read_text(encoding="utf-8")))
    assert used and used <= exposed | LABELLED, used - exposed - LABELLED


def test_what_is_not_kept_is_counted() -> None:
    """Trait keys past the per-profile limit, and events too late for the de-dup window."""
    pipeline = Pipeline(load())
    base = 1_767_600_000.0
    for i in range(70):  # one person, a new trait key each time: 64 kept, 6 not
        pipeline.feed(orjson.dumps({"event_id": f"t-{i}", "occurred_at": _at(base + i),
                                    "type": "identify", "identity": {"user_id": "u-1"},
                                    "traits": {f"k{i}": i}}))
    for i in range(3):  # the stream moves two days on, then three events from before
        pipeline.feed(orjson.dumps({"event_id": f"n-{i}", "occurred_at": _at(base + 2e5 + i),
                                    "type": "page_view", "identity": {"user_id": "u-2"}}))
    pipeline.feed(orjson.dumps({"event_id": "late", "occurred_at": _at(base + 100),
                                "type": "page_view", "identity": {"user_id": "u-3"}}))
    pipeline.flush()
    metrics = Metrics()
    metrics.sync(pipeline)
    assert value(metrics, "persona_stream_traits_dropped_total") == 6
    assert value(metrics, "persona_stream_events_beyond_dedup_window_total") == 1


def test_optional_fields_a_router_dropped_or_coerced_are_counted_once() -> None:
    """Routers read the records they forward, so what reading left out or made usable is
    counted where they run, by the growth since their last batch."""
    intake = Intake(load())
    metrics = Metrics()
    event = {"event_id": "e-1", "occurred_at": _at(1_767_600_000.0), "type": "purchase",
             "identity": {"user_id": "u-1"}, "channel": 7,
             "properties": {"revenue": "19.90"}}
    for n in (1, 2):
        intake.read(orjson.dumps({**event, "event_id": f"e-{n}"}))
        metrics.observe_routed([Msg(0, n, 1_600_000)], intake)
        metrics.observe_routed([], intake)  # nothing new read: nothing added
        assert value(metrics, "persona_stream_fields_dropped_total", field="channel") == n
        assert value(metrics, "persona_stream_values_coerced_total",
                     field="properties.revenue") == n


def _at(ts: float) -> str:
    from workers.core.touchpoints import format_time

    return format_time(ts)


def _changes_counted(metrics: Metrics) -> float:
    return sum(sample.value for family in text_string_to_metric_families(
        metrics.exposition().decode()) if family.name == "persona_stream_segment_changes"
        for sample in family.samples if sample.name.endswith("_total"))


def test_each_holder_of_state_counts_only_what_it_did_after_taking_it() -> None:
    """A worker's profile partitions and trainer each advance
    the counters by their own growth; one taken over starts from its restored counts."""
    metrics = Metrics()
    first, second = Stats(), Stats()
    metrics.start_source("profiles:0", counts_of(first))
    metrics.start_source("profiles:1", counts_of(second))
    first.changes_by_reason["assignment"] = 3
    second.changes_by_reason["merge"] = 2
    metrics.observe_stats("profiles:0", first, [])
    metrics.observe_stats("profiles:1", second, [])
    assert _changes_counted(metrics) == 5
    metrics.forget_source("profiles:1")  # handed over
    restored = Stats(changes_by_reason={"merge": 2})  # what its next holder restores
    metrics.start_source("profiles:1", counts_of(restored))
    restored.changes_by_reason["merge"] = 4
    metrics.observe_stats("profiles:1", restored, [])
    assert _changes_counted(metrics) == 7  # 3 + 2, then the 2 done since the take-over
