"""An output folder as ``run`` and ``replay --out`` leave it.

Besides one file per output kind (``OUTPUT_KINDS`` in :mod:`workers.core.records`),
the folder holds the end state: these three files.
"""

from __future__ import annotations

PROFILES = "profiles.jsonl"  # one profile snapshot per line, in profile-id order
PERSONAS = "personas.json"  # the persona cards
SUMMARY = "summary.json"  # the pipeline's counters and the timing of the pass
