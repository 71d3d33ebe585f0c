"""Kafka in one place: client security settings, topic names, and topic provisioning.

The worker and ``replay --to-topic`` both create their topics here, with the
configured partitions, replication and retention; kafka-python (admin,
replay) and aiokafka (the worker) get the same security settings.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.config import Config
from workers.core.records import OUTPUT_KINDS, OutputKind, output_kinds
from workers.errors import BrokerError, ConfigError
from workers.state.changelog import PIPELINE_STORES


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create when it is missing."""

    name: str
    partitions: int
    settings: dict[str, str] = field(default_factory=dict)
    # partition p holds profile partition p's records or state: a topic that exists must
    # have exactly ``partitions`` (kafka.partitions places every profile)
    placed: bool = False


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


# ---- topic names ---------------------------------------------------------------------


def live_output_topics(config: Config) -> dict[OutputKind, str]:
    """Where the worker sends each kind of output record (audience calls only when on)."""
    k = config.kafka
    topics: dict[OutputKind, str] = {
        "segment_change": k.segment_changes_topic, "identity_merge": k.identity_merges_topic,
        "dead_letter": k.dlq_topic, "audience": k.audiences_topic,
        "segment_lineage": k.personas_topic, "forget": k.segment_changes_topic}
    return {kind: topics[kind] for kind in output_kinds(config)}


def prefixed_output_topics(config: Config, prefix: str) -> dict[OutputKind, str]:
    """``replay --to-topic PREFIX``: ``PREFIX.segment-changes`` and so on."""
    return {kind: f"{prefix}.{OUTPUT_KINDS[kind].topic_suffix}"
            for kind in output_kinds(config)}


def live_topics(config: Config) -> set[str]:
    """The topics live workers read or write: a replay must not write to them by accident."""
    k = config.kafka
    return {k.input_topic, k.personas_topic, k.forget_topic,
            *live_output_topics(config).values()}


def sequenced_topic(config: Config) -> str:
    return f"{config.kafka.application_id}-sequenced"


def profiles_topic(config: Config) -> str:
    """The identity stage's records for the profile partitions (and states moved between
    them), one partition per profile partition."""
    return f"{config.kafka.application_id}-profiles"


def samples_topic(config: Config) -> str:
    """The profile partitions' learn samples and marks, for the trainer (one partition)."""
    return f"{config.kafka.application_id}-samples"


def versions_topic(config: Config) -> str:
    """The trainer's answer for every tick, read whole by every profile task."""
    return f"{config.kafka.application_id}-versions"


def card_reports_topic(config: Config) -> str:
    """Each profile partition's persona cards and KPI totals, one record per partition."""
    return f"{config.kafka.application_id}-card-reports"


def changelog_topic(config: Config, store: str) -> str:
    """The compacted topic holding one store of a stage's state (workers.state.changelog)."""
    return f"{config.kafka.application_id}-{store}-changelog"


def worker_topics(config: Config) -> list[TopicSpec]:
    """The contract's topics and the worker's internal ones."""
    k = config.kafka
    retention = {"retention.ms": str(k.retention_ms)}
    compact = {"cleanup.policy": "compact"}
    return [
        # the input keeps records however old their timestamps (a backfill stamped with
        # event time): by size, or forever, unless kafka.input_retention_ms says otherwise
        TopicSpec(k.input_topic, k.partitions, {"retention.ms": str(k.input_retention_ms),
                                                "retention.bytes": str(k.input_retention_bytes)}),
        *(TopicSpec(name, k.partitions, retention)
          for name in sorted(set(live_output_topics(config).values()) - {k.personas_topic})),
        # forget requests hold identifier hashes only and must outlive any history a
        # replay could read: kept forever; one partition, one order of requests
        TopicSpec(k.forget_topic, 1, {"retention.ms": "-1"}),
        TopicSpec(k.personas_topic, 1, compact),
        # one partition: one order for the whole stream (see workers.service.app). Stamped
        # by the broker on arrival, so retention counts from then, not from a router's
        # timestamps; a commit every few seconds needs only the records after it
        TopicSpec(sequenced_topic(config), 1,
                  {**retention, "message.timestamp.type": "LogAppendTime"}),
        *(TopicSpec(changelog_topic(config, store), 1 if store == "meta" else k.partitions,
                    compact, placed=store == "profile") for store in PIPELINE_STORES),
        *_stage_topics(config),
    ]


