"""Configuration: one YAML file plus ``PERSONA_STREAM_<SECTION>__<KEY>`` overrides.

Defaults live in ``defaults.yaml`` next to this module; a user file is merged
over them key by key, then environment overrides, then everything is checked
against the frozen dataclasses below so a typo fails at start with the key's
full path instead of surfacing as a wrong segment hours later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import os
import re
import types
import typing
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from workers.compiled import PGO_ENV, PURE_ENV
from workers.errors import ConfigError

ENV_PREFIX = "PERSONA_STREAM_"
SECRET_MIN_LENGTH = 16
DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
ModelName = Literal["kmeans", "streamkmeans", "dbstream", "clustream"]
StoreName = Literal["memory", "rocksdb"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
IdentifierType = Literal["user_id", "crm_id", "email", "phone", "device_id", "anonymous_id"]
ProcessingGuarantee = Literal["at_least_once", "exactly_once"]


class Secret:
    """A secret setting (a token, a key): its value shows in no repr, log or saved state.

    What a copy of the configuration holds of it (``dataclasses.asdict``, from which a
    saved state's configuration fingerprint is made) is a digest: two secrets are told
    apart without either being written down.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(b"persona-stream secret\0"
                                          + self._value.encode()).hexdigest()[:16]

    def __deepcopy__(self, memo: dict[int, Any]) -> str:
        return self.digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(),
                                                                 other._value.encode())

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        return "Secret('***')"


