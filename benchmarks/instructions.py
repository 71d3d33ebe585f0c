"""Instructions per event of the in-process pipeline, several source trees side by side,
counted by valgrind's callgrind: the same count on a busy machine as on an idle one.

    python benchmarks/instructions.py [--warm N] [--lines N] [--keep DIR] TREE [TREE...]

Each TREE is a checkout (``git worktree add --detach /tmp/before <commit>``, built). Each
runs in a process of its own under callgrind (the trees at once, one per core): the
pipeline reads the first ``--warm`` lines of the ``bench.py pipeline`` stream uncounted
(the model past its warm-up, the profiles grown), then the next ``--lines`` counted, and
orjson alone decodes those lines, counted apart: the same "x of parse-only" as the timed
benches, in instructions. Instructions are not time (numpy's loops and orjson run more of
them per cycle than the interpreter does), so timings still come from ``side_by_side.py``;
this says which way a change moves, where timings drown in noise. ``--keep DIR`` keeps
callgrind's files there (``callgrind_annotate --inclusive=yes DIR/tree0.out.1``: where
the counted instructions went, by function). Needs valgrind.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import BIG_PROFILES, stream  # noqa: E402

# zeroes callgrind's counters, or dumps them to a file of their own, from inside the run
_CHILD = """
import contextlib, itertools, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
import orjson
with contextlib.suppress(ImportError):
    from workers import collector
    collector.tune()
from workers.config import load
from workers.core.pipeline import Pipeline
warm, counted = int(sys.argv[3]), int(sys.argv[4])
with open(sys.argv[2], "rb") as fh:
    lines = [line.rstrip(b"\\n") for line in itertools.islice(fh, warm + counted)]
def control(flag):
    subprocess.run(["callgrind_control", flag, str(os.getpid())], check=True,
                   capture_output=True)
pipeline = Pipeline(load())
feed = pipeline.feed
for line in lines[:warm]:
    feed(line)
window = lines[warm:]
control("--zero")
outputs = 0
for line in window:
    outputs += len(feed(line))
control("--dump=pipeline")
for line in window:
    with contextlib.suppress(orjson.JSONDecodeError):
        orjson.loads(line)
control("--dump=parse")
print(outputs)
"""


def _totals(out: Path) -> dict[str, int]:
    """The instructions of each dump callgrind wrote, by its reason."""
    found: dict[str, int] = {}
    for part in sorted(out.parent.glob(out.name + ".*")):
        reason = total = None
        for line in part.read_text().splitlines():
            if line.startswith("desc: Trigger: dump "):
                reason = line.rsplit(" ", 1)[-1]
            elif line.startswith("summary: "):
                total = int(line.split()[1])
        if reason is not None and total is not None:
            found[reason] = total
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--warm", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="keep callgrind's files in this folder")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("instructions: valgrind is not installed (apt-get install valgrind)")
    path, _ = stream(BIG_PROFILES, 7)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if args.keep is None else args.keep
        folder.mkdir(parents=True, exist_ok=True)
        runs = []
        for n, tree in enumerate(args.trees):
            out = folder / f"tree{n}.out"
            runs.append((tree, out, subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, "-c", _CHILD, tree, str(path), str(args.warm),
                 str(args.lines)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True)))
        for tree, out, process in runs:
            stdout, _ = process.communicate()
            if process.returncode:
                raise SystemExit(f"instructions: {tree} failed under valgrind")
            found = _totals(out)
            pipeline, parse = found["pipeline"], found["parse"]
            print(f"{tree}: {pipeline / args.lines:,.0f} instructions per event over lines"
                  f" {args.warm:,}..{args.warm + args.lines:,}, parse-only"
                  f" {parse / args.lines:,.0f}: {parse / pipeline:.3f}x;"
                  f" {int(stdout.split()[-1]):,} outputs", flush=True)


if __name__ == "__main__":
    main()
