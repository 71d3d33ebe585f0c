"""deploy/helm/persona-stream renders, with Helm's own engine (helm-python-sdk binds
Helm's Go SDK: the templates go through what `helm template` runs), into objects
the Kubernetes schemas accept (kubernetes-validate), and they say what a safe
deployment needs: replicated topics, a disruption budget, only the public port
reachable, Kafka secrets from a Secret, a configuration the worker accepts."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers import __version__
from workers.config import load

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "persona-stream"
KUBERNETES = "1.30.0"  # the oldest Kubernetes release the chart is checked against
NO_SCHEMA = {"ServiceMonitor"}  # a CRD: checked field by field below


def _require(module: str) -> None:
    """Missing locally: skip; missing in CI: fail (the test extra installs it)."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed (pip install -e '.[test]')")
        pytest.skip(f"{module} is not installed")


def render(values: dict[str, Any] | None = None,
           release: str = "persona-stream") -> dict[str, dict[str, Any]]:
    """``helm template RELEASE CHART --values VALUES``: the objects, by kind."""
    _require("helm_python")
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name=release, namespace="data", is_install=True)
    objects = [doc for name, text in sorted(files.items()) if name.endswith(".yaml")
               for doc in yaml.safe_load_all(text) if doc]
    by_kind = {obj["kind"]: obj for obj in objects}
    assert len(by_kind) == len(objects), "one object per kind expected"
    return by_kind


@cache
def defaults() -> dict[str, dict[str, Any]]:
    return render()


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (worker,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return worker


def configuration(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(objs["ConfigMap"]["data"]["config.yaml"])
    return data


FULL = {"replicas": 3, "image": {"repository": "registry.example/persona-stream", "tag": "1.2"},
        "kafka": {"existingSecret": "kafka-credentials", "securityProtocol": "SASL_SSL",
                  "saslMechanism": "SCRAM-SHA-512", "tls": {"enabled": True},
                  "replicationFactor": 5, "partitions": 12},
        "audiences": {"enabled": True, "keys": {"3": "vip_shoppers"}},
        "config": {"segmentation": {"n_clusters": 8}},
        "networkPolicy": {"from": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}]},
        "prometheus": {"podAnnotations": False,
                       "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}}


def test_helm_lint_finds_nothing() -> None:
    _require("helm_python")
    import helm_python as helm

    for values in ({}, FULL):
        result = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES}")
        assert result["total_charts_linted"] == 1
        assert result["errors"] == []
        assert [m for m in result["messages"] if m["severity"] >= 2] == []  # warnings, errors


@pytest.mark.parametrize("values", [{}, FULL], ids=["defaults", "every-option"])
def test_every_object_passes_the_kubernetes_schema(values: dict[str, Any]) -> None:
    _require("kubernetes_validate")
    import kubernetes_validate

    objs = render(values)
    for kind, obj in objs.items():
        if kind not in NO_SCHEMA:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    assert set(objs) >= {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                         "NetworkPolicy"}


def test_defaults_are_safe() -> None:
    objs = defaults()
    deployment = objs["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    worker = container(objs)
    assert worker["image"] == f"persona-stream:{__version__}"  # appVersion = the package's
    assert worker["resources"]["requests"] and worker["resources"]["limits"]
    config = configuration(objs)
    assert config["kafka"]["replication_factor"] == 3  # a broker's loss loses nothing
    pod_labels = deployment["template"]["metadata"]["labels"]
    budget = objs["PodDisruptionBudget"]["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objs["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert "ServiceMonitor" not in objs
    notes = deployment["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == "9464"


def test_only_the_public_port_is_reachable() -> None:
    """Identifier pages stay inside the pod: the Service and the NetworkPolicy open the
    public port and nothing else, whatever the admin port is."""
    objs = render({"adminPort": 9999})
    public = load(env={}).metrics.port
    assert [p["containerPort"] for p in container(objs)["ports"]] == [public]
    assert [p["port"] for p in objs["Service"]["spec"]["ports"]] == [public]
    policy = objs["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    pod_labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [public]
    # the worker's admin listener is that port, on the pod's loopback only
    assert configuration(objs)["admin"] == {"host": "127.0.0.1", "port": 9999}


def test_the_rendered_configuration_is_one_the_worker_accepts(tmp_path: Path) -> None:
    objs = render({**FULL, "kafka": {**FULL["kafka"], "tls": {"enabled": False}}})
    path = tmp_path / "config.yaml"
    path.write_text(objs["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
    # what the Secret would give the pod's environment
    config = load(path, env={"PERSONA_STREAM_KAFKA__SASL_USERNAME": "svc",
                             "PERSONA_STREAM_KAFKA__SASL_PASSWORD": "s3cret"})
    assert config.kafka.partitions == 12 and config.kafka.replication_factor == 5
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert config.segmentation.n_clusters == 8
    assert config.audiences.enabled and config.audiences.chosen == {3: "vip_shoppers"}
    assert config.admin.host == "127.0.0.1" and config.admin.port == 9465
    assert config.state.store == "rocksdb"
    mounts = {m["name"]: m["mountPath"] for m in container(objs)["volumeMounts"]}
    assert config.state.directory == mounts["state"]
    args = container(objs)["args"]
    assert args[args.index("--config") + 1] == f"{mounts['config']}/config.yaml"


def test_kafka_secrets_come_from_the_secret() -> None:
    objs = render(FULL)
    worker = container(objs)
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["env"]
                   if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(from_secret) == {"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS",
                                "PERSONA_STREAM_KAFKA__SASL_USERNAME",
                                "PERSONA_STREAM_KAFKA__SASL_PASSWORD"}
    assert {ref["name"] for ref in from_secret.values()} == {"kafka-credentials"}
    text = objs["ConfigMap"]["data"]["config.yaml"]
    assert "sasl_password" not in text and "sasl_username" not in text
    volumes = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-credentials"
    tls_dir = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}["kafka-tls"]
    assert configuration(objs)["kafka"]["ssl_cafile"] == f"{tls_dir}/ca.crt"
    assert worker["image"] == "registry.example/persona-stream:1.2"
    assert objs["Deployment"]["spec"]["replicas"] == 3


def test_the_service_monitor_scrapes_as_the_alerts_expect() -> None:
    objs = render(FULL)
    monitor = objs["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    service = objs["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert {"action": "replace", "targetLabel": "job",
            "replacement": "persona-stream"} in endpoint["relabelings"]
    annotations = objs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations  # not scraped twice


def test_a_release_names_its_own_topics() -> None:
    """Two releases in one cluster do not share internal topics or consumer groups."""
    other = render(release="eu")
    assert configuration(other)["kafka"]["application_id"] == "eu-persona-stream"
    assert configuration(defaults())["kafka"]["application_id"] == "persona-stream"


@pytest.mark.parametrize(("values", "where"), [
    ({"replicas": "two"}, "/replicas"),
    ({"kafka": {"replicationfactor": 3}}, "replicationfactor"),
    ({"audiences": {"keys": {"3": "VIP Shoppers"}}}, "/audiences/keys/3"),
])
def test_a_mistyped_value_is_refused_before_anything_is_deployed(values: dict[str, Any],
                                                                  where: str) -> None:
    _require("helm_python")
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)
