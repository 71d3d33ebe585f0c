"""Where the in-process pipeline's time goes, by compiled function, sampled by Linux perf.

    python benchmarks/hotspots.py [--warm N] [--lines N] [--top N]

``bench.py profile`` runs cProfile on the Python source, as cProfile does not see into
compiled functions, so its shares are those of pure Python (``Placement.stays``: 12%
there, 2% compiled). This samples the compiled build instead: ``perf record`` (CPU clock,
999 Hz, call stacks unwound from DWARF) turned on only while the pipeline reads the
``--lines`` after the first ``--warm`` of the ``bench.py pipeline`` stream (the model past
its warm-up, the profiles grown). Each sample goes to the innermost function of the
package's compiled modules on its stack: its own code and the C API work it asks for
(dict look-ups, allocation, freeing), which is where a compiled function's time goes.
A sample in orjson, or in what it calls to build the event's objects, goes to orjson.
Needs ``perf`` (``apt-get install linux-perf``) and a compiled build (``make build``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import BIG_PROFILES, HOTSPOTS_LINES, HOTSPOTS_WARM, stream  # noqa: E402

# turns perf's sampling on for the counted lines only, through its control fifo
_CHILD = """
import itertools, sys
sys.path.insert(0, sys.argv[1])
from workers import collector
collector.tune()
from workers.config import load
from workers.core.pipeline import Pipeline
warm, counted = int(sys.argv[3]), int(sys.argv[4])
with open(sys.argv[2], "rb") as fh:
    lines = [line.rstrip(b"\\n") for line in itertools.islice(fh, warm + counted)]
pipeline = Pipeline(load())
feed = pipeline.feed
for line in lines[:warm]:
    feed(line)
def control(command):
    with open(sys.argv[5], "w") as fifo:
        fifo.write(command + "\\n")
    with open(sys.argv[6]) as ack:
        ack.readline()
control("enable")
for line in lines[warm:]:
    feed(line)
control("disable")
"""

#: a function of a compiled module: Cython's C name, the module path and the class as
#: length-prefixed parts (``__pyx_f_7workers_4core_8features_12ProfileState_update``)
_CYTHON = re.compile(r"__pyx_(?:f|pw|pf|tp_dealloc|tp_new|tp_new_vectorcall)_(7workers_.*)")
_FRAME = re.compile(r"^\s*[0-9a-f]+ (\S+?)(?:\+0x[0-9a-f]+)? \((.*)\)$")


def python_name(symbol: str) -> str | None:
    """``workers.core.features.ProfileState.update`` for a compiled function's C name,
    None for any other symbol."""
    match = _CYTHON.match(symbol)
    if match is None:
        return None
    rest, parts = match.group(1), []
    while (size := re.match(r"\d+", rest)) is not None:
        digits = size.group()
        part = rest[len(digits):len(digits) + int(digits)]
        after = rest[len(digits) + int(digits):]
        if len(part) < int(digits) or (after and not after.startswith("_")):
            break  # a wrapper's index before the function's name, not a part
        parts.append(part)
        rest = after[1:]
    name = rest.lstrip("0123456789")
    if symbol.startswith("__pyx_tp_dealloc_"):
        name += " (freed)"
    elif symbol.startswith("__pyx_tp_new"):
        name += " (made)"
    return ".".join([*parts, name])


def samples(script: Iterable[str]) -> Iterator[list[tuple[str, str]]]:
    """Each sample of ``perf script``'s text: its frames as (symbol, object file), the
    innermost first."""
    frames: list[tuple[str, str]] = []
    for line in script:
        match = _FRAME.match(line)
        if match is not None:
            frames.append((match.group(1), match.group(2)))
        elif not line.strip() and frames:
            yield frames
            frames = []
    if frames:
        yield frames


def owner(frames: list[tuple[str, str]]) -> str:
    """Who a sample's time is charged to: orjson where it ran or called (the objects it
    builds), else the innermost compiled function of the package, else what ran outside
    them."""
    if any("orjson" in Path(dso).name for _, dso in frames):
        return "orjson.loads"
    for symbol, _ in frames:
        name = python_name(symbol)
        if name is not None:
            return name.removeprefix("workers.")
    return "(outside the compiled modules)"


def shares(script: Iterable[str]) -> tuple[int, list[tuple[str, float]]]:
    """The count of samples, and each owner's share of them, the largest first."""
    counts = Counter(owner(frames) for frames in samples(script))
    total = sum(counts.values())
    return total, [(name, n / total) for name, n in counts.most_common()]


def record(warm: int, lines: int) -> tuple[int, list[tuple[str, float]]]:
    """Run the pipeline under perf; the counted window's shares."""
    if shutil.which("perf") is None:
        raise SystemExit("hotspots: perf is not installed (apt-get install linux-perf)")
    path, _ = stream(BIG_PROFILES, 7)
    with tempfile.TemporaryDirectory() as tmp:
        fifo, ack, data = Path(tmp) / "control", Path(tmp) / "ack", Path(tmp) / "perf.data"
        os.mkfifo(fifo)
        os.mkfifo(ack)
        done = subprocess.run(
            ["perf", "record", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384",
             f"--control=fifo:{fifo},{ack}", "-D", "-1", "-o", str(data), "-q",
             sys.executable, "-c", _CHILD, str(ROOT), str(path), str(warm), str(lines),
             str(fifo), str(ack)], capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"hotspots: perf record failed: {done.stderr.strip()[-500:]}")
        script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True,
                                text=True, check=True)
        return shares(script.stdout.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=HOTSPOTS_WARM)
    parser.add_argument("--lines", type=int, default=HOTSPOTS_LINES)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, found = record(args.warm, args.lines)
    print(f"{total:,} samples over lines {args.warm:,}..{args.warm + args.lines:,}")
    for name, share in found[:args.top]:
        print(f"{share:6.1%}  {name}")


if __name__ == "__main__":
    main()
