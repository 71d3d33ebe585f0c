"""The pure processing core: bytes in, records out; no Kafka, no clock, no files.

touchpoints (parse and validate) -> dedup -> identity -> features -> segments
-> personas, driven by :class:`workers.core.pipeline.Pipeline`. Nothing here
imports from ``workers.io``, ``workers.service`` or ``workers.cli``
(``tests/test_layout.py`` checks it).
"""
