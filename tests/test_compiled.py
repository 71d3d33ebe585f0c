"""The compiled path's promise at install: without a C compiler, pip still installs.

That the compiled and the pure-Python modules give the same bytes is
``tests/core/test_same_outputs.py``; ``tests/test_cli.py`` checks ``--version``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from workers.compiled import MODULES

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_c_compiler_pip_builds_a_pure_python_wheel(tmp_path: Path) -> None:
    """``CC=/bin/false``: every module is named as left pure, and the wheel holds the
    Python source of each and no extension; a profile-guided build asked for says in one
    line why there is none, and the build goes on."""
    tree = tmp_path / "src"
    shutil.copytree(ROOT / "workers", tree / "workers",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
         "--wheel-dir", str(tmp_path / "dist"), str(tree)],
        env={**os.environ, "CC": "/bin/false", "PERSONA_STREAM_PGO": "1"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert ("persona-stream: no profile-guided build: /bin/false is not GCC; building plainly"
            in log)
    for name in MODULES:
        assert f"persona-stream: {name} was not compiled" in log, name
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.replace(".", "/") + ".py" for name in MODULES} <= names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
