"""Paired differences between evaluated runs: the verdict a user wants from `compare` and `experiment`.

For every model against the baseline, and every phase-2 model against its own phase-1 run, on the
SAME test images (both runs' predictions.csv joined on path):

    comparisons(rows)             which runs to pair: same seed vs baseline; phase 2 with its init_run
    load_pair(ref, new, split)    one seed's two runs as a `seed_aware.Pair`, with class names and counts
    paired_tables(rows, ...)      every comparison over its seeds (`seed_aware.compare_pairs`): per-seed
                                  rows (test-set noise of one network pair), the seed-aware summary
                                  (Δ accuracy, Δ macro F1, Δ head/medium/tail macro F1 with intervals and
                                  verdicts), per-species rows (Benjamini-Hochberg flags)
    paired_markdown(tables)       the tables and one sentence per comparison
    verdict_json(tables)          the machine-readable verdict (`verdict.json`, read by the demo)

"better" / "worse" are said only when the SEED-AWARE interval excludes 0 (it needs 2+ seeds per
comparison); with one seed a comparison gets "no verdict" about the method, and its test-set-only
interval is labelled as such. See `seed_aware.py` for the statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import seed_aware
from serengeti_tf.evaluate.evaluation import GROUPS, MACRO_ROW, class_groups, group_thresholds
from serengeti_tf.metrics import confusion_counts, scores_from_confusion
from serengeti_tf.run_folder import RunFolder
from serengeti_tf.train.recipes import references

BASELINE = "baseline"
METRIC_TITLES = {"accuracy": "accuracy", "macro_f1": "macro F1", "head_macro_f1": "head macro F1",
                 "medium_macro_f1": "medium macro F1", "tail_macro_f1": "tail macro F1"}
# The metrics of the report's sentence and verdict.json, in the order they are spoken.
VERDICT_METRICS = ("macro_f1", "tail_macro_f1", "accuracy")
SEED_COLUMNS = ["comparison", "seed", "ref_run", "new_run", "accuracy_ref", "accuracy_new", "macro_f1_ref",
                "macro_f1_new"] + [f"delta_{m}{suffix}" for m in seed_aware.SUMMARY_METRICS
                                   for suffix in ("", "_ci_low", "_ci_high", "_p")]
CLASS_COLUMNS = ["comparison", "species", "group", "count_train", "count_test", "captures_test", "n_seeds",
                 "f1_ref_mean", "f1_new_mean", "delta_f1", "ci_low", "ci_high", "p_value", "q_value",
                 "status", "outside_noise"]


def _group(model: str, phase: int) -> str:
    return f"{model} phase {phase}"


def _resolved(path: Any) -> str:
    return str(Path(str(path)).resolve()) if path else ""


def comparisons(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """{"comparison", "reference", "model", "phase", "matched": [(seed, ref run_dir, new run_dir)]}.

    - every (model, phase) other than the baseline against `baseline phase 1` of the same seed;
    - every phase-2 run against the phase-1 run it was initialised from (lineage `init_run`),
    as the recipe of a run of that phase says (`recipes.references`).
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
        for reference in references(int(phase)):
            if reference == "baseline":
                matched = [(int(s), base_by_seed[s], r) for s, r in zip(group["seed"], group["run_dir"])
                           if s in base_by_seed and same_level(base_by_seed[s], r)]
                name, reference_group = f"{_group(model, phase)} vs baseline", _group(BASELINE, 1)
            else:  # "phase 1": the run it was initialised from
                matched = [(int(s), by_dir[_resolved(i)], r) for s, i, r in
                           zip(group["seed"], group["init_run"], group["run_dir"]) if _resolved(i) in by_dir]
                name, reference_group = f"{_group(model, phase)} vs its phase 1", _group(model, 1)
            if matched:
                out.append({"comparison": name, "reference": reference_group,
                            "model": str(model), "phase": int(phase), "matched": matched})
    return out


def read_predictions(run_dir: str | Path, split: str) -> pd.DataFrame:
    """A run's predictions.csv (path, capture_id, true, predicted; and crop for detector-crop runs)."""
    path = RunFolder(Path(run_dir)).eval_dir(split).predictions
    if not path.is_file():
        raise UserError(f"{path} missing: paired differences need each run's predictions; "
                        f"run `serengeti-tf evaluate {run_dir}` again")
    return pd.read_csv(path, usecols=lambda c: c in ("path", "crop", "capture_id", "true", "predicted"),
                       keep_default_na=False, dtype={"capture_id": str})



