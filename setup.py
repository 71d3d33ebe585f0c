"""Build hook: the per-event modules (``workers/compiled.py``) compiled with Cython.

Everything else about the package is in ``pyproject.toml``. Without Cython or a
working C compiler, or with ``PERSONA_STREAM_PURE=1``, the package installs as pure
Python, the same code and the same outputs, only slower.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workers.compiled import MODULES, pure_asked  # the standard library only

#: Python semantics unchanged: annotations are not C types, so an int stays an int (the
#: C types a module's ``.pxd`` declares are where the compiled code is typed)
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}
#: C arithmetic on doubles rounds as Python's floats do only if ``a * b + c`` is never
#: fused into one instruction (GCC fuses by default where the CPU has FMA: arm64)
FLAGS = [] if sys.platform == "win32" else ["-ffp-contract=off"]


def _warn(message: str) -> None:
    print(f"persona-stream: {message}; installing pure Python", file=sys.stderr)


def extensions() -> list[Any]:
    """The Cython extensions, or none when pure Python is asked for or Cython is missing."""
    if pure_asked():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not installed")
        return []
    modules = [Extension(name, [name.replace(".", "/") + ".py"], extra_compile_args=FLAGS)
               for name in MODULES]
    return list(cythonize(modules, build_dir="build/cython", compiler_directives=DIRECTIVES,
                          quiet=True))


class OptionalBuildExt(build_ext):
    """Compiles on every core; a module that does not compile stays pure Python."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: distutils' errors vary by platform
            _warn(f"the C extensions were not built ({exc})")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _warn(f"{ext.name} was not compiled ({exc})")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
