"""Configuration: defaults, YAML file merged over them, PERSONA_STREAM_* overrides, and
errors that name the offending key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from workers.config import DEFAULTS_PATH, Config, load
from workers.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load() -> None:
    config = load(env={})
    assert isinstance(config, Config)
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.kafka.partitions == 4
    assert config.intake.max_event_bytes == 65536
    assert config.intake.reorder_window_seconds == 300.0
    assert config.identity.limits == {"user_id": 1, "crm_id": 1, "email": 5, "phone": 5,
                                      "device_id": 20, "anonymous_id": 100}
    assert next(iter(config.identity.limits)) == "user_id"  # order is priority
    assert "undefined" in config.identity.blocklist_values
    assert config.segmentation.model == "kmeans"
    assert config.metrics.port == 9464
    assert config.state.store == "memory"
    # every section of defaults.yaml is used
    raw = yaml.safe_load(DEFAULTS_PATH.read_text(encoding="utf-8"))
    assert set(raw) == {"kafka", "intake", "identity", "features", "segmentation", "output",
                        "metrics", "state", "admin", "audiences"}


def test_yaml_file_overrides_one_key_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_servers: broker-1:9093\n"
                           "segmentation:\n  n_clusters: 8\n")
    config = load(path, env={})
    defaults = load(env={})
    assert config.kafka.bootstrap_servers == "broker-1:9093"
    assert config.segmentation.n_clusters == 8
    assert config.kafka.input_topic == defaults.kafka.input_topic
    assert config.kafka.partitions == defaults.kafka.partitions
    assert config.segmentation.model == defaults.segmentation.model
    assert config.identity == defaults.identity
    assert config.features == defaults.features


@pytest.mark.parametrize("text", ["{}\n", "", "# only a comment\n"])
def test_empty_yaml_loads_defaults(tmp_path: Path, text: str) -> None:
    assert load(write(tmp_path, text), env={}) == load(env={})


def test_env_overrides() -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": "x:1",
                       "PERSONA_STREAM_IDENTITY__LIMITS__EMAIL": "3",
                       "HOME": "/root", "PERSONA_STREAMING": "ignored",
                       # how to build and import the compiled modules, not keys
                       "PERSONA_STREAM_PURE": "1", "PERSONA_STREAM_PGO": "1"})
    assert config.kafka.bootstrap_servers == "x:1"
    assert config.identity.limits["email"] == 3
    assert config.identity.limits["user_id"] == 1  # the rest of the map is kept
    assert list(config.identity.limits) == list(load(env={}).identity.limits)


def test_env_wins_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kafka:\n  bootstrap_servers: from-file:1\n  partitions: 12\n")
    config = load(path, env={"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": "from-env:2"})
    assert config.kafka.bootstrap_servers == "from-env:2"
    assert config.kafka.partitions == 12


SASL = {"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PERSONA_STREAM_KAFKA__SASL_USERNAME": "svc", "PERSONA_STREAM_KAFKA__SASL_PASSWORD": "pw"}


def test_env_typed_values() -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__PARTITIONS": "16",
                       "PERSONA_STREAM_OUTPUT__HASH_IDENTIFIERS": "true",
                       **SASL, "PERSONA_STREAM_KAFKA__SASL_MECHANISM": "PLAIN",
                       "PERSONA_STREAM_INTAKE__REORDER_WINDOW_SECONDS": "60"})
    assert config.kafka.partitions == 16
    assert config.output.hash_identifiers is True
    assert config.kafka.sasl_mechanism == "PLAIN"
    assert config.intake.reorder_window_seconds == 60.0


@pytest.mark.parametrize("secret", ["0123", "12:30"])
def test_env_string_values_are_taken_literally(secret: str) -> None:
    config = load(env={"PERSONA_STREAM_KAFKA__SASL_PASSWORD": secret})
    assert config.kafka.sasl_password == secret


@pytest.mark.parametrize(("text", "env"), [
    ("kafka:\n  topology: partitioned\n", {}),
    ("", {"PERSONA_STREAM_KAFKA__TOPOLOGY": "sequenced"}),
])
def test_a_removed_key_says_what_to_do_instead(tmp_path: Path, text: str,
                                               env: dict[str, str]) -> None:
    """Configurations of earlier versions set kafka.topology; there is one design now."""
    with pytest.raises(ConfigError, match=r"kafka\.topology was removed: every worker runs"
                                          r" the partitioned design .*; delete it"):
        load(write(tmp_path, text) if text else None, env=env)


@pytest.mark.parametrize(("text", "key"), [
    ("kafka:\n  bootstrap_server: x:1\n", "kafka.bootstrap_server"),
    ("kafak:\n  bootstrap_servers: x:1\n", "kafak"),
    ("segmentation:\n  modle: kmeans\n", "segmentation.modle"),
    ("features:\n  traits:\n    numerics: {}\n", "features.traits.numerics"),
])
def test_unknown_yaml_key_names_its_path(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load(write(tmp_path, text), env={})


@pytest.mark.parametrize(("name", "key"), [
    ("PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVER", "kafka.bootstrap_server"),
    ("PERSONA_STREAM_KAFAK__BOOTSTRAP_SERVERS", "kafak"),
    ("PERSONA_STREAM_IDENTITY__LIMITS__COOKIE", "identity.limits.cookie"),
])
def test_unknown_env_key_names_its_path(name: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name}.*{re.escape(repr(key))}"):
        load(env={name: "1"})


@pytest.mark.parametrize(("text", "env", "key"), [
    ("kafka:\n  partitions: four\n", {}, "kafka.partitions"),
    ("kafka:\n  partitions: '4'\n", {}, "kafka.partitions"),
    ("kafka:\n  partitions: true\n", {}, "kafka.partitions"),
    ("output:\n  hash_identifiers: 'no'\n", {}, "output.hash_identifiers"),
    ("identity:\n  limits:\n    email: lots\n", {}, "identity.limits.email"),
    ("identity:\n  blocklist_values: undefined\n", {}, "identity.blocklist_values"),
    ("kafka: 5\n", {}, "kafka"),
    ("{}\n", {"PERSONA_STREAM_INTAKE__MAX_EVENT_BYTES": "big"}, "intake.max_event_bytes"),
    ("{}\n", {"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "[5]"}, "segmentation.n_clusters"),
])
def test_wrong_type_names_its_path(tmp_path: Path, text: str, env: dict[str, str],
                                   key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load(write(tmp_path, text), env=env)


def test_bad_enum_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"segmentation\.model"):
        load(write(tmp_path, "segmentation:\n  model: foo\n"), env={})
    with pytest.raises(ConfigError, match=r"segmentation\.model"):
        load(env={"PERSONA_STREAM_SEGMENTATION__MODEL": "foo"})
    with pytest.raises(ConfigError, match=r"kafka\.security_protocol"):
        load(env={"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ConfigError, match=r"state\.store"):
        load(env={"PERSONA_STREAM_STATE__STORE": "redis"})
    with pytest.raises(ConfigError, match=r"metrics\.log_level' must be one of DEBUG, INFO, "
                       r"WARNING, ERROR, CRITICAL, got 'LOUD'"):
        load(env={"PERSONA_STREAM_METRICS__LOG_LEVEL": "LOUD"})
    with pytest.raises(ConfigError, match=r"kafka\.sasl_mechanism"):
        load(env={"PERSONA_STREAM_KAFKA__SASL_MECHANISM": "GSSAPI"})


def test_enum_values_keep_their_literal_type() -> None:
    config = load(env={**SASL, "PERSONA_STREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                       "PERSONA_STREAM_STATE__STORE": "rocksdb"})
    assert (config.kafka.sasl_mechanism, config.state.store) == ("SCRAM-SHA-512", "rocksdb")
    assert load(env={"PERSONA_STREAM_KAFKA__SASL_MECHANISM": ""}).kafka.sasl_mechanism is None


def test_bad_regex_in_blocklist_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"identity\.blocklist_patterns") as info:
        load(write(tmp_path, "identity:\n  blocklist_patterns: ['^ok$', '(unclosed']\n"),
             env={})
    assert "(unclosed" in str(info.value)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(write(tmp_path, "kafka: [unclosed\n"), env={})
    with pytest.raises(ConfigError, match="mapping"):
        load(write(tmp_path, "- a\n- b\n"), env={})


def test_n_clusters_takes_auto() -> None:
    seg = load(env={"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "auto"}).segmentation
    assert seg.n_clusters == "auto"
    assert seg.most_clusters == seg.max_clusters
    assert load().segmentation.most_clusters == load().segmentation.n_clusters == 5


@pytest.mark.parametrize(("env", "message"), [
    ({"PERSONA_STREAM_SEGMENTATION__MODEL_PARAMS": "{bogus: 1}"},
     r"'segmentation\.model_params' \{'bogus': 1\.0\} do not suit kmeans"),
    ({"PERSONA_STREAM_SEGMENTATION__FEATURES": "{nope: 1}"},
     r"'segmentation\.features' selects no feature"),
    ({"PERSONA_STREAM_FEATURES__TRAITS__NUMERIC": "{age: [90]}"},
     r"features\.traits\.numeric\.age must be \[low, high\]"),
    ({"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "[1, 2"},
     r"'segmentation\.n_clusters' from the environment is not valid YAML"),
    ({"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "!!python/object/apply:os.system ['id']"},
     r"'segmentation\.n_clusters' from the environment is not valid YAML"),
    ({"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "lots"},
     r"'segmentation\.n_clusters' must be an integer or auto, got 'lots'"),
    ({"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "1"},
     r"segmentation\.n_clusters must be >= 2 or auto"),
    ({"PERSONA_STREAM_SEGMENTATION__N_CLUSTERS": "auto",
      "PERSONA_STREAM_SEGMENTATION__MAX_CLUSTERS": "60"},
     r"segmentation\.min_segment_share must be > 0 and below 1 / n_clusters"),
    ({"PERSONA_STREAM_SEGMENTATION__WINDOW_PROFILES": "100"},
     r"segmentation\.window_profiles must be >= warmup_profiles"),
    ({"PERSONA_STREAM_SEGMENTATION__CLIP_QUANTILE": "0.5"},
     r"segmentation\.clip_quantile must be in \[0, 0\.5\)"),
    ({"PERSONA_STREAM_INTAKE__DEDUP_WINDOW_SECONDS": ".inf"},
     r"'intake\.dedup_window_seconds' must be a finite number"),
    ({"PERSONA_STREAM_SEGMENTATION__HYSTERESIS": ".nan"},
     r"'segmentation\.hysteresis' must be a finite number"),
    ({"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": "not a host:::"},
     r"kafka\.bootstrap_servers: 'not a host:::' is not host:port"),
    ({"PERSONA_STREAM_KAFKA__BOOTSTRAP_SERVERS": "a:9092,b:99999"},
     r"'b:99999' is not host:port"),
    ({"PERSONA_STREAM_KAFKA__APPLICATION_ID": "my app/v1"},
     r"kafka\.application_id 'my app/v1' is not a Kafka topic name"),
    ({"PERSONA_STREAM_KAFKA__PARTITIONS": "0"}, r"kafka\.partitions must be >= 1"),
    ({"PERSONA_STREAM_INTAKE__DEDUP_WINDOW_SECONDS": "60"},
     r"intake\.dedup_window_seconds must be >= intake\.reorder_window_seconds"),
    ({"PERSONA_STREAM_SEGMENTATION__VERSION_DELAY_TICKS": "100"},
     r"segmentation\.version_delay_ticks must be a multiple of version_epoch_ticks"),
    ({"PERSONA_STREAM_SEGMENTATION__VERSION_EPOCH_TICKS": "0"},
     r"segmentation\.version_epoch_ticks must be >= 1"),
    ({"PERSONA_STREAM_KAFKA__CONNECT_TIMEOUT_SECONDS": "-1"},
     r"kafka\.connect_timeout_seconds must be > 0"),
    ({"PERSONA_STREAM_KAFKA__SASL_MECHANISM": "PLAIN"},
     r"kafka\.security_protocol PLAINTEXT does not use SASL"),
    ({"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"},
     r"SASL_SSL needs kafka\.sasl_mechanism, kafka\.sasl_username and kafka\.sasl_password"),
    ({"PERSONA_STREAM_KAFKA__SECURITY_PROTOCOL": "SSL",
      "PERSONA_STREAM_KAFKA__SSL_CAFILE": "/no/such/ca.pem"},
     r"kafka\.ssl_cafile: no such file /no/such/ca\.pem"),
    ({"PERSONA_STREAM_METRICS__PORT": "70000"}, r"metrics\.port 70000 is not a TCP port"),
    ({"PERSONA_STREAM_METRICS__LOG_LEVEL": "LOUD"}, r"'metrics\.log_level' must be one of"),
    ({"PERSONA_STREAM_INTAKE__LATEST_EVENT_TIME": "1980-01-01T00:00:00Z"},
     r"intake\.earliest_event_time must be before intake\.latest_event_time"),
    ({"PERSONA_STREAM_INTAKE__EARLIEST_EVENT_TIME": "last year"},
     r"intake\.earliest_event_time 'last year' is not an RFC 3339 time"),
    ({"PERSONA_STREAM_ADMIN__HOST": "0.0.0.0"},
     r"admin\.host 0\.0\.0\.0 is reachable from other machines: set admin\.token"),
    ({"PERSONA_STREAM_ADMIN__HOST": "worker-0.internal"},
     r"admin\.host worker-0\.internal is reachable from other machines"),
    ({"PERSONA_STREAM_ADMIN__TOKEN": "short"}, r"admin\.token must be at least 16 characters"),
    ({"PERSONA_STREAM_ADMIN__TOKEN": "a" * 20, "PERSONA_STREAM_ADMIN__TOKEN_FILE": "/x"},
     r"admin\.token and admin\.token_file are both set"),
    ({"PERSONA_STREAM_ADMIN__TOKEN_FILE": "/no/such/token"},
     r"admin\.token_file: cannot read /no/such/token: No such file"),
    ({"PERSONA_STREAM_ADMIN__PORT": "9464"}, r"admin\.port 9464 is metrics\.port too"),
    ({"PERSONA_STREAM_IDENTITY__PSEUDONYMISE": "true"},
     r"identity\.pseudonymise is on: set identity\.pseudonymise_key"),
    ({"PERSONA_STREAM_INTAKE__DEAD_LETTER_RAW": "drop"},
     r"'intake\.dead_letter_raw' must be one of keep, redact"),
])
def test_operator_mistakes_name_the_setting(env: dict[str, str], message: str) -> None:
    """Each is refused when the configuration is loaded, before any broker or data."""
    with pytest.raises(ConfigError, match=message):
        load(env=env)


def test_secrets_come_from_the_environment_or_a_file_and_never_show(tmp_path: Path) -> None:
    """A Kubernetes Secret mounted as a file (a trailing newline included) is the same token
    as the environment variable; neither appears in the configuration's repr or in the
    copy a saved state's fingerprint is made from (a digest tells two apart)."""
    import dataclasses

    token = "s3cret-token-0123456789"
    (tmp_path / "token").write_text(token + "\n", encoding="utf-8")
    from_file = load(env={"PERSONA_STREAM_ADMIN__HOST": "0.0.0.0",
                          "PERSONA_STREAM_ADMIN__TOKEN_FILE": str(tmp_path / "token")})
    from_env = load(env={"PERSONA_STREAM_ADMIN__HOST": "0.0.0.0",
                         "PERSONA_STREAM_ADMIN__TOKEN": token})
    assert from_file.admin.token == from_env.admin.token
    assert from_file.admin.token is not None and from_file.admin.token.reveal() == token
    key = load(env={"PERSONA_STREAM_IDENTITY__PSEUDONYMISE": "true",
                    "PERSONA_STREAM_IDENTITY__PSEUDONYMISE_KEY": "0123456789012345"})
    for config, secret in ((from_env, token), (key, "0123456789012345")):
        assert secret not in repr(config)
        assert secret not in str(dataclasses.asdict(config))
    other = load(env={"PERSONA_STREAM_IDENTITY__PSEUDONYMISE": "true",
                      "PERSONA_STREAM_IDENTITY__PSEUDONYMISE_KEY": "another key, 16 chars"})
    assert (dataclasses.asdict(key)["identity"]["pseudonymise_key"]
            != dataclasses.asdict(other)["identity"]["pseudonymise_key"])


def test_a_loopback_admin_listener_needs_no_token() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert load(env={"PERSONA_STREAM_ADMIN__HOST": host}).admin.token is None


def test_the_live_example_sets_what_it_says_and_validates() -> None:
    """examples/live.yaml (README "Low latency") loads over the defaults, passes the checks,
    and every key it sets is in force: a misspelt or misplaced key would fail here."""
    path = Path(__file__).resolve().parent.parent / "examples" / "live.yaml"
    config = load(path, env={})
    sections = yaml.safe_load(path.read_text(encoding="utf-8"))
    for section, keys in sections.items():
        for key, value in keys.items():
            assert getattr(getattr(config, section), key) == value, (section, key)
    assert config.intake.reorder_window_seconds < load(env={}).intake.reorder_window_seconds