def _class_table(run_dir: str | Path, split: str) -> pd.DataFrame:
    """species and count_train of a run's per_class.csv, in class-map order (sorted names)."""
    path = RunFolder(Path(run_dir)).eval_dir(split).per_class
    if not path.is_file():
        raise UserError(f"{path} missing; run `serengeti-tf evaluate {run_dir}` first")
    table = pd.read_csv(path, keep_default_na=False)
    table = table[table["species"] != MACRO_ROW]
    return table[["species", "count_train"]].sort_values("species").reset_index(drop=True)


def load_pair(ref_run: str | Path, new_run: str | Path, split: str) -> tuple[seed_aware.Pair, list[str], list[int]]:
    """Two runs' predictions joined on image path (and crop): (pair, class names, train counts)."""
    ref, new = read_predictions(ref_run, split), read_predictions(new_run, split)
    classes = _class_table(ref_run, split)
    names = list(classes["species"])
    if names != list(_class_table(new_run, split)["species"]):
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
    pair = seed_aware.make_pair(y_true, ref_pred, new_pred, joined["capture_id_ref"].to_numpy())
    return pair, names, [int(c) for c in classes["count_train"]]


def _scores(pair: seed_aware.Pair, num_classes: int) -> dict[str, Any]:
    cms = {side: confusion_counts(pair.y_true, getattr(pair, f"{side}_pred"), num_classes) for side in ("ref", "new")}
    out: dict[str, Any] = {}
    for side, cm in cms.items():
        out[f"accuracy_{side}"] = float(np.trace(cm) / cm.sum())
        out[f"f1_{side}"] = scores_from_confusion(cm)["f1"]
        out[f"macro_f1_{side}"] = float(out[f"f1_{side}"].mean())
    return out


def paired_tables(rows: pd.DataFrame, split: str = "test", samples: int = 1000, seed: int = 0,
                  progress: Optional[Callable[[str], None]] = None, head_min: Optional[int] = None,
                  tail_max: Optional[int] = None, level: float = 0.95) -> dict[str, Any]:
    """Every comparison of `comparisons(rows)` over its seeds.

    Returns {"seeds": one row per (comparison, seed) (randomization intervals of that network pair),
    "summary": one row per comparison (seed-aware Δ, interval and verdict per metric, the sentence),
    "per_class": one row per (comparison, species), "groups": {"rule", "head_min", "tail_max"},
    "level"}. Group thresholds: `head_min` / `tail_max` when given, else derived from the train counts.
    """
    samples = max(int(samples), 1)  # the verdict needs the randomization draws even with bootstrap off
    seed_rows, summary_rows, class_rows = [], [], []
    groups_info: dict[str, Any] = {}
    for comparison in comparisons(rows):
        name, matched = comparison["comparison"], comparison["matched"]
        if progress:
            progress(f"paired differences: {name} ({len(matched)} seed{'s' if len(matched) > 1 else ''})")
        loaded = [load_pair(ref_run, new_run, split) for _, ref_run, new_run in matched]
        names, train = loaded[0][1], loaded[0][2]
        if not groups_info:
            hmin, tmax, rule = group_thresholds(train, head_min, tail_max)
            groups_info = {"rule": rule, "head_min": hmin, "tail_max": tmax}
        members = class_groups(names, dict(zip(names, train)), groups_info["head_min"], groups_info["tail_max"])
        result = seed_aware.compare_pairs([p for p, _, _ in loaded], len(names), members, samples, seed, level)
        scores = [_scores(p, len(names)) for p, _, _ in loaded]
        for s, ((run_seed, ref_run, new_run), score) in enumerate(zip(matched, scores)):
            row = {"comparison": name, "seed": run_seed, "ref_run": str(ref_run), "new_run": str(new_run),
                   **{k: v for k, v in score.items() if not k.startswith("f1_")}}
            for k, metric in enumerate(seed_aware.SUMMARY_METRICS):
                for key, suffix in (("delta", ""), ("low", "_ci_low"), ("high", "_ci_high"), ("p", "_p")):
                    row[f"delta_{metric}{suffix}"] = float(result["per_seed"][key][s, k])
            seed_rows.append(row)
        summary = seed_aware.summary_frame(result).set_index("metric")
        present = np.bincount(loaded[0][0].y_true, minlength=len(names)) > 0
        group_of = {i: g for g in GROUPS for i in members[g]}
        row = {"comparison": name, "reference": comparison["reference"], "model": comparison["model"],
               "phase": comparison["phase"], "n_seeds": len(matched), "seed_aware": len(matched) > 1}
        for metric in seed_aware.SUMMARY_METRICS:
            for key in ("delta", "low", "high", "p", "verdict"):
                row[f"{metric}_{key}"] = summary.loc[metric, key]
        for g in GROUPS:
            row[f"{g}_absent"] = " ".join(names[i] for i in members[g] if not present[i])
        species = result["species"]
        k0 = len(seed_aware.SUMMARY_METRICS)
        source = result["seed_aware"] or {key: v[0] for key, v in result["per_seed"].items()}
        for i, species_name in enumerate(names):
            status = ("absent from the test split" if not present[i] else
                      f"too few test captures (< {result['min_captures']})" if not species["eligible"][i] else
                      ("higher F1" if source["delta"][k0 + i] > 0 else "lower F1") if species["outside_noise"][i]
                      else "no change shown")
            class_rows.append({
                "comparison": name, "species": species_name, "group": group_of.get(i, ""),
                "count_train": train[i], "count_test": int(np.sum(loaded[0][0].y_true == i)),
                "captures_test": int(species["captures"][i]), "n_seeds": len(matched),
                "f1_ref_mean": float(np.mean([sc["f1_ref"][i] for sc in scores])),
                "f1_new_mean": float(np.mean([sc["f1_new"][i] for sc in scores])),
                "delta_f1": float(source["delta"][k0 + i]), "ci_low": float(source["low"][k0 + i]),
                "ci_high": float(source["high"][k0 + i]), "p_value": float(species["p"][i]),
                "q_value": float(species["q"][i]), "status": status,
                "outside_noise": bool(species["outside_noise"][i])})
        summary_rows.append(row)
    per_class = pd.DataFrame(class_rows, columns=CLASS_COLUMNS)
    summary = pd.DataFrame(summary_rows)
    if len(summary):
        summary["sentence"] = [sentence(r, per_class[per_class["comparison"] == r["comparison"]], level)
                               for r in summary.to_dict("records")]
    return {"seeds": pd.DataFrame(seed_rows, columns=SEED_COLUMNS), "summary": summary, "per_class": per_class,
            "groups": groups_info, "level": level}


