"""Kafka security settings reach every client the worker creates (no broker needed)."""

from __future__ import annotations

import ssl

import faust

from workers.config import load
from workers.io.kafka import aiokafka_security, client_security, faust_credentials

SASL_SSL = {"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "PERSONA_STREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "PERSONA_STREAM_KAFKA__SASL_USERNAME": "svc",
            "PERSONA_STREAM_KAFKA__SASL_PASSWORD": "0123"}


def test_sasl_ssl_reaches_kafka_python_aiokafka_and_faust() -> None:
    config = load(env=SASL_SSL)
    plain = client_security(config)
    assert plain == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                     "sasl_plain_username": "svc", "sasl_plain_password": "0123"}
    aio = aiokafka_security(config)
    assert aio["sasl_mechanism"] == "SCRAM-SHA-512" and aio["sasl_plain_password"] == "0123"
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(config, aio)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "svc" and credentials.ssl_context is aio["ssl_context"]


def test_plaintext_adds_nothing() -> None:
    config = load(env={})
    assert client_security(config) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_security(config) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(config, aiokafka_security(config)) is None


def test_ssl_only_passes_the_certificates() -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SSL"})
    aio = aiokafka_security(config)
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    assert isinstance(faust_credentials(config, aio), faust.SSLCredentials)
