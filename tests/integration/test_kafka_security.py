"""Kafka security: the settings reach every client the worker creates, and the worker,
``replay --to-topic`` and topic provisioning work against the local broker's SASL_SSL
listener, while a wrong password or CA is one line and exit 1."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from workers.config import load
from workers.io.kafka import aiokafka_security, client_security
from workers.simulation.generator import simulate
from workers.testing import (
    Record,
    WorkerProcess,
    pipeline_over,
    produce,
    require_tool,
    run_cli,
    topic_records,
    wait_for,
    worker_config,
    write_config,
)

SASL_SSL = {"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "PERSONA_STREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "PERSONA_STREAM_KAFKA__SASL_USERNAME": "svc",
            "PERSONA_STREAM_KAFKA__SASL_PASSWORD": "0123"}


def test_sasl_ssl_reaches_kafka_python_and_aiokafka() -> None:
    config = load(env=SASL_SSL)
    plain = client_security(config)
    assert plain == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                     "sasl_plain_username": "svc", "sasl_plain_password": "0123"}
    aio = aiokafka_security(config)
    assert aio["sasl_mechanism"] == "SCRAM-SHA-512" and aio["sasl_plain_password"] == "0123"
    assert isinstance(aio["ssl_context"], ssl.SSLContext)


def test_plaintext_adds_nothing() -> None:
    config = load(env={})
    assert client_security(config) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_security(config) == {"security_protocol": "PLAINTEXT"}


def test_ssl_only_passes_the_certificates() -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SSL"})
    aio = aiokafka_security(config)
    assert isinstance(aio["ssl_context"], ssl.SSLContext)


# ---- against the local broker's SASL_SSL listener (SCRAM-SHA-512, its own CA) ----------


def _caught_up(worker: WorkerProcess, records: int) -> bool:
    status = worker.status()
    return bool(status and status["owner"] and status["caught_up"]
                and status["events_read"] == records and status["tasks_caught_up"])


@pytest.mark.integration
def test_the_worker_provisions_and_runs_over_sasl_ssl(
        kafka_bootstrap: str, kafka_sasl: dict[str, str], unique_name: Callable[[str], str],
        tmp_path: Path) -> None:
    """Topics created, the stream processed and outputs produced by a worker that talks to
    the broker only through the authenticated, encrypted listener."""
    lines = simulate(120, seed=41, days=2)[0]
    sasl = {key: value for key, value in kafka_sasl.items() if key != "bootstrap_servers"}
    config, settings = worker_config(tmp_path, unique_name,
                                     bootstrap=kafka_sasl["bootstrap_servers"],
                                     partitions=2, **sasl)
    k = settings["kafka"]
    with WorkerProcess(config, instance_id="sasl", log_dir=tmp_path) as worker:
        wait_for(lambda: worker.status() is not None, 60, "the worker to serve /status")
        # the test's own producer uses the plaintext listener of the same broker; one key:
        # one partition, read in the order of the in-process reference
        produce(k["input_topic"], [Record(line, b"k") for line in lines], kafka_bootstrap)
        wait_for(lambda: _caught_up(worker, len(lines)), 180, "the stream to be processed")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        partitions = {t["name"]: len(t["partitions"])
                      for t in admin.describe_topics([k["input_topic"], k["dlq_topic"]])}
    finally:
        admin.close()
    assert partitions == {k["input_topic"]: 2, k["dlq_topic"]: 2}
    merges = pipeline_over(lines, load(config)).stats.identity_merges
    assert merges > 0
    assert len(topic_records(k["identity_merges_topic"], kafka_bootstrap)) == merges


@pytest.mark.integration
def test_replay_to_topic_over_sasl_ssl(kafka_bootstrap: str, kafka_sasl: dict[str, str],
                                       unique_name: Callable[[str], str],
                                       tmp_path: Path) -> None:
    lines = simulate(80, seed=42, days=2)[0] + [b"not json"]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    config = write_config(tmp_path / "config.yaml", {"kafka": kafka_sasl})
    prefix = unique_name("sasl-replay")
    done = run_cli("replay", "--files", str(tmp_path / "in.jsonl"), "--to-topic", prefix,
                   "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr
    stats = pipeline_over(lines).stats
    dead = topic_records(f"{prefix}.dlq", kafka_bootstrap)
    assert len(dead) == stats.events_invalid
    assert "not_json" in {d["error"] for d in dead}  # replay sorts by time: not the last
    merges = topic_records(f"{prefix}.identity-merges", kafka_bootstrap)
    assert len(merges) == stats.identity_merges > 0


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA that did not sign the broker's certificate."""
    openssl = require_tool("openssl")
    where = tmp_path_factory.mktemp("other-ca")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=not the broker's CA", "-keyout", str(where / "ca.key"), "-out",
                    str(where / "ca.pem")], check=True, capture_output=True)
    return str(where / "ca.pem")


@pytest.mark.integration
@pytest.mark.parametrize("command", ["worker", "replay"])
@pytest.mark.parametrize(("mistake", "says"), [
    ("password", "did not complete a SASL_SSL handshake with the SCRAM-SHA-512 login of"
                 " 'persona-stream': check kafka.sasl_username, kafka.sasl_password"),
    ("ca", "its TLS certificate is not trusted by"),
])
def test_wrong_credentials_or_ca_are_one_line_and_exit_1(
        kafka_sasl: dict[str, str], other_ca: str, tmp_path: Path, command: str,
        mistake: str, says: str) -> None:
    kafka = {**kafka_sasl, "connect_timeout_seconds": 3, "application_id": "never-made"}
    if mistake == "password":
        kafka["sasl_password"] = "not-the-password"
    else:
        kafka["ssl_cafile"] = other_ca
    config = str(write_config(tmp_path / "config.yaml", {"kafka": kafka}))
    (tmp_path / "in.jsonl").write_bytes(b"{}\n")
    args = (["worker", "--config", config] if command == "worker" else
            ["replay", "--files", str(tmp_path / "in.jsonl"), "--to-topic", "never",
             "--config", config])
    done = run_cli(*args, timeout=60)
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1
    assert len(err) == 1 and says in err[0], err
    assert err[0].startswith(f"persona-stream {command}: error: Kafka at"
                             f" {kafka_sasl['bootstrap_servers']}")
