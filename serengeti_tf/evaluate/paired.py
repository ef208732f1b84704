"""Paired differences between evaluated runs: the number a user wants from `compare` and `experiment`.

For every model against the baseline, and every phase-2 model against its own phase-1 run, on the
SAME test images (both runs' predictions.csv joined on path):

    pairs(rows)                   which runs to pair: same seed vs baseline; phase 2 with its init_run
    paired_run_difference(...)    one pair: Δ accuracy, Δ macro F1 and per-species Δ F1 with paired
                                  bootstrap 95% intervals (`bootstrap.paired_bootstrap`)
    paired_tables(rows, ...)      all pairs: per-seed rows, the across-seed summary (paired mean ± std
                                  of the differences, k of n seeds better), per-species rows
    paired_markdown(...)          the tables plus sentences saying which differences are
                                  distinguishable from noise

A difference is "distinguishable from noise" when its paired 95% interval excludes 0 (resampling
noise of the test set for ONE training run). Seed-to-seed variation is a different noise: it shows in
the across-seed std and in the sign count, which is why both are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import bootstrap
from serengeti_tf.evaluate.evaluation import MACRO_ROW
from serengeti_tf.evaluate.run_reader import eval_dir_name

BASELINE = "baseline"
SEED_COLUMNS = ["comparison", "seed", "ref_run", "new_run", "accuracy_ref", "accuracy_new", "delta_accuracy",
                "delta_accuracy_ci_low", "delta_accuracy_ci_high", "macro_f1_ref", "macro_f1_new",
                "delta_macro_f1", "delta_macro_f1_ci_low", "delta_macro_f1_ci_high", "accuracy_distinguishable",
                "macro_f1_distinguishable", "species_better", "species_worse"]
CLASS_COLUMNS = ["comparison", "seed", "species", "count_test", "f1_ref", "f1_new", "delta_f1", "ci_low",
                 "ci_high", "outside_noise"]


def _group(model: str, phase: int) -> str:
    return f"{model} phase {phase}"


def _resolved(path: Any) -> str:
    return str(Path(str(path)).resolve()) if path else ""


def pairs(rows: pd.DataFrame) -> list[tuple[str, list[tuple[int, str, str]]]]:
    """(comparison name, [(seed, ref run_dir, new run_dir), ...]) for every model and phase.

    - every (model, phase) other than the baseline against `baseline phase 1` of the same seed;
    - every phase-2 run against the phase-1 run it was initialised from (lineage `init_run`).
    Seeds missing on one side are left out of that comparison.
    """
    out = []
    baseline = rows[(rows["model"] == BASELINE) & (rows["phase"] == 1)]
    base_by_seed = dict(zip(baseline["seed"], baseline["run_dir"]))
    by_dir = {_resolved(r): r for r in rows["run_dir"]}
    # Runs of different evaluation levels (detector crops vs whole frames) have no common examples to
    # pair; `levels.compare_levels` scores them on their shared images instead.
    level_of = dict(zip(rows["run_dir"], rows["level"])) if "level" in rows else {}

    def same_level(a: str, b: str) -> bool:
        return level_of.get(a) == level_of.get(b)

    for (model, phase), group in rows.groupby(["model", "phase"], sort=False):
        if model == BASELINE and phase == 1:
            continue
        matched = [(int(s), base_by_seed[s], r) for s, r in zip(group["seed"], group["run_dir"])
                   if s in base_by_seed and same_level(base_by_seed[s], r)]
        if matched:
            out.append((f"{_group(model, phase)} vs baseline", matched))
        if phase == 2:
            own = [(int(s), by_dir[_resolved(i)], r)
                   for s, i, r in zip(group["seed"], group["init_run"], group["run_dir"]) if _resolved(i) in by_dir]
            if own:
                out.append((f"{_group(model, 2)} vs its phase 1", own))
    return out


def read_predictions(run_dir: str | Path, split: str) -> pd.DataFrame:
    """A run's predictions.csv (path, capture_id, true, predicted; and crop for detector-crop runs)."""
    path = Path(run_dir) / eval_dir_name(split) / "predictions.csv"
    if not path.is_file():
        raise UserError(f"{path} missing: paired differences need each run's predictions; "
                        f"run `serengeti-tf evaluate {run_dir}` again")
    return pd.read_csv(path, usecols=lambda c: c in ("path", "crop", "capture_id", "true", "predicted"),
                       keep_default_na=False, dtype={"capture_id": str})


def _class_names(run_dir: str | Path, split: str) -> list[str]:
    path = Path(run_dir) / eval_dir_name(split) / "per_class.csv"
    if not path.is_file():
        raise UserError(f"{path} missing; run `serengeti-tf evaluate {run_dir}` first")
    species = pd.read_csv(path, keep_default_na=False)["species"]
    return [s for s in species if s != MACRO_ROW]


