"""Benchmark: could the paired comparison catch a wrong tool? Simulated A/A tests plus power.

An A/A comparison pits two models drawn from the SAME confusion model against each other, so no
true difference exists: any "better"/"worse" is a false alarm. On the paper's test counts
(`species.PAPER_TEST_COUNTS`, 52 species, nine with one image; one image per capture, since the
paper gives no capture structure) and the paper's groups (head >= 5000, tail < 500 train images),
each replicate draws 3 seeds; per seed a reference and a new network, each predicting every test
image independently from its confusion model. We record:

- seed-aware (`seed_aware.compare_pairs` over the 3 seeds, what the report's verdict rests on): how
  often the 95% interval of Δ macro F1 / Δ tail macro F1 / Δ accuracy excludes 0, and the mean
  number of species flagged (Benjamini-Hochberg) per comparison;
- one seed (seed 0's pair alone: the randomization interval of one network pair): the same rates;
- old (the previous tool, for reference: smoothed stratified bootstrap, 2 pseudo-captures,
  centred percentile interval of Δ macro F1, per-species plain percentile intervals, species
  flagged in at least one of the 3 seeds).

Aims (issue 18): Δ macro F1 interval excludes 0 in <= 5% of A/A comparisons (within simulation
error: 2 standard errors of a 5% rate over the replicates) and <= 0.1 species flagged per comparison.

Confusion models (per true species c: right with probability r_c, else a wrong species):
- `rare_precise`: r = 0.8, wrong species in proportion to test frequency;
- `uniform_errors`: r = 0.8, wrong species uniform;
- `recall_falls_with_rarity`: r from 0.97 (most frequent) to 0.40 (rarest), wrong half uniform, half by frequency;
- `weak_rare_strong_rest`: species with <= 5 test captures r ~ U(0.3, 0.5) (drawn once), the rest 0.95,
  wrong by frequency (the issue's case where the old paired interval excluded 0 in up to ~23%);
- `seed_noise`: `recall_falls_with_rarity`, but every trained network (each seed, each model) moves
  each species' recall by N(0, 0.5) on the logit scale: seed-to-seed training noise;
- power, `tail_gain` (NOT an A/A): `seed_noise`, and the new model's tail species (train < 500) get
  +1.0 on the logit of recall (e.g. 0.6 -> 0.8): a true gain the tool should often find; run with
  3 and 6 seeds (`--power-seeds`).
None of these informed a choice in `seed_aware.py`: its rules (t over seeds, the variance floor, the
minimum-capture rule 2^(1-n) <= 0.05, the number of draws) follow from the argument in its docstring
and were fixed before this benchmark ran.

Usage: python benchmarks/aa_comparisons.py [--replicates 200] [--seeds 3] [--old-samples 200]
       [--old-replicates 100] [--jobs 2] [--power-seeds 3 6]
Writes benchmarks/results/aa_comparisons.json and .md.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from _common import use_checkout, write_results

use_checkout()

from serengeti_tf.evaluate import bootstrap as bs  # noqa: E402
from serengeti_tf.evaluate import seed_aware as sa  # noqa: E402
from serengeti_tf.evaluate.evaluation import class_groups  # noqa: E402
from serengeti_tf.metrics import scores_from_confusion  # noqa: E402
from serengeti_tf.species import PAPER_SPECIES, PAPER_TEST_COUNTS, PAPER_TRAIN_COUNTS  # noqa: E402

COUNTS = np.asarray(PAPER_TEST_COUNTS)
C = len(COUNTS)
Y_TRUE = np.repeat(np.arange(C), COUNTS)
GROUPS = class_groups(PAPER_SPECIES, dict(zip(PAPER_SPECIES, PAPER_TRAIN_COUNTS)), 5000, 500)
TAIL = np.asarray(GROUPS["tail"])
K_MACRO, K_TAIL, K_ACC = (sa.SUMMARY_METRICS.index(m) for m in ("macro_f1", "tail_macro_f1", "accuracy"))
LOGIT_SD = 0.5  # seed-to-seed noise on the logit of each species' recall
TAIL_GAIN = 1.0  # power scenario: logit gain of the new model's tail species
SCENARIOS = ("rare_precise", "uniform_errors", "recall_falls_with_rarity", "weak_rare_strong_rest",
             "seed_noise", "tail_gain")


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def base_model(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(recall [C], wrong-species weights [C, C] with a zero diagonal, rows summing to 1)."""
    share = COUNTS / COUNTS.sum()
    if kind in ("rare_precise", "uniform_errors"):
        recall = np.full(C, 0.8)
        wrong = np.tile(share, (C, 1)) if kind == "rare_precise" else np.ones((C, C))
    elif kind in ("recall_falls_with_rarity", "seed_noise", "tail_gain"):
        recall, wrong = np.linspace(0.97, 0.40, C), np.tile(share, (C, 1)) + 1.0 / C
    elif kind == "weak_rare_strong_rest":
        rare = COUNTS <= 5
        recall = np.where(rare, np.random.default_rng(99).uniform(0.3, 0.5, C), 0.95)
        wrong = np.tile(share, (C, 1))
    else:
        raise ValueError(kind)
    np.fill_diagonal(wrong, 0)
    return recall, wrong / wrong.sum(axis=1, keepdims=True)


