"""The alert rules behave under both ways workers are scraped: `promtool test rules`
runs deploy/prometheus/alerts.test.yml, and every alert has a case where it fires
and one where it stays quiet."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from workers.testing import require_tool

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ALERTS = PROM / "alerts.yml"
ALERT_TESTS = PROM / "alerts.test.yml"


def test_promtool_test_rules_passes() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "test", "rules", ALERT_TESTS.name], cwd=PROM,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    assert cases["rule_files"] == [ALERTS.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for check in test.get("alert_rule_test") or []:
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == alerts, alerts ^ fires
    assert quiet == alerts, alerts ^ quiet


def test_worker_down_is_tested_under_compose_and_kubernetes_scraping() -> None:
    """The k8s case is the one an `absent(up{job=...})` rule got wrong: two healthy pods
    scraped by annotation carry job="kubernetes-pods", and must not page."""
    cases = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    quiet_jobs = set()
    for test in cases:
        for check in test["alert_rule_test"]:
            if check["alertname"] == "PersonaStreamWorkerDown" and not check["exp_alerts"]:
                quiet_jobs |= {s["series"].split('job="')[1].split('"')[0]
                               for s in test["input_series"]}
    assert quiet_jobs == {"persona-stream", "kubernetes-pods"}


def test_the_dashboard_counts_workers_under_both_scrapes() -> None:
    """A workers-up panel reading only job="persona-stream" shows 0 on Kubernetes."""
    dashboard = (PROM.parent / "grafana" / "dashboards" / "persona-stream.json").read_text()
    ups = [line for line in dashboard.splitlines() if "up{" in line]
    assert ups
    for line in ups:
        assert 'up{job=\\"persona-stream\\"}' in line, line
        assert 'up{app_kubernetes_io_name=\\"persona-stream\\"}' in line, line
