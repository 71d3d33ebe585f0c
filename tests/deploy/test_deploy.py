"""Deployment files hang together: Dockerfile, docker-compose.yml, Prometheus
configuration and alerts, Grafana provisioning and dashboard.

Static checks run everywhere (PyYAML/json only). Checks that need a tool run
only where it exists: `docker compose config` with the compose plugin,
`promtool check` with Prometheus' promtool on PATH; each of those is its own
test and is skipped, not passed, without the tool. No network, no broker.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
ALERTS = PROM_DIR / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "persona-stream.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "persona-stream.yml"

METRICS_PORT = 9464
EXPECTED_ALERTS = {
    "PersonaStreamWorkerDown",
    "PersonaStreamConsumerLagGrowing",
    "PersonaStreamDeadLetterRateHigh",
    "PersonaStreamMergeRefusalsSpiking",
    "PersonaStreamNoSegmentChanges",
    "PersonaStreamRebalanceStorm",
}
SEVERITIES = {"critical", "warning", "info"}
METRIC_RE = re.compile(r"\b(persona_stream_[a-z0-9_]+|up)\b")


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def service(name: str) -> dict[str, Any]:
    services = compose().get("services") or {}
    assert name in services, f"service {name!r} missing from docker-compose.yml"
    return services[name] or {}


def env(svc: dict[str, Any]) -> dict[str, str]:
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) for every volume entry, short or long syntax."""
    out = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) == 1:  # anonymous volume
                continue
            out.append((parts[0], parts[1]))
        else:
            out.append((str(vol.get("source", "")), str(vol["target"])))
    return out


def bind_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s, t) for s, t in mounts(svc) if s.startswith((".", "/", "~"))]


def target_of(svc: dict[str, Any], host_path: str) -> str | None:
    wanted = (ROOT / host_path).resolve()
    for src, tgt in bind_mounts(svc):
        if (ROOT / src).resolve() == wanted:
            return tgt
    return None


@cache
def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def instruction(name: str) -> list[str]:
    return [rest for word, rest in dockerfile_instructions() if word == name]


def alert_rules() -> list[dict[str, Any]]:
    data = yaml_file(ALERTS)
    assert isinstance(data, dict) and data.get("groups"), "alerts.yml has no groups"
    return [rule for group in data["groups"] for rule in group.get("rules") or []]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels") or []))  # collapsed rows
    return out


# ------------------------------------------------------------------ docker compose


def _compose_plugin_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True,
                               timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def test_docker_compose_config_is_valid() -> None:
    if not _compose_plugin_available():
        pytest.skip("`docker compose` is not available here (static checks run below)")
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_compose_has_the_four_services() -> None:
    services = compose().get("services") or {}
    assert {"kafka", "worker", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        assert svc.get("image") or svc.get("build"), f"{name} has neither image nor build"


def test_compose_bind_mounted_host_paths_exist() -> None:
    checked = 0
    for name, svc in (compose().get("services") or {}).items():
        for src, _ in bind_mounts(svc):
            assert not src.startswith(("/", "~")), f"{name}: absolute host path {src}"
            assert (ROOT / src).exists(), f"{name}: {src} does not exist in the repo"
            checked += 1
    assert checked >= 4  # prometheus config + rules, grafana provisioning + dashboards


def test_compose_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, svc in (compose().get("services") or {}).items():
        for src, _ in mounts(svc):
            if not src.startswith((".", "/", "~")):
                assert src in declared, f"{name}: volume {src!r} not declared at top level"


def test_compose_worker_builds_this_repo() -> None:
    worker = service("worker")
    build = worker.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    assert context in (".", "./"), f"worker must build from '.', not {context!r}"
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / dockerfile).is_file()
    assert not worker.get("ports"), "worker must not publish host ports (scaling clashes)"
    depends = worker.get("depends_on") or {}
    assert isinstance(depends, dict) and depends.get("kafka", {}).get("condition") == (
        "service_healthy"
    ), "worker must wait for a healthy kafka"


def test_compose_worker_points_at_the_in_network_kafka_listener() -> None:
    bootstrap = env(service("worker")).get("PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS")
    assert bootstrap == "kafka:9092"
    advertised = env(service("kafka"))["KAFKA_ADVERTISED_LISTENERS"]
    assert any(a.split("://", 1)[1] == bootstrap for a in advertised.split(","))