def network_recalls(kind: str, recall: np.ndarray, rng: np.random.Generator, new: bool) -> np.ndarray:
    """One trained network's per-species recall (seed noise where the scenario has it)."""
    if kind not in ("seed_noise", "tail_gain"):
        return recall
    logit = _logit(recall) + rng.normal(0, LOGIT_SD, C)
    if kind == "tail_gain" and new:
        logit[TAIL] += TAIL_GAIN
    return _expit(logit)


def predict(rng: np.random.Generator, recall: np.ndarray, cumulative_wrong: np.ndarray) -> np.ndarray:
    right = rng.random(len(Y_TRUE)) < recall[Y_TRUE]
    wrong = np.minimum((rng.random(len(Y_TRUE))[:, None] > cumulative_wrong[Y_TRUE]).sum(axis=1), C - 1)
    return np.where(right, Y_TRUE, wrong)


def old_tool(pairs: list[tuple[np.ndarray, np.ndarray]], samples: int, seed: int) -> tuple[bool, int, int]:
    """The previous paired scheme: (seed 0's Δ macro F1 interval excludes 0, species flagged in
    seed 0, species flagged in at least one seed)."""
    strata = bs.make_strata(Y_TRUE, C)
    rng = np.random.default_rng(seed)
    flagged_any = np.zeros(C, dtype=bool)
    first = (False, 0)
    for s, (ref, new) in enumerate(pairs):
        cells_ref, cells_new = bs.prepare_predictions(strata, ref), bs.prepare_predictions(strata, new)
        delta_f1 = np.empty((samples, C))
        for b in range(samples):
            resample = bs.draw_resample(strata, rng, 2.0)
            delta_f1[b] = (scores_from_confusion(bs.resampled_confusion(strata, resample, cells_new))["f1"]
                           - scores_from_confusion(bs.resampled_confusion(strata, resample, cells_ref))["f1"])
        point_f1 = [scores_from_confusion(np.bincount(Y_TRUE * C + p, minlength=C * C).reshape(C, C))["f1"]
                    for p in (ref, new)]
        macro = delta_f1.mean(axis=1)
        lo, hi = np.percentile(macro, [2.5, 97.5]) + (point_f1[1].mean() - point_f1[0].mean() - macro.mean())
        low, high = np.percentile(delta_f1, [2.5, 97.5], axis=0)
        flags = (low > 0) | (high < 0)
        flagged_any |= flags
        if s == 0:
            first = (bool(lo > 0 or hi < 0), int(flags.sum()))
    return first[0], first[1], int(flagged_any.sum())


