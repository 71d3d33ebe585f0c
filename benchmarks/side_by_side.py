"""The whole in-process pipeline of several source trees, side by side in one run.

    python benchmarks/side_by_side.py [--lines N] [--rounds R] [--identity] TREE [TREE...]

Each TREE is a checkout (``git worktree add --detach /tmp/before <commit>``); each
round runs every tree once, in a fresh process, alternating, over the same simulate
stream as ``bench.py pipeline`` (the first N lines when given), next to parse-only in
the same process; ``--identity`` runs the identity stage alone (intake, de-dup, order,
identity, records for 6 partitions), as
``bench.py identity`` does. Before/after figures in BENCHMARKS.md come from here: on these shared
machines only figures of one run compare. After the rounds, each tree's best and median, and each
later tree against the first, round by round: the median ratio and how many rounds it was faster
(many short rounds, ``--lines 200000 --rounds 12``, tell a steady gain from a busy minute).
"""

from __future__ import annotations

import argparse
import re
import statistics
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
    rates: dict[str, list[float]] = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            done = subprocess.run([sys.executable, "-c", _CHILD, tree, str(path), str(args.lines),
                                   "identity" if args.identity else "pipeline"],
                                  capture_output=True, text=True, check=True)
            print(f"{tree}: {done.stdout.strip()}", flush=True)
            rate = re.search(r"([\d,]+) events/s", done.stdout)
            assert rate is not None, done.stdout
            rates[tree].append(float(rate[1].replace(",", "")))
    first = args.trees[0]
    for tree, seen in rates.items():
        line = f"{tree}: best {max(seen):,.0f}, median {statistics.median(seen):,.0f} events/s"
        if tree != first:
            ratios = [b / a for a, b in zip(rates[first], seen, strict=True)]
            line += (f"; against {first}, round by round: median {statistics.median(ratios):.3f}x,"
                     f" faster in {sum(r > 1 for r in ratios)} of {len(ratios)}")
        print(line)


if __name__ == "__main__":
    main()
