"""Identifiers stay inside (issue 17): the public port serves none, the admin listener only
with its token, and a stream of emails and phone numbers leaves none anywhere but where
they are documented to be (README "Security and privacy"): the outputs' ``identifiers``,
profiles, the admin pages and a dead letter's ``raw``.

``run`` and a worker process (DEBUG logs, ``/metrics`` scraped) on the real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from workers.config import load
from workers.testing import (
    WorkerProcess,
    http_get,
    personal_stream,
    pipeline_over,
    produce,
    run_cli,
    topic_records,
    wait_for,
    worker_config,
    write_config,
)

TOKEN = "an-admin-token-for-the-tests"
PUBLIC_PAGES = ("/metrics", "/healthz", "/readyz", "/status", "/personas", "/personas.json")


@dataclass
class Deployment:
    worker: WorkerProcess
    settings: dict[str, dict[str, Any]]
    lines: list[bytes]
    values: set[str]
    log: Path
    pages: dict[str, bytes]  # the public pages, read once the stream is processed


def _found(values: set[str], text: str) -> set[str]:
    return {value for value in values if value in text}


def _without(records: list[dict[str, Any]], *fields: str) -> str:
    """The records as JSON, the fields documented to hold identifiers left out."""
    return orjson.dumps([{k: v for k, v in r.items() if k not in fields}
                         for r in records]).decode()


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    """One worker: DEBUG logs, admin pages on every address behind a token, a stream of
    people with emails and phone numbers processed."""
    where = tmp_path_factory.mktemp("privacy")
    lines, values = personal_stream(200, seed=17)
    config, settings = worker_config(where, bootstrap=kafka_bootstrap, partitions=1,
                                     commit_interval_seconds=2)
    settings["metrics"]["log_level"] = "DEBUG"
    settings["admin"]["host"] = "0.0.0.0"
    write_config(config, settings)
    worker = WorkerProcess(config, instance_id="private", log_dir=where,
                           env={"PERSONA_STREAM_ADMIN__TOKEN": TOKEN})
    try:
        wait_for(lambda: worker.status() is not None, 60, "the worker to serve /status")
        produce(settings["kafka"]["input_topic"], lines, kafka_bootstrap)

        def caught_up() -> bool:
            status = worker.status() or {}
            return bool(status.get("caught_up") and status["events_read"] == len(lines)
                        and status["tasks_caught_up"])

        wait_for(caught_up, 180, "the stream to be processed")
        # an identifier asked for on the public port: refused, and not logged either
        email = next(v for v in sorted(values) if "@" in v)
        assert http_get(f"{worker.url}/profile/{email}")[0] == 404
        pages = {path: http_get(worker.url + path)[1] for path in PUBLIC_PAGES}
        yield Deployment(worker, settings, lines, values,
                         next(where.glob("worker-private-*.log")), pages)
    finally:
        worker.stop()


@pytest.mark.integration
def test_the_public_port_serves_no_identifier(deployment: Deployment) -> None:
    worker = deployment.worker
    for path in ("/profiles", "/profile/email:x@y.com"):
        status, body = http_get(worker.url + path)
        assert status == 404, path
    assert b"persona_stream_profiles" in deployment.pages["/metrics"]
    for path, body in deployment.pages.items():
        assert _found(deployment.values, body.decode()) == set(), path


@pytest.mark.integration
def test_the_admin_pages_need_the_token_off_loopback(deployment: Deployment) -> None:
    worker = deployment.worker
    for token in (None, "", "wrong-token-of-good-length", TOKEN + "x", TOKEN[:-1]):
        status, body = worker.admin_get("/profiles", token)
        assert status == 401, token
        assert _found(deployment.values, body.decode()) == set()
    status, body = worker.admin_get("/profiles", TOKEN)
    assert status == 200
    profiles = [orjson.loads(line) for line in body.splitlines()]
    expected = pipeline_over(deployment.lines, load(env={}))
    assert len(profiles) == len(expected.profiles)
    person = next(p for p in profiles if "phone" in p["identifiers"])
    phone = person["identifiers"]["phone"][0]
    status, body = worker.admin_get(f"/profile/phone:{phone.replace(' ', '%20')}", TOKEN)
    assert status == 200 and orjson.loads(body)["profile_id"] == person["profile_id"]
    # `persona-stream profile --url` sends the token it finds where the worker reads it
    refused = run_cli("profile", person["profile_id"], "--url", worker.admin_url)
    assert refused.returncode == 2
    assert refused.stderr.decode().count("\n") == 1 and b"admin token" in refused.stderr
    shown = run_cli("profile", person["profile_id"], "--url", worker.admin_url,
                    env={"PERSONA_STREAM_ADMIN__TOKEN": TOKEN})
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["identifiers"]["phone"]


@pytest.mark.integration
def test_no_identifier_leaves_the_worker_but_where_documented(
        deployment: Deployment, kafka_bootstrap: str) -> None:
    k, values = deployment.settings["kafka"], deployment.values
    log = deployment.log.read_text()
    assert '"level":"DEBUG"' in log  # the worker's own DEBUG lines are on
    assert _found(values, log) == set()
    changes = topic_records(k["segment_changes_topic"], kafka_bootstrap)
    merges = topic_records(k["identity_merges_topic"], kafka_bootstrap)
    dead = topic_records(k["dlq_topic"], kafka_bootstrap)
    cards = topic_records(k["personas_topic"], kafka_bootstrap)
    assert changes and merges and dead and cards
    # identifiers are where the contract puts them...
    assert _found(values, orjson.dumps(changes + merges).decode())
    # ...and nowhere else
    for records, documented in ((changes, ("identifiers",)), (merges, ("identifiers",)),
                                (dead, ("raw",)), (cards, ())):
        assert _found(values, _without(records, *documented)) == set()


@pytest.mark.integration
@pytest.mark.parametrize("private", [False, True])
def test_run_leaves_identifiers_only_where_documented(tmp_path: Path, private: bool) -> None:
    """``run`` as is, and with pseudonymised identifiers and redacted dead letters: then no
    raw identifier is in any file, profiles and dead letters included."""
    lines, values = personal_stream(120, seed=18)
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    settings: dict[str, dict[str, Any]] = {"segmentation": {"warmup_profiles": 50}}
    if private:
        settings |= {"identity": {"pseudonymise": True}, "intake": {"dead_letter_raw": "redact"}}
    config = write_config(tmp_path / "config.yaml", settings)
    out = tmp_path / "out"
    done = run_cli("run", str(tmp_path / "in.jsonl"), "--out", str(out), "--config",
                   str(config), env={"PERSONA_STREAM_IDENTITY__PSEUDONYMISE_KEY":
                                     "the key of this test run"})
    assert done.returncode == 0, done.stderr
    assert _found(values, done.stderr.decode() + done.stdout.decode()) == set()
    documented = {"segment_changes.jsonl": ("identifiers",),
                  "identity_merges.jsonl": ("identifiers",), "dead_letters.jsonl": ("raw",),
                  "profiles.jsonl": ("identifiers",)}
    for name, fields in documented.items():
        records = [orjson.loads(line) for line in (out / name).read_bytes().splitlines()]
        assert records, name
        assert _found(values, _without(records, *fields)) == set(), name
        assert bool(_found(values, _without(records))) is not private, name
    for name in ("personas.json", "summary.json"):
        assert _found(values, (out / name).read_text()) == set(), name


@pytest.mark.parametrize(("env", "says"), [
    ({"PERSONA_STREAM_ADMIN__HOST": "0.0.0.0"},
     "admin.host 0.0.0.0 is reachable from other machines: set admin.token"),
    ({"PERSONA_STREAM_ADMIN__HOST": "0.0.0.0", "PERSONA_STREAM_ADMIN__TOKEN": "too short"},
     "admin.token must be at least 16 characters"),
])
def test_an_admin_listener_open_to_others_without_a_token_is_one_line(
        env: dict[str, str], says: str) -> None:
    done = run_cli("worker", env=env)
    err = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2
    assert len(err) == 1 and err[0].startswith(f"persona-stream worker: error: {says}")
