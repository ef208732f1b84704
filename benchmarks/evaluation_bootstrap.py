"""Benchmark: speed and coverage of `bootstrap.bootstrap_ci` (smoothed stratified capture bootstrap).

Speed. Data: the paper's test split (19,377 images, 52 classes, Table 4's test counts from
`species.PAPER_TEST_COUNTS`), frames grouped 3 per capture, predictions right 85% of the time. The
plain reference loop draws the same kind of resample (captures within each species, no smoothing)
by indexing the arrays and calling sklearn's accuracy_score and f1_score(average="macro",
labels=range(52), zero_division=0); `bootstrap_ci` scores one weighted bincount confusion matrix per
resample. Also checks that both give the same macro F1 on an identical resample.

Coverage. For each confusion model below, `--draws` simulated test sets with the paper's test counts
(one image per capture: the paper gives no capture structure); each gets a 95% interval from
- `old`: the previous scheme (captures over the whole split, percentile interval),
- `stratified`: captures within each species, no smoothing, percentile interval,
- `new`: `bootstrap_ci` (within each species, smoothing 2 pseudo-captures, centred interval),
and we record how often it covers the population macro F1 (the macro F1 of the expected confusion
matrix: infinitely many images per species), how often it contains the point estimate, and its
mean width. Confusion models (per true species: right with probability r, else a wrong species):
- `rare_precise`: r = 0.8, wrong species in proportion to test frequency (mistakes go to common
  species, so rare species keep a high precision; the issue's case),
- `uniform_errors`: r = 0.8, wrong species uniform (common species' mistakes swamp rare ones),
- `recall_falls_with_rarity`: r from 0.97 (most frequent) to 0.40 (rarest), wrong species half
  uniform, half by frequency.

Usage: python benchmarks/evaluation_bootstrap.py [--samples 1000] [--plain-samples 100]
       [--draws 200] [--coverage-samples 200]
Writes benchmarks/results/evaluation_bootstrap.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from _common import write_results
from sklearn.metrics import accuracy_score, f1_score

from serengeti_tf.evaluate import metrics
from serengeti_tf.evaluate.bootstrap import DEFAULT_SMOOTHING, bootstrap_ci
from serengeti_tf.species import PAPER_TEST_COUNTS

COUNTS = np.asarray(PAPER_TEST_COUNTS)
C = len(COUNTS)


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(C), COUNTS)
    y_pred = np.where(rng.random(len(y_true)) < 0.85, y_true, rng.integers(0, C, len(y_true)))
    captures = np.arange(len(y_true)) // 3
    return y_true, y_pred, captures


def plain_bootstrap(y_true, y_pred, captures, samples: int, seed: int) -> float:
    """Stratified capture resampling by indexing + sklearn; returns seconds."""
    rng = np.random.default_rng(seed)
    units = np.unique(captures)
    members = [np.flatnonzero(captures == u) for u in units]  # index lists per capture (built once)
    unit_class = np.array([y_true[m[0]] for m in members])
    strata = [np.flatnonzero(unit_class == c) for c in range(C)]
    start = time.perf_counter()
    for _ in range(samples):
        drawn = np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata if len(s)])
        index = np.concatenate([members[u] for u in drawn])
        accuracy_score(y_true[index], y_pred[index])
        f1_score(y_true[index], y_pred[index], labels=range(C), average="macro", zero_division=0)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# Coverage
# ----------------------------------------------------------------------------------------------

def confusion_model(kind: str) -> np.ndarray:
    share = COUNTS / COUNTS.sum()
    if kind == "rare_precise":
        recall, wrong = np.full(C, 0.8), np.tile(share, (C, 1))
    elif kind == "uniform_errors":
        recall, wrong = np.full(C, 0.8), np.ones((C, C))
    elif kind == "recall_falls_with_rarity":
        recall, wrong = np.linspace(0.97, 0.40, C), np.tile(share, (C, 1)) + 1.0 / C
    else:
        raise ValueError(kind)
    np.fill_diagonal(wrong, 0)
    rows = wrong / wrong.sum(axis=1, keepdims=True) * (1 - recall)[:, None]
    np.fill_diagonal(rows, recall)
    return rows


def old_whole_split_ci(y_true, y_pred, samples: int, seed: int, level: float = 0.95) -> list[float]:
    """The previous `evaluation.bootstrap_ci`: units over the whole split, percentile interval."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    f1s = np.empty(samples)
    for s in range(samples):
        draws = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        f1s[s] = metrics.macro_f1(metrics.confusion_counts(y_true, y_pred, C, weights=draws))
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(f1s, tail)), float(np.percentile(f1s, 100 - tail))]


