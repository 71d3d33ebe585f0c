"""Every error persona-stream raises on purpose, in one tree.

::

    PersonaStreamError          one line for the operator; ``exit_code`` is the CLI's exit
    ├── UsageError       (2)    a wrong flag or a flag combination that cannot work
    ├── ConfigError      (2)    a configuration value that is missing, unknown or impossible
    ├── InputError       (1)    an input file, folder or URL that cannot be read at all
    ├── StateError       (1)    a saved state that is unreadable, foreign or made under
    │                           other settings
    ├── BrokerError      (1)    Kafka cannot be reached, or a topic cannot be read or written
    ├── Interrupted    (130)    Ctrl-C: stopped cleanly, what was done so far is kept
    └── InvalidEvent            one record that cannot be processed: never reaches the
                                operator, it becomes a dead letter with ``code`` as reason

``workers.cli.main`` catches :class:`PersonaStreamError` once and prints
``persona-stream COMMAND: error: MESSAGE``. A bad record is not an operator
mistake: :class:`InvalidEvent` is caught by the pipeline, never by the CLI.
"""

from __future__ import annotations

from typing import ClassVar


class PersonaStreamError(Exception):
    """Base class: a problem explained in one line, with the exit code the CLI returns."""

    exit_code: ClassVar[int] = 1


class UsageError(PersonaStreamError):
    """A command line that cannot work (a flag, or a combination of flags)."""

    exit_code = 2


class ConfigError(PersonaStreamError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""

    exit_code = 2


class InputError(PersonaStreamError):
    """An input (file, folder, URL) cannot be read at all, as opposed to a bad record in it."""


class StateError(PersonaStreamError):
    """A state file that cannot be used: unreadable, foreign, or made under other settings."""


class BrokerError(PersonaStreamError):
    """Kafka cannot be reached in time, or a topic cannot be read or written."""


class Interrupted(PersonaStreamError):
    """Ctrl-C: the command stopped cleanly; the message says what was kept."""

    exit_code = 130


class InvalidEvent(PersonaStreamError):
    """Why an input record cannot be processed; becomes a dead letter, never an exit."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
