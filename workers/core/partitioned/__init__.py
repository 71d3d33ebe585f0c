"""Profiles spread over partitions: one identity stage, profile tasks, one trainer.

:mod:`~workers.core.partitioned.records` lists what the stages send each other;
:mod:`~workers.core.partitioned.local` runs them all in one process.
"""