def _signed(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:+.4f}"


def _interval(low: float, high: float) -> str:
    return "–" if low is None or np.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"


def _species_list(frame: pd.DataFrame, with_counts: bool = False) -> str:
    if frame.empty:
        return "none"
    return ", ".join(f"{s} ({c})" if with_counts else s for s, c in zip(frame["species"], frame["captures_test"]))


def sentence(row: dict[str, Any], per_class: pd.DataFrame, level: float = 0.95) -> str:
    """The report's sentence for one comparison (summary row + its per-species rows), in words."""
    pct = int(round(level * 100))
    n = row["n_seeds"]
    parts = []
    for metric in VERDICT_METRICS:
        title, delta = METRIC_TITLES[metric], row[f"{metric}_delta"]
        if delta is None or np.isnan(delta):
            parts.append(f"{title}: no species of the group in the test split")
            continue
        interval = _interval(row[f"{metric}_low"], row[f"{metric}_high"])
        if row["seed_aware"]:
            parts.append(f"{title} {_signed(delta)} {interval} → {row[f'{metric}_verdict']}")
        else:
            lo, hi = row[f"{metric}_low"], row[f"{metric}_high"]
            noise = "distinguishable from" if (lo > 0 or hi < 0) else "within"
            parts.append(f"{title} {_signed(delta)} {interval}, {noise} test-set noise")
    too_few = per_class[per_class["status"].str.startswith("too few")]
    higher = per_class[per_class["outside_noise"] & (per_class["delta_f1"] > 0)]
    lower = per_class[per_class["outside_noise"] & (per_class["delta_f1"] < 0)]
    flagged = ("Species flagged after Benjamini–Hochberg across species" if row["seed_aware"] else
               "Species where this network pair differs beyond test-set noise (Benjamini–Hochberg)")
    species = (f" {flagged}: F1 higher: {_species_list(higher)}; F1 lower: {_species_list(lower)}."
               + (f" Too few test captures for any verdict (captures): {_species_list(too_few, True)}."
                  if len(too_few) else ""))
    if row["seed_aware"]:
        return (f"{row['comparison']} ({n} seeds; {pct}% interval over seeds, seed-to-seed and test-set noise): "
                + "; ".join(parts) + "." + species)
    return (f"{row['comparison']} (1 seed): seed-to-seed noise is not covered, so no verdict about the method. "
            f"This trained network against its reference on this test set ({pct}% randomization interval, "
            "test-set noise only): " + "; ".join(parts) + "." + species)


