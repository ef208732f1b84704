"""Evaluation: metrics, bootstrap intervals, paired differences, per-run evaluation, prediction,
and comparison reports."""
