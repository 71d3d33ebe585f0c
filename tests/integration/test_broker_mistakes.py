"""Broker-side operator mistakes are one clear line that names the setting (real broker)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workers import cli
from workers.config import load
from workers.errors import BrokerError, ConfigError
from workers.io.kafka import provision, worker_topics
from workers.testing import free_port

pytestmark = pytest.mark.integration


def test_replication_above_the_broker_count_names_the_setting(
        kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                       "PERSONA_STREAM_KAFKA__APPLICATION_ID": unique_name("rf"),
                       "PERSONA_STREAM_KAFKA__REPLICATION_FACTOR": "3"})
    with pytest.raises(ConfigError, match=r"kafka\.replication_factor 3 is more than the 1"):
        provision(config, worker_topics(config))


def test_sasl_against_a_plaintext_listener_says_so(kafka_bootstrap: str) -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                       "PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                       "PERSONA_STREAM_KAFKA__SASL_MECHANISM": "PLAIN",
                       "PERSONA_STREAM_KAFKA__SASL_USERNAME": "svc",
                       "PERSONA_STREAM_KAFKA__SASL_PASSWORD": "pw",
                       "PERSONA_STREAM_KAFKA__CONNECT_TIMEOUT_SECONDS": "3"})
    with pytest.raises(BrokerError, match="accepts connections but did not complete a"
                                          " SASL_PLAINTEXT handshake"):
        provision(config, worker_topics(config))


def test_nothing_listening_is_not_a_protocol_problem() -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                       "PERSONA_STREAM_KAFKA__CONNECT_TIMEOUT_SECONDS": "2"})
    with pytest.raises(BrokerError, match=r"cannot reach Kafka at 127\.0\.0\.1:[0-9]+: Connection"
                                          r" refused"):
        provision(config, worker_topics(config))


def test_a_changed_partition_count_is_refused_before_any_record_moves(
        kafka_bootstrap: str, unique_name: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """kafka.partitions places every profile: a deployment restarted with another count
    would send a profile's records where its state is not. One line, exit 2, naming the
    count the topics have."""
    env = {"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "PERSONA_STREAM_KAFKA__APPLICATION_ID": unique_name("placed"),
           "PERSONA_STREAM_KAFKA__PARTITIONS": "2"}
    first = load(env=env)
    provision(first, worker_topics(first))
    provision(first, worker_topics(first))  # the same count again: nothing to say
    changed = {**env, "PERSONA_STREAM_KAFKA__PARTITIONS": "3"}
    app = env["PERSONA_STREAM_KAFKA__APPLICATION_ID"]
    with pytest.raises(ConfigError, match=rf"kafka\.partitions is 3, but {app}-[\w-]+ has 2"
                                          r" partitions: .* set kafka\.partitions back to 2"):
        provision(load(env=changed), worker_topics(load(env=changed)))
    for name, value in {**changed, "PERSONA_STREAM_METRICS__PORT": str(free_port()),
                        "PERSONA_STREAM_ADMIN__PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kafka.partitions is 3, but" in err[0], err
