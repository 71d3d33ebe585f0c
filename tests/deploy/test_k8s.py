"""deploy/k8s: plain YAML that parses, and whose probes and ports match the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workers.config import load

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object per kind expected"
    return by_kind


def test_deployment_probes_and_ports_match_the_config_defaults() -> None:
    port = load().metrics.port
    objs = manifests()
    assert {"Deployment", "Service", "ConfigMap"} <= set(objs)
    pod = objs["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(port)
    assert notes["prometheus.io/path"] == "/metrics"
    labels = pod["metadata"]["labels"]
    assert objs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objs["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(port, "http")]


def test_configmap_is_a_config_the_worker_accepts(tmp_path: Path) -> None:
    objs = manifests()
    text = objs["ConfigMap"]["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    config = load(path, env={})
    assert config.metrics.port == load().metrics.port
    assert config.kafka.replication_factor >= 3, "topics must survive a broker's loss"
    (container,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert config_arg == f"{mounts['config']}/config.yaml"
    volumes = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    # the production store lives on the pod's own volume
    assert config.state.store == "rocksdb" and config.state.directory == mounts["state"]
    assert "emptyDir" in volumes["state"]


def test_the_admin_listener_stays_inside_the_pod(tmp_path: Path) -> None:
    """The pages holding identifiers are on the pod's loopback: no container port, no
    Service port, and the ConfigMap's address is loopback (or behind a token)."""
    objs = manifests()
    path = tmp_path / "config.yaml"
    path.write_text(objs["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
    config = load(path, env={})
    assert config.admin.host == "127.0.0.1" and config.admin.port != config.metrics.port
    (container,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert config.admin.port not in {p["containerPort"] for p in container["ports"]}
    service_ports = {p["port"] for p in objs["Service"]["spec"]["ports"]}
    assert config.admin.port not in service_ports
    assert service_ports == {config.metrics.port}