def coverage(kind: str, draws: int, samples: int) -> dict:
    rows = confusion_model(kind)
    population = metrics.macro_f1(COUNTS[:, None] * rows)
    y_true = np.repeat(np.arange(C), COUNTS)
    cumulative = np.cumsum(rows, axis=1)[y_true]
    rng = np.random.default_rng(12345)
    schemes = {
        "old": lambda yp, d: old_whole_split_ci(y_true, yp, samples, d),
        "stratified": lambda yp, d: bootstrap_ci(y_true, yp, C, samples, d, smoothing=0.0)["macro_f1"],
        "new": lambda yp, d: bootstrap_ci(y_true, yp, C, samples, d)["macro_f1"],
    }
    tally = {name: {"covered": 0, "contains_point": 0, "width": 0.0} for name in schemes}
    points = []
    for draw in range(draws):
        y_pred = np.minimum((rng.random(len(y_true))[:, None] > cumulative).sum(axis=1), C - 1)
        point = metrics.macro_f1(metrics.confusion_counts(y_true, y_pred, C))
        points.append(point)
        for name, scheme in schemes.items():
            lo, hi = scheme(y_pred, draw)
            tally[name]["covered"] += lo <= population <= hi
            tally[name]["contains_point"] += lo <= point <= hi
            tally[name]["width"] += hi - lo
    out = {"population_macro_f1": round(float(population), 4),
           "mean_point_estimate": round(float(np.mean(points)), 4),
           "sd_point_estimate": round(float(np.std(points, ddof=1)), 4)}
    for name, t in tally.items():
        out[name] = {"coverage": round(t["covered"] / draws, 3),
                     "contains_point": round(t["contains_point"] / draws, 3),
                     "mean_width": round(t["width"] / draws, 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--plain-samples", type=int, default=100)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--coverage-samples", type=int, default=200)
    args = parser.parse_args()
    y_true, y_pred, captures = make_data()

    start = time.perf_counter()
    result = bootstrap_ci(y_true, y_pred, C, args.samples, seed=0, groups=captures)
    ours = time.perf_counter() - start
    plain = plain_bootstrap(y_true, y_pred, captures, args.plain_samples, seed=0)

    # Same resample both ways: identical macro F1.
    rng = np.random.default_rng(1)
    draws = rng.integers(0, captures.max() + 1, captures.max() + 1)
    weights = np.bincount(draws, minlength=captures.max() + 1).astype(float)[captures]
    index = np.repeat(np.arange(len(y_true)), weights.astype(int))
    f1_ours = metrics.macro_f1(metrics.confusion_counts(y_true, y_pred, C, weights=weights))
    f1_plain = f1_score(y_true[index], y_pred[index], labels=range(C), average="macro", zero_division=0)

    per_ours = ours / args.samples
    per_plain = plain / args.plain_samples
    started = time.perf_counter()
    cover = {kind: coverage(kind, args.draws, args.coverage_samples)
             for kind in ("rare_precise", "uniform_errors", "recall_falls_with_rarity")}
    out = {
        "images": int(len(y_true)), "classes": C, "captures": int(captures.max() + 1),
        "samples": args.samples, "plain_samples_timed": args.plain_samples,
        "evaluate_seconds": round(ours, 3), "evaluate_ms_per_resample": round(per_ours * 1000, 3),
        "plain_ms_per_resample": round(per_plain * 1000, 3),
        "plain_seconds_for_samples_extrapolated": round(per_plain * args.samples, 1),
        "speedup": round(per_plain / per_ours, 1),
        "same_macro_f1": bool(abs(f1_ours - f1_plain) < 1e-12),
        "ci": {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]},
        "coverage": {"draws": args.draws, "resamples_per_interval": args.coverage_samples, "level": 0.95,
                     "smoothing": DEFAULT_SMOOTHING, "seconds": round(time.perf_counter() - started, 1),
                     "models": cover},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    rows = "\n".join(
        f"| {kind} | {c['population_macro_f1']} | {c['mean_point_estimate']} ± {c['sd_point_estimate']} | "
        + " | ".join(f"{c[s]['coverage']:.3f} / {c[s]['contains_point']:.3f} / {c[s]['mean_width']:.4f}"
                     for s in ("old", "stratified", "new")) + " |"
        for kind, c in cover.items())
    md = (f"# Bootstrap intervals: speed and coverage\n\n"
          f"## Speed\n\n"
          f"{out['images']} images, {out['classes']} classes, {out['captures']} captures (resampled within "
          f"each species), {args.samples} resamples.\n\n"
          f"| method | ms per resample | {args.samples} resamples |\n| --- | --- | --- |\n"
          f"| plain loop (index + sklearn f1_score), {args.plain_samples} timed | {out['plain_ms_per_resample']} | "
          f"{out['plain_seconds_for_samples_extrapolated']} s (extrapolated) |\n"
          f"| `bootstrap.bootstrap_ci` (weighted confusion matrix, smoothed) | {out['evaluate_ms_per_resample']} | "
          f"{out['evaluate_seconds']} s |\n\n"
          f"Speed-up: {out['speedup']}x. Same macro F1 on an identical resample: {out['same_macro_f1']}.\n\n"
          f"## Coverage of the 95% interval for macro F1 on the paper's test counts\n\n"
          f"{args.draws} simulated test sets per confusion model, {args.coverage_samples} resamples per "
          f"interval, one image per capture. Cells: coverage of the population macro F1 / share of "
          f"intervals containing the point estimate / mean width. Target: coverage >= 0.90 and the "
          f"point always inside.\n\n"
          f"| confusion model | population macro F1 | point estimate (mean ± sd) | old: whole split, percentile | "
          f"stratified, percentile | new: stratified + smoothing {DEFAULT_SMOOTHING:g}, centred |\n"
          f"| --- | --- | --- | --- | --- | --- |\n{rows}\n\n"
          f"With {args.draws} draws a coverage estimate has a standard error of about "
          f"{np.sqrt(0.9 * 0.1 / args.draws):.3f}.\n")
    write_results("evaluation_bootstrap", out, md)


if __name__ == "__main__":
    main()
