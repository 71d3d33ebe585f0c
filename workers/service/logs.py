"""Structured logs: one JSON object per line, so log shippers index fields, not text.

Fields: ``ts`` (RFC 3339 UTC), ``level``, ``logger``, ``message``, every
``extra={...}`` field passed to the logging call, and ``exc_info`` when there is
one. Policy: no identifier (email, phone, user id...) at any level; counts, offsets
and partition numbers only. ``metrics.log_level: DEBUG`` is this program's DEBUG: the
client libraries stay at INFO, since their DEBUG lines carry the records' bytes
(aiokafka logs every value it sends).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

worker_log = logging.getLogger("persona_stream.worker")  # every role of the worker logs here

# attributes every LogRecord has: anything else on a record came from ``extra``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A ``logging.Formatter`` writing one JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        # default=str: a stray non-JSON extra must not lose the whole line
        return orjson.dumps(entry, default=str).decode()


class ClientNoise(logging.Filter):
    """At most one line a minute per message of the client libraries (aiokafka, kafka,
    faust); the next one that passes says how many were left out.

    Through a broker outage they repeat the same connection errors thousands of times;
    what happened is said once by the worker itself (:mod:`workers.service.health`).
    """

    libraries = ("aiokafka", "kafka", "faust", "mode")

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._left_out: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.libraries):
            return True
        key = (record.name, str(record.msg))
        last = self._last.get(key)
        if last is not None and record.created - last < self.interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return False
        self._last[key] = record.created
        left_out = self._left_out.pop(key, 0)
        if left_out:
            record.left_out = left_out  # a field of the JSON line
        return True


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` mapping: JSON lines on stderr at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"client_noise": {"()": ClientNoise}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "filters": ["client_noise"], "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {library: {"level": _at_least_info(level)}
                    for library in ClientNoise.libraries},
    }


def _at_least_info(level: str) -> str:
    return "INFO" if logging.getLevelName(level.upper()) < logging.INFO else level.upper()
