"""Benchmark: bootstrap CIs of `evaluation.bootstrap_ci` vs a plain scikit-learn resampling loop.

Data: the paper's test split size and class count (19,377 images, 52 classes, Table 4's test
counts), frames grouped 3 per capture, predictions right 85% of the time. Both methods draw the
same kind of resample (captures with replacement); the plain loop indexes the arrays and calls
sklearn's accuracy_score and f1_score(average="macro", labels=range(52), zero_division=0) per
resample, `evaluate` uses one weighted bincount confusion matrix per resample.
Target: `evaluate` with the default 1000 resamples finishes in a few seconds on a laptop core.
Also checks that both give the same macro F1 for an identical resample.

Usage: python benchmarks/evaluation_bootstrap.py [--samples 1000] [--plain-samples 100]
Writes benchmarks/results/evaluation_bootstrap.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from serengeti_tf.evaluation import _macro_f1_and_accuracy, bootstrap_ci, confusion_counts
from serengeti_tf.io_utils import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_COUNTS = Path(__file__).resolve().parents[2] / "shared" / "paper" / "s9_class_counts.csv"


def test_counts() -> np.ndarray:
    if PAPER_COUNTS.is_file():
        return pd.read_csv(PAPER_COUNTS)["test"].to_numpy()
    # Without the paper files: a long-tailed 52-class split of the same total.
    weights = 1.0 / np.arange(1, 53) ** 1.3
    return np.maximum(1, np.round(weights / weights.sum() * 19377)).astype(int)


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = test_counts()
    y_true = np.repeat(np.arange(len(counts)), counts)
    y_pred = np.where(rng.random(len(y_true)) < 0.85, y_true, rng.integers(0, len(counts), len(y_true)))
    captures = np.arange(len(y_true)) // 3
    return y_true, y_pred, captures


def plain_bootstrap(y_true, y_pred, captures, samples: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    units = np.unique(captures)
    members = [np.flatnonzero(captures == u) for u in units]  # index lists per capture (built once)
    start = time.perf_counter()
    for _ in range(samples):
        index = np.concatenate([members[u] for u in rng.integers(0, len(units), len(units))])
        accuracy_score(y_true[index], y_pred[index])
        f1_score(y_true[index], y_pred[index], labels=range(52), average="macro", zero_division=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--plain-samples", type=int, default=100)
    args = parser.parse_args()
    y_true, y_pred, captures = make_data()
    num_classes = int(y_true.max()) + 1

    start = time.perf_counter()
    result = bootstrap_ci(y_true, y_pred, num_classes, args.samples, seed=0, groups=captures)
    ours = time.perf_counter() - start
    plain = plain_bootstrap(y_true, y_pred, captures, args.plain_samples, seed=0)

    # Same resample both ways: identical macro F1.
    rng = np.random.default_rng(1)
    draws = rng.integers(0, captures.max() + 1, captures.max() + 1)
    weights = np.bincount(draws, minlength=captures.max() + 1).astype(float)[captures]
    index = np.repeat(np.arange(len(y_true)), weights.astype(int))
    f1_ours, _ = _macro_f1_and_accuracy(confusion_counts(y_true, y_pred, num_classes, weights=weights))
    f1_plain = f1_score(y_true[index], y_pred[index], labels=range(num_classes), average="macro", zero_division=0)

    per_ours = ours / args.samples
    per_plain = plain / args.plain_samples
    out = {
        "images": int(len(y_true)), "classes": num_classes, "captures": int(captures.max() + 1),
        "samples": args.samples, "plain_samples_timed": args.plain_samples,
        "evaluate_seconds": round(ours, 3), "evaluate_ms_per_resample": round(per_ours * 1000, 3),
        "plain_ms_per_resample": round(per_plain * 1000, 3),
        "plain_seconds_for_samples_extrapolated": round(per_plain * args.samples, 1),
        "speedup": round(per_plain / per_ours, 1),
        "same_macro_f1": bool(abs(f1_ours - f1_plain) < 1e-12),
        "ci": {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    write_json(RESULTS / "evaluation_bootstrap.json", out)
    md = (f"# Bootstrap CIs: `evaluate` vs a plain scikit-learn loop\n\n"
          f"{out['images']} images, {out['classes']} classes, {out['captures']} captures (resampled), "
          f"{args.samples} resamples.\n\n"
          f"| method | ms per resample | {args.samples} resamples |\n| --- | --- | --- |\n"
          f"| plain loop (index + sklearn f1_score), {args.plain_samples} timed | {out['plain_ms_per_resample']} | "
          f"{out['plain_seconds_for_samples_extrapolated']} s (extrapolated) |\n"
          f"| `evaluation.bootstrap_ci` (weighted confusion matrix) | {out['evaluate_ms_per_resample']} | "
          f"{out['evaluate_seconds']} s |\n\n"
          f"Speed-up: {out['speedup']}x. Same macro F1 on an identical resample: {out['same_macro_f1']}.\n")
    write_text(RESULTS / "evaluation_bootstrap.md", md)
    print(md)


if __name__ == "__main__":
    main()
