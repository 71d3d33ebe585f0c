"""Shared fixtures. Integration tests use the real broker that .ci/run (or
`deploy/kafka.sh start`) runs; each test gets its own topics and groups."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from workers.testing import (
    BOOTSTRAP,
    answers,
    delete_issued_topics,
    sasl_listener,
    unique_names,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled module built before its source's last edit."""
    from workers.compiled import stale

    if old := stale():
        pytest.exit(f"compiled before the source's last edit: {', '.join(old)}; run `make build`",
                    returncode=2)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The topics this process's tests made are deleted (best effort) when it ends."""
    delete_issued_topics()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` (``make test``) the tests against the broker run one after
    another in one xdist group: they start worker processes that want the machine's cores
    and wait on the one broker. The broker-free tests run beside them."""
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.xdist_group("broker"))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The local broker's address; fails (not skips) when it is down, so CI cannot go green
    without having tested against Kafka."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=10_000)
    except KafkaError:
        pytest.fail(f"no Kafka broker at {BOOTSTRAP}: start one with `deploy/kafka.sh start`")
    admin.close()
    return BOOTSTRAP


@pytest.fixture(autouse=True)
def _broker_still_answers(request: pytest.FixtureRequest) -> None:
    """A broker that died mid-suite (out of memory, say) fails each test against it at
    once, instead of each waiting out its own timeouts until CI's clock runs out."""
    if not request.node.get_closest_marker("integration"):
        return
    if not answers():
        pytest.fail(f"the broker at {BOOTSTRAP} stopped answering; "
                    "`deploy/kafka.sh stop` prints the end of its log")


@pytest.fixture(scope="session")
def kafka_sasl(kafka_bootstrap: str) -> dict[str, str]:
    """The ``kafka`` settings of the local broker's SASL_SSL listener (``deploy/kafka.sh
    start`` opens it); fails when there is none, like :func:`kafka_bootstrap`."""
    settings = sasl_listener(kafka_bootstrap)
    if settings is None:
        pytest.fail(f"the broker at {kafka_bootstrap} has no SASL_SSL listener: restart it"
                    " with `deploy/kafka.sh start`")
    return settings


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Topic and group names no other test (or earlier run) uses."""
    return unique_names()


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[object]:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    yield client
    client.close()