def run_scenario(kind: str, replicates: int, seeds: int, old_samples: int, old_replicates: int,
                 level: float = 0.95) -> dict:
    recall, wrong = base_model(kind)
    cumulative = np.cumsum(wrong, axis=1)
    rng = np.random.default_rng(SCENARIOS.index(kind) + 1000)
    tally = {"seed_aware_excludes": np.zeros(3), "seed_aware_better": np.zeros(3), "seed_aware_flags": 0.0,
             "seed_aware_true_flags": 0.0, "one_seed_excludes": np.zeros(3), "one_seed_flags": 0.0,
             "old_excludes": 0, "old_flags_per_seed": 0.0, "old_flags_union": 0.0}
    eligible = sa.captures_per_class(sa.make_pair(Y_TRUE, Y_TRUE, Y_TRUE), C) >= sa.min_captures_for_verdict(level)
    metric_index = [K_MACRO, K_TAIL, K_ACC]
    started = time.process_time()
    for rep in range(replicates):
        if rep % 50 == 0:
            print(f"{kind}: replicate {rep} of {replicates} ({time.process_time() - started:.0f} CPU s)", flush=True)
        raw = []
        for _ in range(seeds):
            ref = predict(rng, network_recalls(kind, recall, rng, new=False), cumulative)
            new = predict(rng, network_recalls(kind, recall, rng, new=True), cumulative)
            raw.append((ref, new))
        result = sa.compare_pairs([sa.make_pair(Y_TRUE, r, n) for r, n in raw], C, GROUPS, 1000, rep, level)
        seeded = result["seed_aware"]
        for j, k in enumerate(metric_index):
            tally["seed_aware_excludes"][j] += seeded["low"][k] > 0 or seeded["high"][k] < 0
            tally["seed_aware_better"][j] += seeded["low"][k] > 0
            per_seed_low, per_seed_high = result["per_seed"]["low"][0, k], result["per_seed"]["high"][0, k]
            tally["one_seed_excludes"][j] += per_seed_low > 0 or per_seed_high < 0
        flags = result["species"]["outside_noise"]
        tally["seed_aware_flags"] += flags.sum()
        if kind == "tail_gain":
            tally["seed_aware_true_flags"] += flags[TAIL].sum()
        k0 = len(sa.SUMMARY_METRICS)
        one_seed_p = np.where(eligible, result["per_seed"]["p"][0, k0:], np.nan)
        tally["one_seed_flags"] += sa.benjamini_hochberg(one_seed_p, 1 - level)[0].sum()
        if old_samples and rep < old_replicates:  # the old scheme is slow and only a reference
            excludes, per_seed, union = old_tool(raw, old_samples, rep)
            tally["old_excludes"] += excludes
            tally["old_flags_per_seed"] += per_seed
            tally["old_flags_union"] += union
    n = replicates
    names = ("macro_f1", "tail_macro_f1", "accuracy")
    out = {"scenario": kind, "replicates": n, "seeds": seeds, "draws": result["samples"],
           "cpu_seconds": round(time.process_time() - started, 1),
           "seed_aware_excludes_0": dict(zip(names, (tally["seed_aware_excludes"] / n).round(4).tolist())),
           "seed_aware_better": dict(zip(names, (tally["seed_aware_better"] / n).round(4).tolist())),
           "seed_aware_species_flagged_per_comparison": round(float(tally["seed_aware_flags"]) / n, 4),
           "one_seed_excludes_0": dict(zip(names, (tally["one_seed_excludes"] / n).round(4).tolist())),
           "one_seed_species_flagged_per_comparison": round(float(tally["one_seed_flags"]) / n, 4)}
    if kind == "tail_gain":
        out["seed_aware_true_tail_species_flagged_per_comparison"] = round(float(tally["seed_aware_true_flags"]) / n, 4)
        out["tail_species"] = int(len(TAIL))
    if old_samples:
        m = min(old_replicates, n)
        out.update({"old_replicates": m, "old_excludes_0_macro_f1": round(float(tally["old_excludes"]) / m, 4),
                    "old_species_flagged_per_seed": round(float(tally["old_flags_per_seed"]) / m, 4),
                    "old_species_flagged_union_over_seeds": round(float(tally["old_flags_union"]) / m, 4)})
    return out


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    n = args.replicates
    tolerance = 0.05 + 2 * np.sqrt(0.05 * 0.95 / n)
    lines = ["# A/A comparisons: does the paired verdict claim differences that are not there?", "",
             f"{n} replicates per scenario, {args.seeds} seeds each, paper test counts (52 species), paper groups. "
             f"Simulation error of a 5% rate over {n} replicates: ±{np.sqrt(0.05 * 0.95 / n):.3f} (1 s.e.); "
             f"aim: excludes 0 ≤ 0.05 (accepted up to {tolerance:.3f} = 5% + 2 s.e.) and ≤ 0.1 species "
             "flagged per comparison. Statistical simulation: machine load does not affect these numbers.", "",
             "| scenario | seed-aware: Δ macro F1 excl. 0 | Δ tail macro F1 | Δ accuracy | species flagged "
             "| one seed: Δ macro F1 excl. 0 | species flagged | old: Δ macro F1 excl. 0 | old: flagged per seed "
             "| old: flagged (union of seeds) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if r["scenario"] == "tail_gain":
            continue
        s, o = r["seed_aware_excludes_0"], r["one_seed_excludes_0"]
        lines.append(f"| {r['scenario']} | {s['macro_f1']:.3f} | {s['tail_macro_f1']:.3f} | {s['accuracy']:.3f} | "
                     f"{r['seed_aware_species_flagged_per_comparison']:.3f} | {o['macro_f1']:.3f} | "
                     f"{r['one_seed_species_flagged_per_comparison']:.3f} | "
                     f"{r.get('old_excludes_0_macro_f1', float('nan')):.3f} | "
                     f"{r.get('old_species_flagged_per_seed', float('nan')):.3f} | "
                     f"{r.get('old_species_flagged_union_over_seeds', float('nan')):.3f} |")
    power = [r for r in results if r["scenario"] == "tail_gain"]
    for r in power:
        b = r["seed_aware_better"]
        lines += ["", f"Power, {r['seeds']} seeds (`tail_gain`: new model's {r['tail_species']} tail species "
                  f"+{TAIL_GAIN} on the logit of "
                  f"recall, seed noise N(0, {LOGIT_SD}) per network): seed-aware verdict \"better\" on Δ tail macro F1 "
                  f"in {b['tail_macro_f1']:.3f}, on Δ macro F1 in {b['macro_f1']:.3f} of comparisons; "
                  f"{r['seed_aware_true_tail_species_flagged_per_comparison']:.2f} tail species flagged per comparison "
                  f"({r['seed_aware_species_flagged_per_comparison']:.2f} species in all). One seed alone (test-set "
                  f"noise only, no verdict): Δ tail macro F1 interval excludes 0 in "
                  f"{r['one_seed_excludes_0']['tail_macro_f1']:.3f}."]
    lines += ["", "Seed-aware = the verdict's interval (t over seeds + shared test noise, `seed_aware.py`). One seed = "
              "the randomization interval of one network pair (the report gives no verdict from it). Old = the "
              f"previous smoothed bootstrap (for reference; first {args.old_replicates} replicates of each "
              f"scenario, {args.old_samples} resamples). Randomization draws per comparison: {results[0]['draws']}.",
              f"Machine: {platform.platform()}, Python {platform.python_version()}; CPU seconds per scenario: "
              + ", ".join(f"{r['scenario']} {r['cpu_seconds']}" for r in results) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--old-samples", type=int, default=200, help="resamples of the old scheme (0: skip it)")
    parser.add_argument("--old-replicates", type=int, default=100, help="replicates that also run the old scheme")
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--jobs", type=int, default=1, help="scenarios run in parallel processes")
    parser.add_argument("--power-seeds", type=int, nargs="*", default=[3, 6], help="seeds of the power runs")
    args = parser.parse_args()
    jobs = [(kind, args.replicates, args.seeds, args.old_samples, args.old_replicates) for kind in args.scenarios
            if kind != "tail_gain"]
    if "tail_gain" in args.scenarios:  # power, also with more seeds than the A/A runs
        jobs += [("tail_gain", args.replicates, seeds, args.old_samples, args.old_replicates)
                 for seeds in args.power_seeds]
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            results = pool.starmap(run_scenario, jobs, chunksize=1)
    else:
        results = []
        for job in jobs:
            results.append(run_scenario(*job))
            print(results[-1], flush=True)
    write_results("aa_comparisons", {"args": vars(args), "results": results}, markdown(results, args))


if __name__ == "__main__":
    main()
