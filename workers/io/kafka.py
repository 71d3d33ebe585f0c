"""Kafka in one place: client security settings, topic names, and topic provisioning.

The worker and ``replay --to-topic`` both create their topics here, with the
configured partitions, replication and retention; kafka-python (admin,
replay) and aiokafka (the worker, faust) get the same security settings.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from workers.config import Config
from workers.core.records import OUTPUT_KINDS, Output, OutputKind
from workers.errors import BrokerError, ConfigError


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create when it is missing."""

    name: str
    partitions: int
    settings: dict[str, str] = field(default_factory=dict)


def _sasl(config: Config) -> dict[str, Any]:
    """Protocol and SASL settings: the same names in kafka-python and aiokafka."""
    k = config.kafka
    opts: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        opts.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
                    sasl_plain_password=k.sasl_password)
    return opts


def client_security(config: Config) -> dict[str, Any]:
    """kafka-python settings for the configured security protocol."""
    k = config.kafka
    opts = _sasl(config)
    if k.ssl_cafile:
        opts["ssl_cafile"] = k.ssl_cafile
    if k.ssl_certfile:
        opts["ssl_certfile"] = k.ssl_certfile
    if k.ssl_keyfile:
        opts["ssl_keyfile"] = k.ssl_keyfile
    return opts


def aiokafka_security(config: Config) -> dict[str, Any]:
    """aiokafka settings for the configured security protocol (SSL as a context)."""
    k = config.kafka
    opts = _sasl(config)
    if k.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(cafile=k.ssl_cafile, certfile=k.ssl_certfile,
                                                 keyfile=k.ssl_keyfile)
    return opts


def faust_credentials(config: Config, security: dict[str, Any]) -> Any:
    """The same security for faust's own clients (it connects even with no agents)."""
    import faust

    k = config.kafka
    if k.sasl_mechanism:
        return faust.SASLCredentials(username=k.sasl_username, password=k.sasl_password,
                                     ssl_context=security.get("ssl_context"),
                                     mechanism=k.sasl_mechanism)
    if "ssl_context" in security:
        return faust.SSLCredentials(security["ssl_context"])
    return None


def message(out: Output) -> tuple[bytes | None, bytes]:
    """An output as a Kafka message's key and value: how the worker and replay produce it."""
    return (None if out.key is None else out.key.encode()), orjson.dumps(out.record)


# ---- topic names ---------------------------------------------------------------------


def live_output_topics(config: Config) -> dict[OutputKind, str]:
    """Where the worker sends each kind of output record."""
    k = config.kafka
    return {"segment_change": k.segment_changes_topic,
            "identity_merge": k.identity_merges_topic, "dead_letter": k.dlq_topic,
            "segment_lineage": k.personas_topic}


def prefixed_output_topics(prefix: str) -> dict[OutputKind, str]:
    """``replay --to-topic PREFIX``: ``PREFIX.segment-changes`` and so on."""
    return {kind: f"{prefix}.{where.topic_suffix}" for kind, where in OUTPUT_KINDS.items()}


def live_topics(config: Config) -> set[str]:
    """The topics live workers read or write: a replay must not write to them by accident."""
    k = config.kafka
    return {k.input_topic, k.personas_topic, *live_output_topics(config).values()}


def sequenced_topic(config: Config) -> str:
    return f"{config.kafka.application_id}-sequenced"


def chunk_topic(config: Config) -> str:
    return f"{config.kafka.application_id}-checkpoint-chunks"


def manifest_topic(config: Config) -> str:
    return f"{config.kafka.application_id}-checkpoints"


def worker_topics(config: Config) -> list[TopicSpec]:
    """The contract's topics and the worker's internal ones."""
    k = config.kafka
    retention = {"retention.ms": str(k.retention_ms)}
    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec(k.input_topic, k.partitions, retention),
        *(TopicSpec(name, k.partitions, retention)
          for name in live_output_topics(config).values() if name != k.personas_topic),
        TopicSpec(k.personas_topic, 1, compact),
        # one partition: one order for the whole stream (see workers.service.app); kept
        # as long as the input, so a checkpoint can always be replayed from
        TopicSpec(sequenced_topic(config), 1, retention),
        TopicSpec(chunk_topic(config), 1, retention),
        TopicSpec(manifest_topic(config), 1, compact),
    ]


def output_topic_specs(config: Config, names: Iterable[str]) -> list[TopicSpec]:
    """Output topics with the configured partitions and retention."""
    k = config.kafka
    return [TopicSpec(name, k.partitions, {"retention.ms": str(k.retention_ms)})
            for name in names]


def admin_client(config: Config) -> Any:
    """A kafka-python admin client, or a one-line :class:`BrokerError`."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    k = config.kafka
    timeout_ms = int(k.connect_timeout_seconds * 1000)
    try:
        return KafkaAdminClient(bootstrap_servers=k.bootstrap_servers,
                                request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                                **client_security(config))
    except KafkaError as exc:
        raise BrokerError(unreachable(config, exc)) from None


def unreachable(config: Config, exc: Exception) -> str:
    """Why the broker did not answer, as precisely as a plain TCP connect can tell."""
    k = config.kafka
    host, _, port = k.bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=min(k.connect_timeout_seconds, 5.0)):
            pass
    except OSError as error:
        return f"cannot reach Kafka at {k.bootstrap_servers}: {error.strerror or error}"
    if k.security_protocol != "PLAINTEXT":
        return (f"Kafka at {k.bootstrap_servers} accepts connections but did not complete a"
                f" {k.security_protocol} handshake: check kafka.security_protocol,"
                " kafka.sasl_mechanism and the credentials for this listener")
    return (f"Kafka at {k.bootstrap_servers} accepts connections but did not answer as a"
            f" broker within {k.connect_timeout_seconds:g} s ({exc}); is the listener TLS"
            " (kafka.security_protocol SSL)?")


def restore_topic(config: Config, spec: TopicSpec) -> str:
    """Bring a topic that vanished or lost partitions back to ``spec``; says what it did.

    A topic deleted under a running worker is created again by the broker's
    auto-create (``auto.create.topics.enable``) with its default partition count,
    not the configured one: partitions can be added back (keys hash anew from then on).
    """
    from kafka.errors import KafkaError

    admin = admin_client(config)
    try:
        found = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([spec.name])
                 if not t.get("error_code")}
        if spec.name not in found:
            provision(config, [spec])
            return f"created again with {spec.partitions} partitions"
        if found[spec.name] < spec.partitions:
            admin.create_partitions({spec.name: spec.partitions})
            return (f"came back with {found[spec.name]} partition(s) (broker auto-create);"
                    f" raised to {spec.partitions}")
        return "as configured"
    except KafkaError as exc:
        raise BrokerError(f"cannot restore topic {spec.name}: {exc}") from None
    finally:
        admin.close()


def provision(config: Config, topics: Iterable[TopicSpec]) -> None:
    """Create the missing ones among ``topics``; an existing topic is left as it is."""
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    admin = admin_client(config)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        if config.kafka.replication_factor > brokers:
            raise ConfigError(f"kafka.replication_factor {config.kafka.replication_factor} is"
                              f" more than the {brokers} broker(s) of the cluster at"
                              f" {config.kafka.bootstrap_servers}")
        existing = set(admin.list_topics())
        missing = [NewTopic(t.name, t.partitions, config.kafka.replication_factor,
                            topic_configs=t.settings)
                   for t in topics if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                admin.create_topics(missing)
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {config.kafka.bootstrap_servers}: "
                          f"{exc}") from None
    finally:
        admin.close()
