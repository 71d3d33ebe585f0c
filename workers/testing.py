"""Helpers shared by the tests and the benchmarks (like Bytewax's ``testing.py``).

Nothing in the product imports this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (tests run from one)


def output_under_other_hashseed(script: str, timeout: float) -> str:
    """Run ``script`` in a child Python whose PYTHONHASHSEED differs from this process's,
    and return what it printed: determinism must not hang on set or dict order."""
    seed = "4242" if os.environ.get("PYTHONHASHSEED") != "4242" else "1"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
