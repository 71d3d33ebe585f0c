"""Build hook: the per-event modules (``workers/compiled.py``) compiled with Cython.

Everything else about the package is in ``pyproject.toml``. Without Cython or a
working C compiler, or with ``PERSONA_STREAM_PURE=1``, the package installs as pure
Python, the same code and the same outputs, only slower. ``PERSONA_STREAM_PGO=1`` asks
for a profile-guided build (GCC): the modules built instrumented, trained on
``workers/pgo_workload.py`` (which needs the dependencies installed: ``make pgo``, or
``pip install --no-build-isolation``), and built again laid out by what ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)  # workers.compiled imports the standard library only
from workers.compiled import MODULES, PGO_ENV, PURE_ENV, pure_asked  # noqa: E402

#: Python semantics unchanged: annotations are not C types, so an int stays an int (the
#: C types a module's ``.pxd`` declares are where the compiled code is typed)
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}
#: C arithmetic on doubles rounds as Python's floats do only if ``a * b + c`` is never
#: fused into one instruction (GCC fuses by default where the CPU has FMA: arm64)
FLAGS = [] if sys.platform == "win32" else ["-ffp-contract=off"]


def _warn(message: str) -> None:
    print(f"persona-stream: {message}; installing pure Python", file=sys.stderr)


def _note(message: str) -> None:
    print(f"persona-stream: {message}", file=sys.stderr)


def _not_gcc(compiler: Any) -> str | None:
    """Why this compiler cannot build profile-guided here, or None: GCC 10 or later
    (its profile files, and ``-fprofile-partial-training``)."""
    command = getattr(compiler, "compiler_so", None)
    if not command:
        return f"the {compiler.compiler_type} compiler is not GCC"
    try:
        about, version = (subprocess.run([command[0], flag], capture_output=True, text=True,
                                         timeout=60, check=False)
                          for flag in ("--version", "-dumpfullversion"))
    except OSError as exc:
        return f"{command[0]} does not run ({exc.strerror})"
    major = version.stdout.strip().split(".")[0]
    if (about.returncode or version.returncode or not major.isdigit()
            or "Free Software Foundation" not in about.stdout):
        return f"{command[0]} is not GCC"
    if int(major) < 10:
        return f"{command[0]} is GCC {version.stdout.strip()}, 10 or later is needed"
    return None


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

    def build_extensions(self) -> None:
        """Plainly, or profile-guided when ``PERSONA_STREAM_PGO=1`` asks and GCC is there:
        every module built instrumented, the workload run on them, every module built
        again with its counts. Anything in the way leaves a plain build, and says why."""
        if os.environ.get(PGO_ENV, "") in ("", "0"):
            super().build_extensions()
            return
        why = _not_gcc(self.compiler)
        if why is not None:
            _note(f"no profile-guided build: {why}; building plainly")
            super().build_extensions()
            return
        counts = os.path.abspath(os.path.join(self.build_temp, "pgo"))
        shutil.rmtree(counts, ignore_errors=True)
        self.force = True  # every module, and each pass over the last one's files
        self._build_with([f"-fprofile-generate={counts}"], [f"-fprofile-generate={counts}"])
        why = self._train()
        if why is not None:
            _note(f"no profile-guided build: {why}; building plainly")
            self._build_with([], [])
            return
        # code the workload never ran is built as plainly as without counts; calls into
        # Python's C API jump through the GOT, not a PLT stub (6% fewer instruction-cache
        # misses again, BENCHMARKS.md "profile-guided")
        self._build_with([f"-fprofile-use={counts}", "-fprofile-partial-training",
                          "-Wno-missing-profile", "-fno-plt"], [])

    def _build_with(self, compile_args: list[str], link_args: list[str]) -> None:
        for ext in self.extensions:
            ext.extra_compile_args = FLAGS + compile_args
            ext.extra_link_args = link_args
        super().build_extensions()

    def _train(self) -> str | None:
        """Runs the workload on the modules just built (beside a copy of the package's
        source); why it could not, or None."""
        with tempfile.TemporaryDirectory() as tree:
            shutil.copytree(os.path.join(ROOT, "workers"), os.path.join(tree, "workers"),
                            ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
            for ext in self.extensions:
                built = self.get_ext_fullpath(ext.name)
                if os.path.exists(built):
                    shutil.copy2(built, os.path.join(tree, self.get_ext_filename(ext.name)))
            env = {**os.environ, "PYTHONPATH": tree}
            env.pop(PURE_ENV, None)
            try:
                done = subprocess.run([sys.executable, "-m", "workers.pgo_workload"],
                                      cwd=tree, env=env, capture_output=True, text=True,
                                      timeout=1800, check=False)
            except subprocess.TimeoutExpired:
                return "the training run took over 30 minutes"
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"the training run failed ({last})"
        print(done.stdout.strip(), file=sys.stderr)
        return None

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _warn(f"{ext.name} was not compiled ({exc})")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