def _stage_topics(config: Config) -> list[TopicSpec]:
    """The topics from the identity stage to the profile partitions and the trainer, and
    theirs (workers.service.tasks, .trainer)."""
    k = config.kafka
    # stamped by the broker on arrival, as the sequenced topic: retention counts from then
    retention = {"retention.ms": str(k.retention_ms), "message.timestamp.type": "LogAppendTime"}
    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec(profiles_topic(config), k.partitions, retention, placed=True),
        TopicSpec(samples_topic(config), 1, retention),
        TopicSpec(versions_topic(config), 1, retention),
        # partition p of each: profile partition p's identifiers and the rest of its state
        # (its profiles: the profile changelog, which has k.partitions partitions too)
        TopicSpec(changelog_topic(config, "view"), k.partitions, compact, placed=True),
        TopicSpec(changelog_topic(config, "task"), k.partitions, compact, placed=True),
        TopicSpec(changelog_topic(config, "trainer"), 1, compact),
        TopicSpec(card_reports_topic(config), 1, compact),
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
    """Why the broker did not answer, as precisely as a TCP connect and a TLS handshake tell."""
    k = config.kafka
    host, _, port = k.bootstrap_servers.split(",")[0].strip().rpartition(":")
    timeout = min(k.connect_timeout_seconds, 5.0)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            if k.security_protocol in ("SSL", "SASL_SSL"):
                tls_problem = _tls_problem(config, sock, host.strip("[]"))
                if tls_problem:
                    return f"Kafka at {k.bootstrap_servers}: {tls_problem}"
    except OSError as error:
        return f"cannot reach Kafka at {k.bootstrap_servers}: {error.strerror or error}"
    if k.security_protocol.startswith("SASL_"):
        return (f"Kafka at {k.bootstrap_servers} accepts connections but did not complete a"
                f" {k.security_protocol} handshake with the {k.sasl_mechanism} login of"
                f" {k.sasl_username!r}: check kafka.sasl_username, kafka.sasl_password,"
                f" kafka.sasl_mechanism and that this listener is {k.security_protocol}")
    if k.security_protocol != "PLAINTEXT":
        return (f"Kafka at {k.bootstrap_servers} accepts connections but did not complete a"
                f" {k.security_protocol} handshake: check kafka.security_protocol and the"
                " certificates for this listener")
    return (f"Kafka at {k.bootstrap_servers} accepts connections but did not answer as a"
            f" broker within {k.connect_timeout_seconds:g} s ({exc}); is the listener TLS"
            " (kafka.security_protocol SSL)?")


def _tls_problem(config: Config, sock: socket.socket, host: str) -> str | None:
    """Why a TLS handshake with the configured CA fails on ``sock``; None when it succeeds."""
    import ssl

    k = config.kafka
    context = ssl.create_default_context(cafile=k.ssl_cafile)
    if k.ssl_certfile:
        context.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
    try:
        with context.wrap_socket(sock, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        trusted = k.ssl_cafile or "the system's CAs"
        return (f"its TLS certificate is not trusted by {trusted} ({exc.verify_message}):"
                " check kafka.ssl_cafile")
    except (ssl.SSLError, OSError) as exc:
        return (f"no TLS handshake ({getattr(exc, 'reason', None) or exc}): is this listener"
                f" {k.security_protocol}? check kafka.security_protocol")


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
    """Create the missing ones among ``topics``; an existing topic is left as it is, but
    one that places profiles must have the partitions the configuration says."""
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
        topics = list(topics)
        _check_placement(admin, [t for t in topics if t.placed and t.name in existing])
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


def _check_placement(admin: Any, placed: list[TopicSpec]) -> None:
    """A changed ``kafka.partitions`` would send a profile's records to another partition
    than the one holding its state: refused, before any worker reads or writes."""
    if not placed:
        return
    found = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(
        [t.name for t in placed])}
    for spec in placed:
        has = found.get(spec.name, spec.partitions)
        if has != spec.partitions:
            raise ConfigError(
                f"kafka.partitions is {spec.partitions}, but {spec.name} has {has} partitions:"
                f" they place every profile; set kafka.partitions back to {has}, or start a"
                " new kafka.application_id (README \"Sizing: partitions and workers\")")
