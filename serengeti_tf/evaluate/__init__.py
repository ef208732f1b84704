"""Evaluation: metrics, bootstrap intervals, paired differences, per-run evaluation, prediction,
comparison reports and the experiment grid."""
