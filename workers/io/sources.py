"""Where raw records come from: JSON-lines files (plain, .gz or stdin)."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from typing import BinaryIO

from workers.errors import InputError


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by read_lines
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


def read_lines(paths: list[str]) -> Iterator[bytes]:
    """Every non-blank line of every file, in order, without its line ending."""
    for path in paths:
        handle = _open(path)
        try:
            for line in handle:
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
