"""The whole in-process pipeline of several source trees, side by side in one run.

    python benchmarks/side_by_side.py [--lines N] [--rounds R] [--identity] TREE [TREE...]

Each TREE is a checkout (``git worktree add --detach /tmp/before <commit>``); each
round runs every tree once, in a fresh process, alternating, over the same simulate
stream as ``bench.py pipeline`` (the first N lines when given), next to parse-only in
the same process; ``--identity`` runs the identity stage alone (intake, de-dup, order,
identity, records for 6 partitions), as
``bench.py identity`` does. Before/after figures in BENCHMARKS.md come from here: on these shared
machines only figures of one run compare.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import BIG_PROFILES, stream  # noqa: E402

_CHILD = """
import contextlib, gc, itertools, sys, time
sys.path.insert(0, sys.argv[1])
import orjson
try:
    from workers import collector
    collector.tune()
except ImportError:  # a tree from before: its thresholds, or the interpreter's default
    with contextlib.suppress(ImportError):
        from workers.cli import GC_THRESHOLDS
        gc.set_threshold(*GC_THRESHOLDS)
from workers.config import load
from workers.core.identity_stage import IdentityStage
from workers.core.partitioned.router import PartitionRouter
from workers.core.pipeline import Pipeline
with open(sys.argv[2], "rb") as fh:
    lines = [line.rstrip(b"\\n") for line in itertools.islice(fh, int(sys.argv[3]))]
start = time.perf_counter()
for line in lines:
    with contextlib.suppress(orjson.JSONDecodeError):
        orjson.loads(line)
parse = time.perf_counter() - start
if sys.argv[4] == "identity":
    config = load()
    router = PartitionRouter(6, config.segmentation.version_epoch_ticks)
    stage = IdentityStage(config, router.attach)
    start, cpu = time.perf_counter(), time.process_time()
    outputs = 0
    for line in lines:
        outputs += len(stage.feed(line)) + len(router.take())
    outputs += len(stage.flush()) + len(router.take())
else:
    pipeline = Pipeline(load())
    start, cpu = time.perf_counter(), time.process_time()
    outputs = sum(len(pipeline.feed(line)) for line in lines) + len(pipeline.flush())
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(f"{len(lines):,} lines: {len(lines) / seconds:,.0f} events/s (CPU {len(lines) / cpu:,.0f}),"
      f" parse-only {len(lines) / parse:,.0f}/s, {parse / seconds:.3f}x; {outputs:,} outputs")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--lines", type=int, default=10**9)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--identity", action="store_true",
                        help="the identity stage alone instead of the whole pipeline")
    args = parser.parse_args()
    path, _ = stream(BIG_PROFILES, 7)
    for _ in range(args.rounds):
        for tree in args.trees:
            done = subprocess.run([sys.executable, "-c", _CHILD, tree, str(path), str(args.lines),
                                   "identity" if args.identity else "pipeline"],
                                  capture_output=True, text=True, check=True)
            print(f"{tree}: {done.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
