"""The command line as a user meets it: help, errors in one line with the documented exit
code, a closed pipe, Ctrl-C, and run end to end."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

from workers.errors import (
    BrokerError,
    ConfigError,
    InputError,
    Interrupted,
    PersonaStreamError,
    StateError,
    UsageError,
)
from workers.testing import CLI, free_port, run_cli

COMMANDS = ["simulate", "run", "worker", "replay", "forget", "personas", "profile", "evaluate"]
# the exit codes the README and docs/contracts.md promise
USAGE = CONFIG = 2  # a wrong flag or flag combination; a bad configuration
INPUT = STATE = BROKER = 1  # an input, state file or broker that cannot be used
INTERRUPTED = 130  # Ctrl-C


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert b"usage: persona-stream " + command.encode() in result.stdout


def test_version_says_how_many_modules_run_compiled() -> None:
    """What a bug report needs: the version, and whether this install runs compiled code;
    ``PERSONA_STREAM_PURE=1`` runs the Python source even where it is built."""
    from workers import __version__
    from workers.compiled import MODULES, compiled

    here = run_cli("--version")
    assert here.returncode == 0
    assert here.stdout.decode() == (f"persona-stream {__version__} ({len(compiled())} of"
                                    f" {len(MODULES)} per-event modules compiled)\n")
    pure = run_cli("--version", env={"PERSONA_STREAM_PURE": "1"})
    assert pure.stdout.decode().endswith(f"(0 of {len(MODULES)} per-event modules compiled)\n")


def test_each_error_class_has_its_documented_exit_code() -> None:
    assert {cls: cls.exit_code for cls in (UsageError, ConfigError, InputError, StateError,
                                           BrokerError, Interrupted)} == {
        UsageError: USAGE, ConfigError: CONFIG, InputError: INPUT, StateError: STATE,
        BrokerError: BROKER, Interrupted: INTERRUPTED}
    assert all(issubclass(cls, PersonaStreamError) for cls in (UsageError, Interrupted))


class Mistake(NamedTuple):
    """An operator mistake: the command line (``{tmp}``: an empty folder, ``{port}``: a
    port nobody listens on), extra environment, a ``--config`` file's text, the exit code
    and words its one line must hold."""

    args: tuple[str, ...]
    code: int
    says: str
    env: dict[str, str] | None = None
    config: str | None = None


UNREACHABLE = {"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:{port}",
               "PERSONA_STREAM_KAFKA__CONNECT_TIMEOUT_SECONDS": "2"}
RUN = ("run", "-", "--out", "{tmp}/out")  # reads an empty stdin: only the mistake can fail

MISTAKES = {
    # a wrong command line
    "wrong-flag": Mistake((*RUN, "--bogus"), USAGE, "unrecognized arguments: --bogus"),
    "missing-flag": Mistake(("simulate", "--seed", "1"), USAGE, "are required: --profiles"),
    "bad-flag-value": Mistake(("simulate", "--profiles", "many", "--output", "{tmp}/s"), USAGE,
                              "invalid int value: 'many'"),
    "impossible-flag-value": Mistake(("simulate", "--profiles", "0", "--output", "{tmp}/s"),
                                     USAGE, "--profiles must be at least 1"),
    "flags-that-exclude-each-other": Mistake(
        ("replay", "--files", "{tmp}/x", "--out", "{tmp}/o", "--dry-run"), USAGE,
        "not allowed with argument --out"),
    "unknown-command": Mistake(("frobnicate",), USAGE, "invalid choice: 'frobnicate'"),
    # a bad configuration
    "config-value-of-wrong-type": Mistake(
        RUN, CONFIG, "'segmentation.n_clusters' must be an integer or auto, got 'many'",
        env={"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "many"}),
    "config-value-not-yaml": Mistake(
        RUN, CONFIG, "'segmentation.n_clusters' from the environment is not valid YAML",
        env={"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "["}),
    "config-value-impossible": Mistake(RUN, CONFIG, "segmentation.n_clusters must be >= 2 or auto",
                                       env={"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "1"}),
    "config-unknown-key-in-env": Mistake(RUN, CONFIG, "unknown key 'segmentation.nope'",
                                         env={"PERSONA_STREAM_SEGMENTATION__NOPE": "1"}),
    "config-unknown-key-in-file": Mistake(
        RUN, CONFIG, "unknown configuration key 'segmentation.n_clusterz'",
        config="segmentation:\n  n_clusterz: 3\n"),
    "config-features-select-nothing": Mistake(
        RUN, CONFIG, "'segmentation.features' selects no feature",
        config='segmentation:\n  features: {"nope.*": 1.0}\n'),
    "config-file-not-yaml": Mistake(RUN, CONFIG, "is not valid YAML",
                                    config="segmentation:\n  features: [unclosed\n"),
    "config-file-missing": Mistake((*RUN, "--config", "{tmp}/missing.yaml"), CONFIG,
                                   "cannot read config file"),
    # the mistakes that once ended in a stack trace, or said the wrong thing (issue 13)
    "simulate-zero-days": Mistake(("simulate", "--profiles", "5", "--days", "0", "--output",
                                   "{tmp}/s"), USAGE, "--days must be at least 1"),
    "simulate-negative-days": Mistake(("simulate", "--profiles", "5", "--days", "-3",
                                       "--output", "{tmp}/s"), USAGE, "--days must be at least 1"),
    "personas-url-not-a-url": Mistake(("personas", "--url", "notaurl"), USAGE,
                                      "--url must be a worker's http:// address"),
    "config-model-params-river-refuses": Mistake(
        RUN, CONFIG, "'segmentation.model_params' {{'bogus': 1.0}} do not suit kmeans",
        config="segmentation:\n  model_params: {bogus: 1}\n"),
    "config-trait-range-of-one": Mistake(
        RUN, CONFIG, "features.traits.numeric.age must be [low, high]",
        env={"PERSONA_STREAM_FEATURES__TRAITS__NUMERIC": "{{age: [90]}}"}),
    "config-python-tag-in-env": Mistake(
        RUN, CONFIG, "'segmentation.seed' from the environment is not valid YAML",
        env={"PERSONA_STREAM_SEGMENTATION__SEED": "!!python/object/apply:os.getpid []"}),
    "config-infinite-window": Mistake(
        RUN, CONFIG, "'intake.dedup_window_seconds' must be a finite number",
        config="intake:\n  dedup_window_seconds: .inf\n"),
    "config-bootstrap-not-host-port": Mistake(
        ("worker",), CONFIG, "kafka.bootstrap_servers: 'not a host:::' is not host:port",
        env={"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": "not a host:::"}),
    "config-application-id-not-a-topic-name": Mistake(
        ("worker",), CONFIG, "kafka.application_id 'my app/v1' is not a Kafka topic name",
        env={"PERSONA_STREAM_KAFKA__APPLICATION_ID": "my app/v1"}),
    "config-zero-partitions": Mistake(("worker",), CONFIG, "kafka.partitions must be >= 1",
                                      env={"PERSONA_STREAM_KAFKA__PARTITIONS": "0"}),
    "config-negative-timeout": Mistake(
        ("worker",), CONFIG, "kafka.connect_timeout_seconds must be > 0",
        env={"PERSONA_STREAM_KAFKA__CONNECT_TIMEOUT_SECONDS": "-1"}),
    "config-sasl-mechanism-without-sasl": Mistake(
        ("worker",), CONFIG, "kafka.security_protocol PLAINTEXT does not use SASL",
        env={"PERSONA_STREAM_KAFKA__SASL_MECHANISM": "PLAIN"}),
    "config-ssl-ca-file-missing": Mistake(
        ("worker",), CONFIG, "kafka.ssl_cafile: no such file {tmp}/ca.pem",
        env={"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SSL",
             "PERSONA_STREAM_KAFKA__SSL_CAFILE": "{tmp}/ca.pem"}),
    "config-log-level-unknown": Mistake(
        RUN, CONFIG, "'metrics.log_level' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        env={"PERSONA_STREAM_METRICS__LOG_LEVEL": "LOUD"}),
    "personas-from-corrupt-file": Mistake(("personas", "--from", "{tmp}/broken"), INPUT,
                                          "personas.json"),
    "profile-from-corrupt-file": Mistake(("profile", "p_1", "--from", "{tmp}/broken"), INPUT,
                                         "profiles.jsonl"),
    # an input that cannot be read
    "run-input-missing": Mistake(("run", "{tmp}/missing.jsonl", "--out", "{tmp}/out"), INPUT,
                                 "cannot read"),
    "personas-from-folder-without-personas": Mistake(("personas", "--from", "{tmp}"), INPUT,
                                                     "personas.json"),
    "profile-from-folder-without-profiles": Mistake(("profile", "p_1", "--from", "{tmp}"),
                                                    INPUT, "profiles.jsonl"),
    "personas-url-nobody-listens": Mistake(("personas", "--url", "http://127.0.0.1:{port}"),
                                           INPUT, "cannot reach the worker"),
    "state-file-missing": Mistake(
        ("replay", "--files", "-", "--dry-run", "--state-in", "{tmp}/missing.state"), STATE,
        "missing.state"),
    "output-unwritable": Mistake(("simulate", "--profiles", "5", "--output", "{tmp}"), INPUT,
                                 "{tmp}"),
    # a broker that cannot be reached
    "worker-broker-unreachable": Mistake(("worker",), BROKER,
                                         "cannot reach Kafka at 127.0.0.1:{port}", UNREACHABLE),
    "replay-broker-unreachable": Mistake(("replay", "--topic", "t", "--dry-run"), BROKER,
                                         "cannot reach Kafka at 127.0.0.1:{port}", UNREACHABLE),
    # a replay of files reads the deployment's forget requests first, or says how not to
    "replay-files-forget-requests-unreachable": Mistake(
        ("replay", "--files", "-", "--dry-run"), BROKER, "--ignore-forget-requests",
        UNREACHABLE),
    "forget-broker-unreachable": Mistake(("forget", "email:jo@mailbox.org"), BROKER,
                                         "cannot reach Kafka at 127.0.0.1:{port}", UNREACHABLE),
    "forget-state-missing": Mistake(("forget", "jo@mailbox.org", "--state",
                                     "{tmp}/missing.state"), STATE, "missing.state"),
    "forget-empty-identifier": Mistake(("forget", ""), USAGE, "IDENTIFIER is empty"),
    "forget-junk-identifier": Mistake(("forget", "email:jo@mailbox.org", "anonymous_id:null"),
                                      USAGE, "'anonymous_id:null' is on the identity blocklist"),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_an_operator_mistake_is_one_line_and_its_exit_code(mistake: Mistake,
                                                           tmp_path: Path) -> None:
    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, port=port)

    port = free_port()  # nothing listens there
    broken = tmp_path / "broken"  # an output folder whose files were cut short
    broken.mkdir()
    (broken / "personas.json").write_bytes(b'[{"segment_id": 1, "na')
    (broken / "profiles.jsonl").write_bytes(b'{"profile_id": "p_1", "identif')
    args = [fill(a) for a in mistake.args]
    if mistake.config is not None:
        (tmp_path / "config.yaml").write_text(mistake.config, encoding="utf-8")
        args += ["--config", str(tmp_path / "config.yaml")]
    result = run_cli(*args, stdin=b"", timeout=60,
                     env={k: fill(v) for k, v in (mistake.env or {}).items()})
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    command = args[0] if args[0] in COMMANDS else None
    assert lines[0].startswith(f"persona-stream {command}: error: " if command
                               else "persona-stream: error: "), lines[0]
    assert fill(mistake.says) in lines[0]
    assert result.returncode == mistake.code, lines[0]
    assert result.stdout == b""


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of `run` on a small simulate stream."""
    tmp = tmp_path_factory.mktemp("cli")
    stream, out = tmp / "s.jsonl", tmp / "out"
    assert run_cli("simulate", "--profiles", "50", "--seed", "1", "--output",
                   str(stream)).returncode == 0
    done = run_cli("run", str(stream), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    return out


def _some_profile(folder: Path) -> str:
    first = (folder / "profiles.jsonl").read_bytes().splitlines()[0]
    return str(orjson.loads(first)["profile_id"])


def test_a_closed_pipe_through_a_shell_exits_0_quietly(run_folder: Path) -> None:
    """``persona-stream profile ID --from DIR | head -1``: the reader leaves after one line
    of the pretty-printed profile; persona-stream's own status (pipefail) is 0."""
    command = shlex.join([*CLI, "profile", _some_profile(run_folder), "--from",
                          str(run_folder)])
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"],
                          capture_output=True, timeout=60, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", b"{\n")


@pytest.mark.parametrize("args", [["profile", "{id}", "--from", "{dir}"],
                                  ["personas", "--from", "{dir}", "--json"],
                                  ["personas", "--from", "{dir}"],
                                  ["simulate", "--profiles", "5", "--output", "-"]],
                         ids=["profile", "personas-json", "personas-table", "simulate"])
def test_output_into_a_pipe_already_closed_exits_0_quietly(args: list[str],
                                                          run_folder: Path) -> None:
    """The reader is gone before the first write (as ``head`` is once it has its lines):
    every write fails with EPIPE, deterministically; still 0 and nothing on stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([*CLI, *(a.format(id=_some_profile(run_folder), dir=run_folder)
                                       for a in args)],
                              stdout=write, stderr=subprocess.PIPE, timeout=60, check=False)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, b"")


@pytest.mark.parametrize("command", [["run", "-", "--out", "{tmp}/out", "--quiet"],
                                     ["replay", "--files", "-", "--dry-run", "--quiet",
                                      "--ignore-forget-requests"]],
                         ids=["run", "replay"])
def test_ctrl_c_stops_with_130_and_one_line(command: list[str], tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, *(a.format(tmp=tmp_path) for a in command)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        # more than a pipe holds: once written, the command is reading its input (so it is
        # past start-up, inside main); stdin stays open, so it then waits for more
        proc.stdin.write(b"{}\n" * 100_000)
        proc.stdin.flush()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], err
    assert lines[0].startswith(f"persona-stream {command[0]}: interrupted"), lines[0]
    assert proc.returncode == INTERRUPTED


def test_simulate_run_personas_profile_end_to_end(tmp_path: Path) -> None:
    stream, truth, out = tmp_path / "s.jsonl.gz", tmp_path / "truth.json", tmp_path / "out"
    assert run_cli("simulate", "--profiles", "800", "--seed", "2", "--output", str(stream),
               "--truth", str(truth)).returncode == 0
    result = run_cli("run", str(stream), "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {"segment_changes.jsonl", "identity_merges.jsonl", "profiles.jsonl",
             "personas.json", "dead_letters.jsonl", "summary.json"}
    assert names <= {p.name for p in out.iterdir()}
    summary = orjson.loads((out / "summary.json").read_bytes())
    dead = (out / "dead_letters.jsonl").read_bytes().splitlines()
    changes = (out / "segment_changes.jsonl").read_bytes().splitlines()
    merges = (out / "identity_merges.jsonl").read_bytes().splitlines()
    profiles = [orjson.loads(line) for line in (out / "profiles.jsonl").read_bytes().splitlines()]
    assert summary["events_invalid"] == len(dead) > 0
    assert all(orjson.loads(d)["error"] for d in dead)
    assert summary["segment_changes"] == len(changes) > 0
    assert summary["identity_merges"] == len(merges) > 0
    assert summary["profiles"] == len(profiles)
    assert summary["events_read"] == (summary["events_valid"] + summary["events_invalid"]
                                      + summary["events_duplicate"])
    assert sum(p["event_count"] for p in profiles) == summary["events_valid"]

    table = run_cli("personas", "--from", str(out))
    assert table.returncode == 0
    cards = orjson.loads((out / "personas.json").read_bytes())
    assert len(cards) == summary["segments"] > 0
    for card in cards:
        assert card["name"].encode() in table.stdout

    known = next(p for p in profiles if "email" in p["identifiers"])
    email = known["identifiers"]["email"][0]
    for key in (known["profile_id"], email, f"email:{email}"):
        shown = run_cli("profile", key, "--from", str(out))
        assert shown.returncode == 0
        assert orjson.loads(shown.stdout)["profile_id"] == known["profile_id"]
    assert run_cli("profile", "nobody@nowhere", "--from", str(out)).returncode == 2

    scored = run_cli("evaluate", "--truth", str(truth), "--from", str(out), "--json")
    assert scored.returncode == 0, scored.stderr
    figures = orjson.loads(scored.stdout)
    assert figures["profiles_scored"] > 300 and figures["ari"] > 0.5
    assert figures["empty_segments"] == figures["card_values_out_of_domain"] == 0
    lineage = [orjson.loads(line) for line in
               (out / "segment_lineage.jsonl").read_bytes().splitlines()]
    assert {r["segment"]["id"] for r in lineage if r["kind"] == "birth"} >= {
        c["segment_id"] for c in cards}
    missing = run_cli("evaluate", "--truth", str(truth), "--from", str(tmp_path))
    assert missing.returncode == INPUT
    assert missing.stderr.count(b"\n") == 1 and b"profiles.jsonl is missing" in missing.stderr


def test_run_reads_stdin_and_dead_letters_garbage(tmp_path: Path) -> None:
    out = tmp_path / "o"
    good = orjson.dumps({"event_id": "e1", "occurred_at": "2026-01-01T00:00:00Z",
                         "type": "page_view", "identity": {"anonymous_id": "a1"}})
    result = run_cli("run", "-", "--out", str(out), stdin=good + b"\nnot json\n\xff\xfe\n")
    assert result.returncode == 0
    dead = [orjson.loads(line) for line in (out / "dead_letters.jsonl").read_bytes().splitlines()]
    assert [d["error"] for d in dead] == ["not_json", "not_utf8"]
    assert "raw_base64" in dead[1]
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert (summary["events_valid"], summary["events_invalid"], summary["profiles"]) == (1, 2, 1)


def test_simulate_creates_the_output_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "s.jsonl"
    assert run_cli("simulate", "--profiles", "5", "--output", str(target)).returncode == 0
    assert target.stat().st_size > 0