def paired_markdown(tables: dict[str, Any]) -> str:
    """Markdown: the seed-aware summary, the groups, per-seed rows and one sentence per comparison."""
    seeds, summary = tables["seeds"], tables["summary"]
    if seeds.empty:
        return "No model to pair with a baseline or phase-1 run of the same seed."
    pct = int(round(tables.get("level", 0.95) * 100))
    groups = tables["groups"]
    lines = [f"Differences new − reference on the same test images. With 2+ seeds the {pct}% interval is a "
             "t-interval over the per-seed paired differences, widened for test-set noise the seeds share "
             "(it covers seed-to-seed training noise AND test-set sampling); \"better\" / \"worse\" only when it "
             "excludes 0, else \"no difference shown\". With 1 seed there is no verdict about the method: "
             "the interval is a paired randomization interval of that one network pair (test-set noise only). "
             f"Groups: {groups['rule']}; group means over the species present in the test split.", "",
             "| comparison | seeds | Δ macro F1 | interval | verdict | Δ tail macro F1 | interval | verdict "
             "| Δ accuracy | interval | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary.to_dict("records"):
        cells = [f"{_signed(r[f'{m}_delta'])} | {_interval(r[f'{m}_low'], r[f'{m}_high'])} | {r[f'{m}_verdict']}"
                 for m in VERDICT_METRICS]
        lines.append(f"| {r['comparison']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Head / medium / tail macro F1 (same intervals):", "",
              "| comparison | Δ head | interval | Δ medium | interval | Δ tail | interval | absent from test |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary.to_dict("records"):
        cells = [f"{_signed(r[f'{g}_macro_f1_delta'])} | {_interval(r[f'{g}_macro_f1_low'], r[f'{g}_macro_f1_high'])}"
                 for g in GROUPS]
        absent = "; ".join(f"{g}: {r[f'{g}_absent']}" for g in GROUPS if r[f"{g}_absent"]) or "none"
        lines.append(f"| {r['comparison']} | " + " | ".join(cells) + f" | {absent} |")
    lines += ["", "Each seed alone (randomization interval of that network pair: test-set noise only):", "",
              "| comparison | seed | Δ accuracy | interval | Δ macro F1 | interval | Δ tail macro F1 | interval |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in seeds.to_dict("records"):
        cells = [f"{_signed(r[f'delta_{m}'])} | {_interval(r[f'delta_{m}_ci_low'], r[f'delta_{m}_ci_high'])}"
                 for m in ("accuracy", "macro_f1", "tail_macro_f1")]
        lines.append(f"| {r['comparison']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines += ["", "In words:", ""]
    lines += [f"- **{r['comparison']}**{r['sentence'][len(r['comparison']):]}" for r in summary.to_dict("records")]
    return "\n".join(lines)


def _number(value: Any) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def verdict_json(tables: dict[str, Any]) -> dict[str, Any]:
    """The machine-readable verdict (schema in the README; the demo reads it)."""
    summary = tables["summary"]
    records = summary.to_dict("records") if len(summary) else []
    groups = tables["groups"] or {"rule": "no comparison", "head_min": None, "tail_max": None}
    n_seeds = max((int(r["n_seeds"]) for r in records), default=0)
    comparisons_out = []
    for r in records:
        metrics = {}
        for metric in VERDICT_METRICS:
            delta = _number(r[f"{metric}_delta"])
            seed_aware_interval = bool(r["seed_aware"]) and delta is not None
            metrics[metric] = {"delta": delta,
                               "low": _number(r[f"{metric}_low"]) if seed_aware_interval else None,
                               "high": _number(r[f"{metric}_high"]) if seed_aware_interval else None,
                               "verdict": r[f"{metric}_verdict"] if delta is not None else "no verdict"}
        comparisons_out.append({"comparison": r["comparison"], "reference": r["reference"], "model": r["model"],
                                "phase": int(r["phase"]), "n_seeds": int(r["n_seeds"]),
                                "seed_aware": bool(r["seed_aware"]), "metrics": metrics, "sentence": r["sentence"]})
    return {"level": tables.get("level", 0.95), "n_seeds": n_seeds, "seed_aware": n_seeds > 1,
            "groups": {"rule": groups["rule"], "head_min": groups["head_min"], "tail_max": groups["tail_max"]},
            "comparisons": comparisons_out}