def paired_run_difference(ref_run: str | Path, new_run: str | Path, split: str, samples: int,
                          seed: int) -> dict[str, Any]:
    """`bootstrap.paired_bootstrap` of two runs' predictions joined on image path, plus "species"
    (class names) and "count_test" (images per species)."""
    ref, new = read_predictions(ref_run, split), read_predictions(new_run, split)
    names = _class_names(ref_run, split)
    if sorted(names) != sorted(_class_names(new_run, split)):
        raise UserError(f"paired differences: {ref_run} and {new_run} were evaluated on different class sets")
    key = ["path", "crop"] if "crop" in ref and "crop" in new else ["path"]  # crop runs: one row per crop
    joined = ref.merge(new, on=key, suffixes=("_ref", "_new"), validate="one_to_one")
    if len(joined) != len(ref) or len(joined) != len(new):
        raise UserError(f"paired differences: {ref_run} ({len(ref)} images) and {new_run} ({len(new)} images) "
                        f"were not evaluated on the same images ({len(joined)} in common); evaluate both on one split")
    if not (joined["true_ref"] == joined["true_new"]).all():
        raise UserError(f"paired differences: {ref_run} and {new_run} disagree on the true labels of the same images")
    index = {name: i for i, name in enumerate(names)}
    try:
        y_true, ref_pred, new_pred = (joined[c].map(index).to_numpy(dtype=np.int64)
                                      for c in ("true_ref", "predicted_ref", "predicted_new"))
    except (ValueError, TypeError):
        raise UserError(f"paired differences: predictions of {ref_run} or {new_run} name species outside "
                        f"their class map") from None
    result = bootstrap.paired_bootstrap(y_true, ref_pred, new_pred, len(names), samples, seed,
                                        groups=joined["capture_id_ref"].to_numpy())
    result["species"] = names
    result["count_test"] = np.bincount(y_true, minlength=len(names))
    return result


def paired_tables(rows: pd.DataFrame, split: str = "test", samples: int = 1000, seed: int = 0,
                  progress: Optional[Callable[[str], None]] = None) -> dict[str, pd.DataFrame]:
    """Every pair of `pairs(rows)`: {"seeds": one row per (comparison, seed), "summary": one row per
    comparison over seeds, "per_class": one row per (comparison, seed, species)}."""
    seed_rows, class_rows = [], []
    for name, matched in pairs(rows):
        for run_seed, ref_run, new_run in matched:
            if progress:
                progress(f"paired bootstrap: {name}, seed {run_seed}")
            diff = paired_run_difference(ref_run, new_run, split, samples, seed)
            per = diff["per_class"]
            outside = (per["ci_low"] > 0) | (per["ci_high"] < 0)
            better = [s for s, o, d in zip(diff["species"], outside, per["delta"]) if o and d > 0]
            worse = [s for s, o, d in zip(diff["species"], outside, per["delta"]) if o and d < 0]
            acc, f1 = diff["accuracy"], diff["macro_f1"]
            seed_rows.append({
                "comparison": name, "seed": run_seed, "ref_run": str(ref_run), "new_run": str(new_run),
                "accuracy_ref": acc["ref"], "accuracy_new": acc["new"], "delta_accuracy": acc["delta"],
                "delta_accuracy_ci_low": acc["ci"][0], "delta_accuracy_ci_high": acc["ci"][1],
                "macro_f1_ref": f1["ref"], "macro_f1_new": f1["new"], "delta_macro_f1": f1["delta"],
                "delta_macro_f1_ci_low": f1["ci"][0], "delta_macro_f1_ci_high": f1["ci"][1],
                "accuracy_distinguishable": bootstrap.excludes_zero(acc),
                "macro_f1_distinguishable": bootstrap.excludes_zero(f1),
                "species_better": " ".join(better), "species_worse": " ".join(worse)})
            for i, species in enumerate(diff["species"]):
                class_rows.append({"comparison": name, "seed": run_seed, "species": species,
                                   "count_test": int(diff["count_test"][i]), "f1_ref": per["f1_ref"][i],
                                   "f1_new": per["f1_new"][i], "delta_f1": per["delta"][i],
                                   "ci_low": per["ci_low"][i], "ci_high": per["ci_high"][i],
                                   "outside_noise": bool(outside[i])})
    seeds = pd.DataFrame(seed_rows, columns=SEED_COLUMNS)
    return {"seeds": seeds, "summary": summarise(seeds),
            "per_class": pd.DataFrame(class_rows, columns=CLASS_COLUMNS)}


