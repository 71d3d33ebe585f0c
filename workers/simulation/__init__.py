"""Synthetic touchpoint streams with ground truth, and how well the pipeline recovers it."""
