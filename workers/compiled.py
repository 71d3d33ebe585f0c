"""The per-event modules ``setup.py`` compiles with Cython, and which of them run compiled.

The Python source is the product; a compiled module is the same source built as a C
extension. Untyped, that barely beats CPython 3.11's own specialising interpreter; the
``.pxd`` file beside a hot module declares C fields and typed locals for its per-event
classes, which is where the compiled build gains (BENCHMARKS.md "compiled"). Where
Cython or a C compiler is missing, or ``PERSONA_STREAM_PURE=1`` is set when installing,
pip installs pure Python, with the same outputs (``tests/test_compiled.py``).

``PERSONA_STREAM_PURE=1`` at run time imports the Python source even where the compiled
modules are installed: for a debugger, a readable traceback, or the comparison test.
This module imports only the standard library: ``setup.py`` reads ``MODULES`` before
anything else is installed.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: Every module an event passes through in ``run`` and in the worker's steps between its
#: reads and writes (``service.batch``), and what state and records are read and written
#: with. Plain code only: no asyncio, no Kafka client.
MODULES: tuple[str, ...] = (
    "workers.core.audiences",
    "workers.core.clock",
    "workers.core.dedup",
    "workers.core.downstream",
    "workers.core.features",
    "workers.core.formats.common",
    "workers.core.formats.csv",
    "workers.core.formats.ga4",
    "workers.core.formats.segment",
    "workers.core.formats.snowplow",
    "workers.core.forget",
    "workers.core.identity",
    "workers.core.identity_stage",
    "workers.core.intake",
    "workers.core.kmeans_step",
    "workers.core.partitioned.profile_task",
    "workers.core.partitioned.records",
    "workers.core.partitioned.router",
    "workers.core.partitioned.trainer",
    "workers.core.personas",
    "workers.core.pipeline",
    "workers.core.privacy",
    "workers.core.profile_work",
    "workers.core.records",
    "workers.core.reference",
    "workers.core.registry",
    "workers.core.reorder",
    "workers.core.repair",
    "workers.core.segments",
    "workers.core.stats",
    "workers.core.touchpoints",
    "workers.io.cloudevents",
    "workers.service.batch",
    "workers.state.changelog",
    "workers.state.codec",
    "workers.state.store",
    "workers.state.wire",
)

PURE_ENV = "PERSONA_STREAM_PURE"
#: set at install: the modules built profile-guided (setup.py, ``workers/pgo_workload.py``)
PGO_ENV = "PERSONA_STREAM_PGO"


def pure_asked() -> bool:
    """``PERSONA_STREAM_PURE`` is set (and not ``0``): at install, build nothing; at run
    time, import the Python source."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def compiled() -> list[str]:
    """The modules of ``MODULES`` this interpreter imports from a compiled extension."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    out = []
    for name in MODULES:
        module = sys.modules.get(name)
        origin = module.__file__ if module is not None else _origin(name)
        if origin and origin.endswith(suffixes):
            out.append(name)
    return out


def stale() -> list[str]:
    """The modules of ``MODULES`` whose compiled extension is older than their source (or
    its ``.pxd``): an edit not yet built (``make build``), which would otherwise run the
    code before it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for name in MODULES:
        base = os.path.join(root, *name.split("."))
        try:
            source = os.stat(base + ".py").st_mtime
        except FileNotFoundError:
            continue
        with contextlib.suppress(FileNotFoundError):  # its Cython declarations, if any
            source = max(source, os.stat(base + ".pxd").st_mtime)
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            try:
                if os.stat(base + suffix).st_mtime < source:
                    out.append(name)
            except FileNotFoundError:
                continue
    return out


def _origin(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    return spec.origin if spec is not None else None


class PureSource:
    """Finds ``MODULES`` as their ``.py`` source, passing over a compiled extension beside it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES or not path:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for folder in path:
            source = os.path.join(folder, leaf)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install_pure_finder() -> None:
    """Put a ``PureSource`` first on the import path when ``PERSONA_STREAM_PURE`` is set."""
    if pure_asked() and not any(
            isinstance(finder, PureSource) for finder in sys.meta_path):
        sys.meta_path.insert(0, PureSource())