def summarise(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per comparison: n_seeds, paired mean and sample std of Δ accuracy and Δ macro F1 over seeds,
    seeds where new is better (k of n), and seeds whose paired interval excludes 0 each way."""
    out = []
    for name, group in seeds.groupby("comparison", sort=False):
        row: dict[str, Any] = {"comparison": name, "n_seeds": len(group)}
        for key in ("accuracy", "macro_f1"):
            delta = group[f"delta_{key}"].astype(float)
            low, high = group[f"delta_{key}_ci_low"].astype(float), group[f"delta_{key}_ci_high"].astype(float)
            row[f"delta_{key}_mean"] = float(delta.mean())
            row[f"delta_{key}_std"] = float(delta.std(ddof=1)) if len(delta) > 1 else float("nan")
            row[f"{key}_seeds_better"] = int((delta > 0).sum())
            row[f"{key}_seeds_better_outside_noise"] = int((low > 0).sum())
            row[f"{key}_seeds_worse_outside_noise"] = int((high < 0).sum())
        out.append(row)
    return pd.DataFrame(out)


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _interval(low: float, high: float) -> str:
    return f"[{low:+.4f}, {high:+.4f}]"


def verdict(low: float, high: float) -> str:
    """Words for one paired interval."""
    if low > 0:
        return "better, distinguishable from noise"
    if high < 0:
        return "worse, distinguishable from noise"
    return "within noise"


def paired_markdown(tables: dict[str, pd.DataFrame], level: float = 0.95) -> str:
    """Markdown: per-seed table, across-seed summary and one sentence per comparison."""
    seeds, summary, per_class = tables["seeds"], tables["summary"], tables["per_class"]
    if seeds.empty:
        return "No model to pair with a baseline or phase-1 run of the same seed."
    pct = int(round(level * 100))
    lines = [f"Differences new − reference on the same test images; paired capture bootstrap {pct}% "
             "intervals (both models scored on the same resampled captures). \"Distinguishable from "
             "noise\" = the interval excludes 0; it covers test-set resampling noise of one training "
             "run, not seed-to-seed variation (see mean ± std and k of n seeds).", "",
             "| comparison | seed | Δ accuracy | CI | Δ macro F1 | CI | species better / worse (outside noise) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in seeds.to_dict("records"):
        better = len(r["species_better"].split()) if r["species_better"] else 0
        worse = len(r["species_worse"].split()) if r["species_worse"] else 0
        lines.append(f"| {r['comparison']} | {r['seed']} | {_signed(r['delta_accuracy'])} | "
                     f"{_interval(r['delta_accuracy_ci_low'], r['delta_accuracy_ci_high'])} | "
                     f"{_signed(r['delta_macro_f1'])} | "
                     f"{_interval(r['delta_macro_f1_ci_low'], r['delta_macro_f1_ci_high'])} | {better} / {worse} |")
    lines += ["", "Across seeds (paired: each seed's difference against the same seed's reference):", "",
              "| comparison | seeds | Δ accuracy mean ± std | better (k of n) | Δ macro F1 mean ± std "
              "| better (k of n) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in summary.to_dict("records"):
        def cell(key: str, r=r) -> str:
            std = r[f"delta_{key}_std"]
            return _signed(r[f"delta_{key}_mean"]) + ("" if np.isnan(std) else f" ± {std:.4f}")
        lines.append(f"| {r['comparison']} | {r['n_seeds']} | {cell('accuracy')} | "
                     f"{r['accuracy_seeds_better']} of {r['n_seeds']} | {cell('macro_f1')} | "
                     f"{r['macro_f1_seeds_better']} of {r['n_seeds']} |")
    lines += ["", "In words:", ""]
    for r in summary.to_dict("records"):
        name, n = r["comparison"], r["n_seeds"]
        group = seeds[seeds["comparison"] == name]
        parts = []
        for key, title in (("macro_f1", "macro F1"), ("accuracy", "accuracy")):
            verdicts = [verdict(lo, hi) for lo, hi in zip(group[f"delta_{key}_ci_low"], group[f"delta_{key}_ci_high"])]
            if n == 1:
                parts.append(f"{title} {_signed(r[f'delta_{key}_mean'])} ({verdicts[0]})")
            else:
                parts.append(f"{title} {_signed(r[f'delta_{key}_mean'])} on average, better in "
                             f"{r[f'{key}_seeds_better']} of {n} seeds; distinguishable from noise better in "
                             f"{r[f'{key}_seeds_better_outside_noise']} and worse in "
                             f"{r[f'{key}_seeds_worse_outside_noise']} of {n} seeds")
        classes = per_class[(per_class["comparison"] == name) & per_class["outside_noise"]]
        better = sorted(set(classes.loc[classes["delta_f1"] > 0, "species"]))
        worse = sorted(set(classes.loc[classes["delta_f1"] < 0, "species"]))
        species = (f" Species whose F1 change is outside noise (in at least one seed): better "
                   f"{', '.join(better) or 'none'}; worse {', '.join(worse) or 'none'}.")
        lines.append(f"- **{name}**: " + "; ".join(parts) + "." + species)
    return "\n".join(lines)
