"""``persona-stream run``: the whole pipeline over JSON-lines files, in one process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workers.config import Config
from workers.core.pipeline import Pipeline
from workers.io.progress import Progress, ProgressMode
from workers.io.sinks import EndOfRun, FileSink
from workers.io.sources import read_lines

_BATCH = 4096  # outputs are written per batch of input lines, not per line


def run_files(config: Config, inputs: list[str], out_dir: str | Path,
              progress: ProgressMode = "off", pipeline: Pipeline | None = None) -> dict[str, Any]:
    """Process ``inputs`` in order and write every output file into ``out_dir``."""
    pipeline = pipeline or Pipeline(config)
    sink = FileSink(out_dir)
    started = time.perf_counter()
    lines = read_lines(inputs)
    bar = Progress(progress, "run")
    feed = pipeline.feed
    pending = []
    try:
        for n, raw in enumerate(lines, 1):
            pending.extend(feed(raw))
            if n % _BATCH == 0:
                sink.write(pending)
                pending.clear()
                bar.update(n)
        pending.extend(pipeline.flush())
        sink.write(pending)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    summary = pipeline.summary()
    summary["seconds"] = round(seconds, 3)
    summary["events_per_second"] = round(summary["events_read"] / seconds, 1) if seconds else 0.0
    sink.close(EndOfRun(summary, pipeline.personas(), pipeline.profile_snapshots()))
    return summary
