"""How far a long command is, on stderr: the one display of run, replay and simulate.

On a terminal a tqdm bar; in a log (CI, a container, ``2> file``) a plain line
every few seconds, because a bar's carriage returns make an unreadable log;
with ``--quiet`` nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Literal

from tqdm import tqdm

ProgressMode = Literal["bar", "log", "off"]
_LOG_SECONDS = 5.0  # interval of the plain lines


def progress_mode(quiet: bool) -> ProgressMode:
    """``off`` when asked to be quiet, else a bar on a terminal and plain lines in a log."""
    if quiet:
        return "off"
    return "bar" if sys.stderr.isatty() else "log"


class Progress:
    """Shows ``done`` of ``total`` (an estimate, if known) and a note on where the work is.

    ``listener`` hears every update whatever the mode (a metrics gauge, say).
    """

    def __init__(self, mode: ProgressMode, label: str, unit: str = "events",
                 total: int | None = None,
                 listener: Callable[[int, int | None], None] | None = None) -> None:
        self.mode = mode
        self.label = label
        self.unit = unit
        self.listener = listener
        self.done = 0  # as of the last update
        self._started = self._logged = time.monotonic()
        self._bar = (tqdm(desc=label, total=total, unit=f" {unit}", unit_scale=True,
                          mininterval=0.5)
                     if mode == "bar" else None)

    def update(self, done: int, total: int | None = None, note: str | None = None) -> None:
        if self.listener is not None:
            self.listener(done, total)
        if self._bar is not None:
            self._show(done, total, note)
        elif self.mode == "log" and time.monotonic() - self._logged >= _LOG_SECONDS:
            self._logged = time.monotonic()
            rate = done / max(self._logged - self._started, 1e-9)
            share = f" of ~{total:,} ({done / total:.0%})" if total else ""
            print(f"{self.label}: {done:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s"
                  + (f", {note}" if note else ""), file=sys.stderr, flush=True)
        self.done = done

    def say(self, message: str) -> None:
        """One line about the work (a sort before it starts): above the bar, or in the log."""
        line = f"{self.label}: {message}"
        if self._bar is not None:
            tqdm.write(line, file=sys.stderr)
        elif self.mode == "log":
            print(line, file=sys.stderr, flush=True)

    def _show(self, done: int, total: int | None, note: str | None) -> None:
        bar = self._bar
        assert bar is not None
        if total is not None and total != bar.total:
            bar.total = total
        if note is not None:
            bar.set_postfix_str(note, refresh=False)
        bar.update(done - self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