def read_secret(value: Secret | None, file: str | None, key: str) -> Secret | None:
    """A secret set directly (``KEY``, or its environment variable) or held in a file
    (``KEY_file``, e.g. a mounted Kubernetes Secret: surrounding whitespace removed)."""
    if file is None:
        return value
    try:
        text = Path(file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{key}_file: cannot read {file}: {reason}") from None
    return Secret(text) if text else None


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    application_id: str
    input_topic: str
    dlq_topic: str
    segment_changes_topic: str
    identity_merges_topic: str
    personas_topic: str
    audiences_topic: str  # written only with audiences.enabled
    # requests to forget a person (`persona-stream forget`): identifier hashes, kept forever
    forget_topic: str
    partitions: int
    replication_factor: int
    retention_ms: int
    # the input topic's retention: -1 keeps records however old their timestamps
    input_retention_ms: int
    input_retention_bytes: int
    security_protocol: SecurityProtocol
    sasl_mechanism: SaslMechanism | None
    sasl_username: str | None
    sasl_password: str | None
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    # how long a client waits for the broker before giving up with a one-line error
    connect_timeout_seconds: float
    # static group membership: a restarted worker with the same id gets its
    # partitions back without a rebalance of the whole group
    instance_id: str | None
    # the owner commits its state (changed keys only) and its offset this often
    commit_interval_seconds: float
    processing_guarantee: ProcessingGuarantee


CsvTimeFormat = Literal["iso", "epoch_s", "epoch_ms", "epoch_us"]
InputFormat = Literal["touchpoint", "segment", "snowplow", "ga4", "csv", "auto"]
DeadLetterRaw = Literal["keep", "redact"]


@dataclass(frozen=True)
class SnowplowConfig:
    # event name (event_name, unstruct schema name, "schema:data.type", or for
    # structured events "se_category:se_action" / "se_action") -> touchpoint type
    event_types: dict[str, str]
    # enriched field -> identifier type; the first field giving a type wins
    identity: dict[str, str]
    channels: dict[str, str]  # platform -> channel
    devices: dict[str, str]  # dvce_type or br_type -> device type


@dataclass(frozen=True)
class Ga4Config:
    event_types: dict[str, str]  # event_name -> touchpoint type
    channels: dict[str, str]  # platform -> channel
    devices: dict[str, str]  # device.category -> device type
    countries: dict[str, str]  # geo.country (a name) -> ISO 3166-1 alpha-2


@dataclass(frozen=True)
class CsvConfig:
    fields: list[str]  # the file's columns, in order (its header line when it has one)
    header: bool  # a line equal to `fields` is the header: skipped, not a dead letter
    delimiter: str
    columns: dict[str, str]  # touchpoint path (identity.user_id...) -> column name
    time_format: CsvTimeFormat
    numbers: list[str]  # touchpoint paths whose cells are numbers
    booleans: list[str]  # ...and true/false
    event_types: dict[str, str]  # the type column's values -> touchpoint type


@dataclass(frozen=True)
class SegmentConfig:
    """How Segment Spec / RudderStack calls become touchpoints (docs/formats/segment.md)."""

    # track event name -> touchpoint type; names are compared snake_cased, so
    # "Order Completed" and "order_completed" are one; unlisted names are snake_cased
    events: dict[str, str]
    # your own names, read over ``events`` (so adding one does not repeat the table)
    custom_events: dict[str, str]
    # the type of every other call: identify, page, screen, alias, group
    calls: dict[str, str]
    # the call's ``channel`` (lowercased) -> touchpoint channel; null = says nothing
    channels: dict[str, str | None]
    # context.library.name -> channel, when ``channel`` gave none
    library_channels: dict[str, str]
    # context.device.type (lowercased) -> device.type; null = says nothing
    device_types: dict[str, str | None]
    # trait key (in traits or context.traits) -> identifier type
    identity_traits: dict[str, IdentifierType]
    # trait key -> touchpoint trait key; null = personal data, left out
    traits: dict[str, str | None]
    # company_size band -> most employees in it, ascending
    employee_bands: dict[str, int]
    # a conversion without properties.<features.revenue_property> takes the first of these
    revenue_keys: list[str]
    # the identifier type an alias call's previousId is
    alias_previous_id: IdentifierType
    # a batch envelope may be this large; each call in it still has max_event_bytes
    max_batch_bytes: int


@dataclass(frozen=True)
class IntakeConfig:
    max_event_bytes: int
    # events are processed in event-time order inside this window, so that
    # arrival order within it cannot change any result (see README "Ordering")
    reorder_window_seconds: float
    # exact de-duplication by event_id over this much event time
    dedup_window_seconds: float
    # bounds a valid event stays within (workers.core.touchpoints.IntakeLimits)
    earliest_event_time: str
    latest_event_time: str
    future_tolerance_seconds: float
    max_depth: int
    max_keys: int
    max_amount: float
    # the format of every source (touchpoint, segment, snowplow, ga4, csv, or auto: per
    # record), and a format per input topic; docs/formats/
    format: InputFormat
    formats: dict[str, InputFormat]
    # a dead letter's raw record as received, or with identifier values redacted
    # (workers.core.privacy.redact; docs/contracts.md "Dead letter")
    dead_letter_raw: DeadLetterRaw
    segment: SegmentConfig
    # input formats: their mapping tables (docs/formats/)
    snowplow: SnowplowConfig
    ga4: Ga4Config
    csv: CsvConfig


@dataclass(frozen=True)
class IdentityConfig:
    # identifier types, strongest first, with the most a profile may hold
    limits: dict[str, int]
    blocklist_values: list[str]
    blocklist_patterns: list[str]
    # identifier values are replaced by HMAC-SHA256(key, value) at intake, before any
    # store, output or log sees them (README "Security and privacy")
    pseudonymise: bool = False
    pseudonymise_key: Secret | None = None
    pseudonymise_key_file: str | None = None


@dataclass(frozen=True)
class TraitsConfig:
    categorical: dict[str, list[str]]
    numeric: dict[str, list[float]]


@dataclass(frozen=True)
class FeaturesConfig:
    half_life_days: float
    # the recent set (recent.*): the same counts, payments and basket decayed faster
    recent_half_life_days: float
    session_gap_minutes: float
    event_types: list[str]
    channels: list[str]
    devices: list[str]
    payment_methods: list[str]
    conversion_types: list[str]
    engagement_types: list[str]
    revenue_property: str
    payment_property: str
    product_property: str
    max_traits: int
    traits: TraitsConfig
    # human words for features, used to name personas
    labels: dict[str, str]


@dataclass(frozen=True)
class SegmentationConfig:
    model: ModelName
    n_clusters: int | Literal["auto"]  # auto: chosen by silhouette (core/cluster_count.py)
    seed: int
    halflife: float
    model_params: dict[str, float]
    # feature-name patterns (fnmatch) fed to the model, with weights
    features: dict[str, float]
    min_events: int
    learn_min_events: int
    warmup_profiles: int
    learn_interval_seconds: float
    assign_tick_seconds: float
    # profile partitions (workers.core.partitioned): the trainer learns once per epoch of
    # version_epoch_ticks ticks; a version learned in the epoch of tick n is in force from
    # tick n + version_delay_ticks (rounded to its epoch) everywhere
    version_epoch_ticks: int
    version_delay_ticks: int
    hysteresis: float
    snapshot_every_learns: int
    publish_shift: float
    min_publish_interval_seconds: float
    # the robust reference space and the segment registry (workers/core/reference.py,
    # workers/core/registry.py)
    window_profiles: int
    clip_quantile: float
    min_segment_share: float
    match_distance: float
    birth_confirmations: int
    max_clusters: int  # n_clusters auto: the most segments it may choose

    @property
    def most_clusters(self) -> int:
        """The most segments the model may have: n_clusters, or max_clusters when auto."""
        return self.max_clusters if self.n_clusters == "auto" else self.n_clusters


@dataclass(frozen=True)
class OutputConfig:
    hash_identifiers: bool
    explanation_size: int
    dead_letter_raw_bytes: int


@dataclass(frozen=True)
class AudiencesConfig:
    """Audience calls for marketing tools (README "Connecting marketing tools")."""

    enabled: bool = False
    # segment id -> the audience key a marketer chose; other segments keep the key
    # derived from their name when first seen
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def chosen(self) -> dict[int, str]:
        return {int(sid): key for sid, key in self.keys.items()}


@dataclass(frozen=True)
class StateConfig:
    # where profile states live: "memory" (fastest) or "rocksdb" (a local
    # rocksdict store: resident memory holds identities and the model, not profiles)
    store: StoreName = "memory"
    # rocksdb: the directory its (throw-away) store is created in; None = system temp
    directory: str | None = None
    # workers that are not the owner keep a copy of the owner's changelogs, so a
    # takeover reads only the newest changes instead of the whole state
    standby: bool = True


@dataclass(frozen=True)
class MetricsConfig:
    host: str
    port: int
    log_level: LogLevel


@dataclass(frozen=True)
class AdminConfig:
    """The listener of the pages that return identifiers (``/profile/{key}``, ``/profiles``)."""

    host: str = "127.0.0.1"
    port: int = 9465
    # the bearer token those pages ask for; required on an address other than loopback.
    # Set it from the environment (PERSONA_STREAM_ADMIN__TOKEN) or name a file holding
    # it (a mounted Kubernetes Secret): never in a file under version control
    token: Secret | None = None
    token_file: str | None = None


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    intake: IntakeConfig
    identity: IdentityConfig
    features: FeaturesConfig
    segmentation: SegmentationConfig
    output: OutputConfig
    metrics: MetricsConfig = field(
        default_factory=lambda: MetricsConfig(host="0.0.0.0", port=9464, log_level="INFO")
    )
    state: StateConfig = field(default_factory=StateConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    audiences: AudiencesConfig = field(default_factory=AudiencesConfig)


T = TypeVar("T")


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path``, then environment overrides."""
    data = _read_yaml(DEFAULTS_PATH)
    if path is not None:
        try:
            user = _read_yaml(Path(path))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        _merge(data, user, Config)
    _apply_env(data, os.environ if env is None else env)
    return _build(Config, data, "")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: what is wrong, and where."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _merge(base: dict[str, Any], over: Mapping[str, Any], cls: Any) -> None:
    """Sections merge key by key; free-form maps and lists are replaced whole."""
    hints = typing.get_type_hints(cls)
    for key, value in over.items():
        hint = hints.get(key)
        if (hint is not None and dataclasses.is_dataclass(hint)
                and isinstance(value, dict) and isinstance(base.get(key), dict)):
            _merge(base[key], value, hint)
        else:
            base[key] = value  # unknown keys are reported by _build with their path


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in (PURE_ENV, PGO_ENV):  # how to build
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        node: Any = data
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                dotted = ".".join(parts[: i + 1])
                raise ConfigError(f"environment variable {name}: {_REMOVED[dotted]}"
                                  if dotted in _REMOVED
                                  else f"environment variable {name} names unknown key '{dotted}'")
            if i == len(parts) - 1:
                node[part] = _EnvValue(env[name])
            else:
                node = node[part]


class _EnvValue(str):
    """A raw environment value: parsed as YAML unless the setting is a string, so a
    password like ``0123`` is not read as the octal number 83."""


# keys of earlier versions that a configuration may still set: what to do instead
_REMOVED = {
    "kafka.topology": "kafka.topology was removed: every worker runs the partitioned design"
                      " (README \"Scaling and recovery\"); delete it",
}


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"'{where.rstrip('.') or 'config'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}{unknown[0]}"
        raise ConfigError(_REMOVED.get(key, f"unknown configuration key '{key}'"))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        path = f"{where}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing configuration key '{path}'")
            continue
        values[name] = _coerce(hints[name], data[name], path)
    return cls(**values)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    if isinstance(value, _EnvValue):
        if value == "":
            value = None
        elif not _is_text(hint):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as exc:  # also a !!python tag: safe_load refuses it
                problem = str(exc).splitlines()[0]
                raise ConfigError(f"'{path}' from the environment is not valid YAML:"
                                  f" {problem}") from None
        else:
            value = str(value)
    if hint is Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"'{path}' must be a string, got a {type(value).__name__}")
        return Secret(str(value))
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"'{path}' must be one of {', '.join(map(str, choices))},"
                              f" got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path + ".")  # type: ignore[arg-type]
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, path)
        for option in inner:  # int | Literal["auto"]: the first that takes the value
            try:
                return _coerce(option, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"'{path}' must be {' or '.join(map(_describe, inner))},"
                          f" got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"'{path}' must be a list, got {value!r}")
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}' must be a mapping, got {value!r}")
        return {str(k): _coerce(item, v, f"{path}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{path}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{path}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"'{path}' must be a number, got {value!r}")
        if not math.isfinite(value):  # .inf, .nan: no window, bound or weight is infinite
            raise ConfigError(f"'{path}' must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"'{path}' must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"'{path}': unsupported type {hint}")  # pragma: no cover


def _is_text(hint: Any) -> bool:
    """A string setting (``str`` or ``str | None``), whose environment value is taken as is."""
    return hint in (str, Secret) or (
        typing.get_origin(hint) in (types.UnionType, typing.Union)
        and any(arg in (str, Secret) for arg in typing.get_args(hint)))


def validate(config: Config) -> Config:
    """Cross-field checks that types alone cannot express; the first problem is raised."""
    problems = chain(_ranges(config), _kafka_problems(config.kafka),
                     _metrics_problems(config.metrics), _admin_problems(config),
                     _identity_problems(config.identity), _intake_problems(config.intake),
                     _format_problems(config.intake),
                     _trait_problems(config.features.traits), _pattern_problems(config.identity),
                     _audience_problems(config.audiences), _model_problems(config))
    problem = next(problems, None)
    if problem is not None:
        raise ConfigError(problem)
    return _secrets_read(config)


def _secrets_read(config: Config) -> Config:
    """Secrets given as files, read once at start: the rest of the code sees ``admin.token``
    and ``identity.pseudonymise_key`` only, wherever they came from."""
    a, i = config.admin, config.identity
    if a.token_file is not None:
        a = dataclasses.replace(a, token=read_secret(None, a.token_file, "admin.token"),
                                token_file=None)
    if i.pseudonymise_key_file is not None:
        i = dataclasses.replace(i, pseudonymise_key=read_secret(
            None, i.pseudonymise_key_file, "identity.pseudonymise_key"),
            pseudonymise_key_file=None)
    return dataclasses.replace(config, admin=a, identity=i)


def _ranges(config: Config) -> Iterator[str]:
    k, i, seg = config.kafka, config.intake, config.segmentation
    checks: list[tuple[bool, str]] = [
        (i.max_event_bytes > 0, "intake.max_event_bytes must be > 0"),
        (i.reorder_window_seconds >= 0, "intake.reorder_window_seconds must be >= 0"),
        (i.dedup_window_seconds > 0, "intake.dedup_window_seconds must be > 0"),
        # an event's id is remembered at least as long as the event may wait for its turn:
        # a copy arriving meanwhile is caught, never held next to it
        (i.dedup_window_seconds >= i.reorder_window_seconds,
         "intake.dedup_window_seconds must be >= intake.reorder_window_seconds"),
        (i.future_tolerance_seconds > 0, "intake.future_tolerance_seconds must be > 0"),
        (i.max_depth >= 2, "intake.max_depth must be >= 2 (the event and its fields)"),
        (i.max_keys >= 1, "intake.max_keys must be >= 1"),
        (i.max_amount > 0, "intake.max_amount must be > 0"),
        (bool(config.identity.limits), "identity.limits must name at least one identifier type"),
        (all(v >= 1 for v in config.identity.limits.values()),
         "identity.limits values must be >= 1"),
        (config.features.half_life_days > 0, "features.half_life_days must be > 0"),
        (config.features.recent_half_life_days > 0,
         "features.recent_half_life_days must be > 0"),
        (config.features.max_traits >= 0, "features.max_traits must be >= 0"),
        (seg.learn_min_events >= 1, "segmentation.learn_min_events must be >= 1"),
        (seg.n_clusters == "auto" or seg.n_clusters >= 2,
         "segmentation.n_clusters must be >= 2 or auto"),
        (seg.max_clusters >= 2, "segmentation.max_clusters must be >= 2"),
        (0 <= seg.hysteresis < 1, "segmentation.hysteresis must be in [0, 1)"),
        (seg.warmup_profiles >= seg.most_clusters,
         "segmentation.warmup_profiles must be >= n_clusters (max_clusters when auto)"),
        (seg.assign_tick_seconds > 0, "segmentation.assign_tick_seconds must be > 0"),
        (seg.version_epoch_ticks >= 1, "segmentation.version_epoch_ticks must be >= 1"),
        (seg.version_delay_ticks >= seg.version_epoch_ticks >= 1
         and seg.version_delay_ticks % seg.version_epoch_ticks == 0,
         "segmentation.version_delay_ticks must be a multiple of version_epoch_ticks"),
        (seg.window_profiles >= seg.warmup_profiles,
         "segmentation.window_profiles must be >= warmup_profiles"),
        (0 <= seg.clip_quantile < 0.5, "segmentation.clip_quantile must be in [0, 0.5)"),
        (0 < seg.min_segment_share * seg.most_clusters < 1,
         "segmentation.min_segment_share must be > 0 and below 1 / n_clusters (max_clusters"
         " when auto)"),
        (seg.match_distance > 0, "segmentation.match_distance must be > 0"),
        (seg.birth_confirmations >= 1, "segmentation.birth_confirmations must be >= 1"),
        (1 <= config.output.explanation_size <= 5, "output.explanation_size must be in 1..5"),
        # a dead letter holds the kept bytes escaped (up to 6x): it must stay under 1 MiB
        (1024 <= config.output.dead_letter_raw_bytes <= 131072,
         "output.dead_letter_raw_bytes must be in 1024..131072"),
        (k.commit_interval_seconds > 0, "kafka.commit_interval_seconds must be > 0"),
        (k.input_retention_ms >= -1, "kafka.input_retention_ms must be -1 (forever) or >= 0"),
        (k.input_retention_bytes >= -1,
         "kafka.input_retention_bytes must be -1 (no limit) or >= 0"),
        (k.connect_timeout_seconds > 0, "kafka.connect_timeout_seconds must be > 0"),
        (k.partitions >= 1, "kafka.partitions must be >= 1"),
        (k.replication_factor >= 1, "kafka.replication_factor must be >= 1"),
        (k.retention_ms >= 1 or k.retention_ms == -1,
         "kafka.retention_ms must be >= 1, or -1 to keep records forever"),
    ]
    return (message for ok, message in checks if not ok)


def _kafka_problems(k: KafkaConfig) -> Iterator[str]:
    for server in k.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not _HOST_RE.fullmatch(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            yield (f"kafka.bootstrap_servers: {server.strip()!r} is not host:port (several"
                   " are separated by commas)")
    names = {"application_id": k.application_id, "input_topic": k.input_topic,
             "dlq_topic": k.dlq_topic, "segment_changes_topic": k.segment_changes_topic,
             "identity_merges_topic": k.identity_merges_topic,
             "personas_topic": k.personas_topic, "audiences_topic": k.audiences_topic,
             "forget_topic": k.forget_topic}
    for key, name in names.items():
        if not _TOPIC_RE.fullmatch(name):
            yield (f"kafka.{key} {name!r} is not a Kafka topic name: 1..200 of the letters,"
                   " digits, '.', '_' and '-'")
    sasl = k.security_protocol.startswith("SASL_")
    if sasl and (k.sasl_mechanism is None or not k.sasl_username or not k.sasl_password):
        yield (f"kafka.security_protocol {k.security_protocol} needs kafka.sasl_mechanism,"
               " kafka.sasl_username and kafka.sasl_password")
    if not sasl and k.sasl_mechanism is not None:
        yield (f"kafka.sasl_mechanism is set, but kafka.security_protocol"
               f" {k.security_protocol} does not use SASL (SASL_PLAINTEXT or SASL_SSL does)")
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(k, key)
        if path is not None and not os.path.isfile(path):
            yield f"kafka.{key}: no such file {path}"


def _metrics_problems(m: MetricsConfig) -> Iterator[str]:
    if not 1 <= m.port <= 65535:
        yield f"metrics.port {m.port} is not a TCP port (1..65535)"
    if not m.host:
        yield "metrics.host must not be empty (0.0.0.0 listens on every address)"


def is_loopback(host: str) -> bool:
    """Only this machine can connect to ``host``: a loopback address, or ``localhost``."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def _admin_problems(config: Config) -> Iterator[str]:
    a = config.admin
    if not 1 <= a.port <= 65535:
        yield f"admin.port {a.port} is not a TCP port (1..65535)"
    if a.port == config.metrics.port:
        yield (f"admin.port {a.port} is metrics.port too: the pages holding identifiers"
               " need a listener of their own")
    if not a.host:
        yield "admin.host must not be empty (127.0.0.1 keeps the pages on this machine)"
    token = yield from _secret_problems(a.token, a.token_file, "admin.token")
    if token is None and a.host and not is_loopback(a.host):
        yield (f"admin.host {a.host} is reachable from other machines: set admin.token"
               " (PERSONA_STREAM_ADMIN__TOKEN) or admin.token_file, or keep it on 127.0.0.1")


def _identity_problems(i: IdentityConfig) -> Iterator[str]:
    key = yield from _secret_problems(i.pseudonymise_key, i.pseudonymise_key_file,
                                      "identity.pseudonymise_key")
    if i.pseudonymise and key is None:
        yield ("identity.pseudonymise is on: set identity.pseudonymise_key"
               " (PERSONA_STREAM_IDENTITY__PSEUDONYMISE_KEY) or identity.pseudonymise_key_file")


def _secret_problems(value: Secret | None, file: str | None,
                     key: str) -> Generator[str, None, Secret | None]:
    """What is wrong with a secret set directly or in a file; returns it when usable."""
    if value is not None and file is not None:
        yield f"{key} and {key}_file are both set: set one"
        return None
    try:
        secret = read_secret(value, file, key)
    except ConfigError as exc:
        yield str(exc)
        return None
    if secret is not None and len(secret.reveal()) < SECRET_MIN_LENGTH:
        yield f"{key} must be at least {SECRET_MIN_LENGTH} characters"
        return None
    return secret


def _intake_problems(i: IntakeConfig) -> Iterator[str]:
    from workers.core.touchpoints import parse_time

    times = {}
    for key in ("earliest_event_time", "latest_event_time"):
        text = getattr(i, key)
        try:
            times[key] = parse_time(text)
        except ValueError:
            yield f"intake.{key} {text!r} is not an RFC 3339 time (e.g. 1990-01-01T00:00:00Z)"
    if len(times) == 2 and times["earliest_event_time"] >= times["latest_event_time"]:
        yield "intake.earliest_event_time must be before intake.latest_event_time"


def _format_problems(i: IntakeConfig) -> Iterator[str]:
    """Each input format's tables name only what a touchpoint can hold."""
    from workers.core.formats import csv, ga4, segment, snowplow

    yield from segment.problems(i.segment)
    yield from snowplow.problems(i.snowplow)
    yield from ga4.problems(i.ga4)
    yield from csv.problems(i.csv)


def _trait_problems(traits: TraitsConfig) -> Iterator[str]:
    for trait, bounds in traits.numeric.items():
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            yield (f"features.traits.numeric.{trait} must be [low, high] with low < high,"
                   f" got {bounds}")


def _pattern_problems(identity: IdentityConfig) -> Iterator[str]:
    for pattern in identity.blocklist_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            yield f"identity.blocklist_patterns: bad pattern {pattern!r}: {exc}"


def _audience_problems(a: AudiencesConfig) -> Iterator[str]:
    from workers.core.audiences import KEY_RE

    seen: dict[str, str] = {}
    for sid, key in a.keys.items():
        if not sid.isdigit():
            yield f"audiences.keys: {sid!r} is not a segment id (a whole number >= 0)"
        elif not KEY_RE.fullmatch(key):
            yield (f"audiences.keys.{sid}: {key!r} is not an audience key: a lower-case letter,"
                   " then up to 63 of a-z, 0-9 and '_'")
        elif key in seen:
            yield f"audiences.keys.{sid}: {key!r} is already the key of segment {seen[key]}"
        seen[key] = sid


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(str, typing.get_args(hint)))
    return {int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _model_problems(config: Config) -> Iterator[str]:
    """The model is built once here, so a bad parameter fails at start, not at warm-up."""
    from workers.core.features import FeatureSpec
    from workers.core.segments import feature_columns, make_clusterer

    try:
        feature_columns(FeatureSpec(config.features), config.segmentation)
        make_clusterer(config.segmentation)
    except ConfigError as exc:
        yield str(exc)


_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Load and validate: the one entry point the shells use."""
    return validate(load_config(path, env))