def test_compose_kafka_is_a_consistent_kraft_single_node() -> None:
    kafka = service("kafka")
    image = str(kafka.get("image", ""))
    assert image.startswith("apache/kafka:"), image
    assert image.split(":", 1)[1] not in ("", "latest"), "pin the Kafka image version"
    e = env(kafka)
    assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = e["KAFKA_NODE_ID"]

    def names(value: str) -> dict[str, str]:
        return dict(item.split("://", 1) for item in value.split(","))

    listeners = names(e["KAFKA_LISTENERS"])
    advertised = names(e["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":", 1) for item in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
                     .split(","))
    controller = e["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert set(advertised) <= set(listeners) - {controller}
    assert controller in listeners
    assert e.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in advertised
    assert advertised.get("PLAINTEXT") == "kafka:9092"
    assert "localhost:29092" in advertised.values(), "host listener advertised as localhost:29092"
    controller_port = listeners[controller].rsplit(":", 1)[1]
    assert e["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:{controller_port}"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert e[key] == "1", key
    host_ports = [str(p) for p in kafka.get("ports") or []]
    assert any(p.split(":")[-2:] == ["29092", "29092"] for p in host_ports), host_ports
    test = kafka.get("healthcheck", {}).get("test")
    test_text = test if isinstance(test, str) else " ".join(test or [])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in test_text
    assert "localhost:9092" in test_text or "kafka:9092" in test_text


def test_compose_prometheus_mounts_config_and_rules_side_by_side() -> None:
    prom = service("prometheus")
    assert str(prom.get("image", "")).startswith("prom/prometheus")
    config_target = target_of(prom, "deploy/prometheus/prometheus.yml")
    assert config_target, "deploy/prometheus/prometheus.yml is not mounted"
    command = prom.get("command") or []
    command = shlex.split(command) if isinstance(command, str) else command
    flags = [c.split("=", 1)[1] for c in command if c.startswith("--config.file=")]
    expected_config = flags[0] if flags else "/etc/prometheus/prometheus.yml"
    assert config_target == expected_config, "Prometheus would not read the mounted config"
    # rule_files are resolved relative to the config file inside the container
    for rule_file in yaml_file(PROM_CONFIG).get("rule_files") or []:
        in_container = str(PurePosixPath(config_target).parent / rule_file)
        host = PROM_CONFIG.parent / rule_file
        assert target_of(prom, str(host.relative_to(ROOT))) == in_container, rule_file
    assert any(str(p).split(":")[-1] == "9090" for p in prom.get("ports") or [])


def test_compose_grafana_mounts_match_provisioning() -> None:
    grafana = service("grafana")
    assert str(grafana.get("image", "")).startswith("grafana/grafana")
    assert target_of(grafana, "deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_target = target_of(grafana, "deploy/grafana/dashboards")
    assert dashboards_target == "/var/lib/grafana/dashboards"
    providers = yaml_file(DASHBOARD_PROVIDER)["providers"]
    assert [p["options"]["path"] for p in providers] == [dashboards_target]
    e = env(grafana)
    assert e.get("GF_AUTH_ANONYMOUS_ENABLED", "").lower() == "true"
    assert e.get("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer") == "Viewer"
    assert any(str(p).split(":")[-1] == "3000" for p in grafana.get("ports") or [])


def test_grafana_datasource_points_at_compose_prometheus() -> None:
    sources = yaml_file(DATASOURCES)["datasources"]
    prom = [s for s in sources if s["type"] == "prometheus"]
    assert len(prom) == 1
    assert prom[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose()["services"]


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    froms = instruction("FROM")
    assert froms and froms[-1].split()[0] == "python:3.11-slim"
    users = instruction("USER")
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert [json.loads(e) for e in instruction("ENTRYPOINT")][-1] == ["persona-stream"]
    assert [json.loads(c) for c in instruction("CMD")][-1] == [
        "worker", "--config", "/etc/persona-stream/config.yaml"]
    assert str(METRICS_PORT) in " ".join(instruction("EXPOSE")).split()
    # the package built from this checkout: a wheel built in the first stage, or `.`
    runs = instruction("RUN")
    built = any("pip wheel" in r and " ." in f"{r} " for r in runs)
    assert any("pip install" in r and (" ." in f"{r} " or (built and "/wheels/" in r))
               for r in runs)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "persona-stream" in scripts


def test_dockerfile_copy_sources_exist() -> None:
    copies = [c for c in instruction("COPY") if not c.startswith("--from")]
    assert copies
    for copy in copies:
        *sources, _dest = [w for w in copy.split() if not w.startswith("--")]
        for src in sources:
            if any(ch in src for ch in "*?["):
                continue  # optional glob
            assert (ROOT / src).exists(), f"COPY {src}: not in the repo"


# ------------------------------------------------------------------ Prometheus


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    config = yaml_file(PROM_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["persona-stream"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job.get("static_configs") or [] for t in sc["targets"]]
    targets += [f"{name}:{sd['port']}" for sd in job.get("dns_sd_configs") or []
                for name in sd["names"]]
    assert targets and all(t == f"worker:{METRICS_PORT}" for t in targets), targets
    assert "worker" in compose()["services"]
    assert config.get("rule_files"), "alerts are not loaded"
    for rule_file in config["rule_files"]:
        assert (PROM_CONFIG.parent / rule_file).is_file(), rule_file


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= EXPECTED_ALERTS
    for rule in rules:
        name = rule.get("alert")
        assert name, f"not an alerting rule: {rule}"
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
        assert re.fullmatch(r"\d+[smhd]", str(rule.get("for", ""))), f"{name}: bad for"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations") or {}
        assert annotations.get("summary"), f"{name}: no summary"
        assert annotations.get("description"), f"{name}: no description"


def test_alert_expressions_are_balanced_and_use_project_metrics() -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    for rule in alert_rules():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # ignore label values
        stack: list[str] = []
        for ch in expr:
            if ch in "([{":
                stack.append(ch)
            elif ch in pairs:
                assert stack and stack.pop() == pairs[ch], f"{rule['alert']}: unbalanced {ch}"
        assert not stack, f"{rule['alert']}: unclosed {stack}"
        assert METRIC_RE.search(rule["expr"]), rule["alert"]


@pytest.mark.parametrize(
    ("alert", "needles"),
    [
        ("PersonaStreamWorkerDown", ['up{job="persona-stream"} == 0',
                                     'up{app_kubernetes_io_name="persona-stream"} == 0']),
        ("PersonaStreamConsumerLagGrowing",
         ["deriv(persona_stream_consumer_lag[10m]) > 0", "persona_stream_consumer_lag > 1000"]),
        ("PersonaStreamDeadLetterRateHigh",
         ['persona_stream_events_total{outcome="invalid"}', "> 0.05"]),
        ("PersonaStreamMergeRefusalsSpiking",
         ["persona_stream_identity_merges_refused_total[5m]", "offset 1h"]),
        ("PersonaStreamNoSegmentChanges",
         ['persona_stream_events_total{outcome="valid"}', "persona_stream_segment_changes_total",
          "== 0"]),
        ("PersonaStreamRebalanceStorm",
         ["max by (role) (increase(persona_stream_rebalances_total[15m])) > 30"]),
    ],
)
def test_alert_expression_watches_the_right_metric(alert: str, needles: list[str]) -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    expr = " ".join(rules[alert]["expr"].split())
    for needle in needles:
        assert needle in expr, f"{alert}: {needle!r} not in {expr!r}"


def test_promtool_accepts_rules_and_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH")
    rules = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run([promtool, "check", "config", "--syntax-only", str(PROM_CONFIG)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert config.returncode == 0, config.stdout + config.stderr


# ------------------------------------------------------------------ Grafana


def test_dashboard_panels_query_project_metrics() -> None:
    dash = dashboard()
    assert dash.get("uid") and dash.get("title")
    panels = all_panels(dash.get("panels") or [])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    exprs = []
    for panel in panels:
        if panel.get("type") == "row":
            continue
        assert panel.get("gridPos"), f"panel {panel.get('title')} has no gridPos"
        targets = panel.get("targets") or []
        assert targets, f"panel {panel.get('title')} has no query"
        for target in targets:
            expr = target.get("expr", "")
            assert METRIC_RE.search(expr), f"{panel.get('title')}: {expr!r}"
            exprs.append(expr)
    text = "\n".join(exprs)
    for metric in ("persona_stream_events_total", "persona_stream_consumer_lag",
                   "persona_stream_segment_changes_total",
                   "persona_stream_event_processing_seconds_bucket",
                   "persona_stream_identity_merges_refused_total"):
        assert metric in text, f"dashboard does not show {metric}"
    assert re.search(r"histogram_quantile\(\s*0\.99\s*,", text), "no p99 panel"


def _datasource_refs(node: Any) -> list[Any]:
    """Every ``datasource`` value in the dashboard, wherever it sits."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "datasource"] + [
            ref for k, v in node.items() if k != "datasource" for ref in _datasource_refs(v)]
    if isinstance(node, list):
        return [ref for item in node for ref in _datasource_refs(item)]
    return []


def test_dashboard_imports_with_a_chosen_datasource() -> None:
    """No datasource uid is written into the dashboard: every panel and query names the
    ``$datasource`` variable (a Prometheus datasource picker), so importing it into any
    Grafana and choosing a datasource, or provisioning it next to compose's, just works."""
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    picker = variables["datasource"]
    assert picker["type"] == "datasource" and picker["query"] == "prometheus"
    assert not picker.get("current"), "a saved choice would pin one Grafana's uid"
    refs = _datasource_refs(dash.get("panels"))
    assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)

    # what Grafana does on import: the chosen datasource becomes the variable's value,
    # and every reference resolves to it
    chosen = "mimir-eu-1"
    text = json.dumps(dash).replace("${datasource}", chosen)
    assert {ref["uid"] for ref in _datasource_refs(json.loads(text)["panels"])} == {chosen}
    # compose provisions exactly one Prometheus, which the picker then selects by default
    assert [s["type"] for s in yaml_file(DATASOURCES)["datasources"]] == ["prometheus"]
