"""Comparison reports over evaluated runs: the paper's Tables 1-3 and per-class F1-change plots.

`compare_runs` (the `compare` command) and `experiment_report` (the `experiment` command) share
every building block here:

    collect_runs(run_dirs)          one row per run: model label, phase, seed, headline metrics
    aggregate_over_seeds(rows)      mean, std and count per (model, phase)
    paper_table(rows)               Tables 1-3 in the shape of the paper's macro_results.csv
    per_class_f1(rows)              species x (model, phase) mean F1, species by train frequency
    f1_change(ref, new)             relative per-class F1 change, plotted by `plot_f1_change`
    write_report(rows, out_dir)     all of the above as CSV, Markdown and PNG, the paired differences
                                    of `paired.py` (Δ vs baseline / own phase 1 with seed-aware
                                    intervals and verdicts), verdict.json, plus report.md

Runs must be evaluated first (`serengeti-tf evaluate RUN`): reporting only reads
`RUN/eval/metrics.json` and `RUN/eval/per_class.csv`, so it needs neither TensorFlow nor the
dataset. `evaluate_missing=True` (`compare --evaluate-missing`) evaluates runs that lack them.

Model labels: `baseline` for sampler `none`, else the sampler name (`ros`, `rus`, ...), plus
`+<setting>` for a non-default loss, class weighting or head re-balancing (so loss variants of the
baseline do not get averaged together). A phase-2 run carries its phase-1 run's sampler (lineage).
As in the paper, a single-phase model (sampler `none` without a phase-2 run) has its numbers in the
`phase2_*` columns of the table, with a note.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import events, io_utils, run_folder
from serengeti_tf.choices import RECIPES, SAMPLERS
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate import paired
from serengeti_tf.evaluate.evaluation import GROUPS, MACRO_ROW, class_groups, group_thresholds
from serengeti_tf.evaluate.levels import append_level_comparison
from serengeti_tf.evaluate.markdown import markdown_table
from serengeti_tf.evaluate.run_evaluation import evaluate_run
from serengeti_tf.evaluate.run_reader import read_lineage
from serengeti_tf.plots import plot_f1_change, plot_f1_vs_frequency
from serengeti_tf.run_folder import OutputJob, RunFolder
from serengeti_tf.train.recipes import references

# Metrics carried from each run's metrics.json into runs.csv and the seed aggregates.
HEADLINE_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "top_k_accuracy",
                    "balanced_accuracy", "weighted_f1", "macro_f1_present")
# The paper's Tables 1-3, in macro_results.csv column order.
PAPER_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall")
METRIC_TITLES = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "macro_precision": "Macro precision",
                 "macro_recall": "Macro recall"}
# Per class group (head/medium/tail by train count) from metrics.json, as `<group>_<metric>`.
GROUP_METRICS = ("accuracy", "macro_f1")
BASELINE = "baseline"
SINGLE_PHASE_NOTE = "one phase; its figures are in the phase2 columns"


# ----------------------------------------------------------------------------------------------
# Reading runs
# ----------------------------------------------------------------------------------------------

def model_label(sampler: str, train: Optional[cfg.TrainConfig] = None) -> str:
    """`baseline` / sampler name, plus `+loss`, `+weighting`, `+rebalancing` when not the default."""
    label = BASELINE if sampler == "none" else sampler
    if train is not None:
        if train.loss != "cross_entropy":
            label += f"+{train.loss}"
        if train.class_weighting != "none":
            label += f"+{train.class_weighting}_weights"
        if getattr(train, "head_rebalancing", "none") != "none":
            label += f"+{train.head_rebalancing}"
    return label


def _recipe_suffix(lineage: Mapping[str, Any]) -> str:
    """The label suffix of the recipe lineage names (only a recipe with a `label_suffix` is named
    there), so its runs form a report group of their own."""
    name = lineage.get("recipe")
    if not name:
        return ""
    return RECIPES.lookup(name).label_suffix if name in RECIPES else f"+{name}"

def run_row(run_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """One evaluated run as a flat row: run_dir, run_name, model, sampler, phase, seed, init_run,
    the HEADLINE_METRICS, and the bootstrap CI bounds when present."""
    run_dir = Path(run_dir)
    metrics_path = RunFolder(run_dir).eval_dir(split).metrics
    if not metrics_path.is_file():
        split_flag = "" if split == "test" else f" {setting('split')} {split}"
        raise UserError(f"{run_dir} has no {split} evaluation ({metrics_path} missing); run "
                        f"`serengeti-tf evaluate {run_dir}{split_flag}` "
                        f"first or pass {setting('evaluate_missing')}")
    metrics = io_utils.read_json(metrics_path)
    lineage = read_lineage(run_dir)
    run = RunFolder(run_dir)
    train = cfg.load_saved(run.config).train if run.config.is_file() else None
    sampler = lineage.sampler
    row: dict[str, Any] = {
        "run_dir": str(run_dir), "run_name": run_dir.name,
        "model": model_label(sampler, train) + _recipe_suffix(lineage),
        "sampler": sampler, "phase": lineage.phase, "seed": lineage.seed, "init_run": str(lineage.init_run or ""),
        "num_test_images": metrics.get("num_examples"),
        # crop: one example per detector crop (headline numbers at crop level), image: whole frames.
        "level": metrics.get("level", "image")}
    for key in HEADLINE_METRICS:
        row[key] = metrics.get(key)
    for group, values in (metrics.get("groups") or {}).items():
        for key in GROUP_METRICS:
            row[f"{group}_{key}"] = values.get(key)
    boot = metrics.get("bootstrap") or {}
    if boot.get("accuracy"):
        row["accuracy_ci_low"], row["accuracy_ci_high"] = boot["accuracy"]
    well = boot.get("macro_f1_well_tested") or {}  # the macro F1 interval covers only these species
    if well.get("ci"):
        row["macro_f1_well_tested"], row["macro_f1_well_tested_species"] = well["estimate"], well["num_species"]
        row["macro_f1_well_tested_ci_low"], row["macro_f1_well_tested_ci_high"] = well["ci"]
    return row


def collect_runs(run_dirs: Iterable[str | Path], split: str = "test", evaluate_missing: bool = False,
                 config: Optional[cfg.Config] = None, on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """`run_row` for each run (evaluating the unevaluated ones first when `evaluate_missing`, their
    progress to `on_event`)."""
    rows = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserError(f"run folder not found: {run_dir}")
        if evaluate_missing and not RunFolder(run_dir).eval_dir(split).metrics.is_file():
            evaluate_run(run_dir, config=config, split=split, on_event=on_event)
        rows.append(run_row(run_dir, split))
    if not rows:
        raise UserError("compare: no run folders given")
    rows = pd.DataFrame(rows)
    if rows["level"].nunique() > 1:  # whole frames beside crops: one sampler gives two models
        rows.loc[rows["level"] == "crop", "model"] += " (crops)"
    return sort_rows(rows)


def sort_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Samplers in registration order (the paper's: baseline, ros, rus, ros_rus_15k, ros_rus_5k, then
    the others), unknown ones last; then model, phase, seed."""
    rank = {s: i for i, s in enumerate(SAMPLERS.names())}
    key = rows["sampler"].map(lambda s: rank.get(s, len(rank)))
    by = ["_rank"] + [c for c in ("model", "phase", "seed") if c in rows]
    return (rows.assign(_rank=key).sort_values(by, kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


def read_per_class(run_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """A run's per_class.csv without the `Macro` row."""
    path = RunFolder(Path(run_dir)).eval_dir(split).per_class
    if not path.is_file():
        raise UserError(f"{path} missing; run `serengeti-tf evaluate {run_dir}` first")
    table = pd.read_csv(path, keep_default_na=False)
    return table[table["species"] != MACRO_ROW].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

def aggregate_over_seeds(rows: pd.DataFrame | Sequence[Mapping[str, Any]],
                         metrics: Sequence[str] = HEADLINE_METRICS) -> pd.DataFrame:
    """Mean and sample std (ddof=1; NaN for one seed) per (model, phase) over seeds.

    Columns: model, sampler, phase, n_seeds, seeds, then `<metric>_mean` and `<metric>_std`.
    Rows without a `model` column are labelled by sampler.
    """
    frame = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if frame.empty:
        raise UserError("aggregate_over_seeds: no rows")
    if "model" not in frame:
        frame["model"] = frame["sampler"].map(model_label)
    if "seed" not in frame:
        frame["seed"] = 0
    present = [m for m in metrics if m in frame]
    out = []
    for (model, phase), group in frame.groupby(["model", "phase"], sort=False):
        row: dict[str, Any] = {"model": model, "sampler": group["sampler"].iloc[0], "phase": int(phase),
                               "n_seeds": int(group["seed"].nunique()),
                               "seeds": " ".join(str(s) for s in sorted(group["seed"].unique()))}
        for metric in present:
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        out.append(row)
    return sort_rows(pd.DataFrame(out))


def _check_one_run_per_seed(rows: pd.DataFrame) -> None:
    duplicated = rows[rows.duplicated(["model", "phase", "seed"], keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        same = duplicated[(duplicated["model"] == first["model"]) & (duplicated["phase"] == first["phase"])]
        raise UserError(f"compare: several runs of model '{first['model']}' phase {first['phase']} seed "
                        f"{first['seed']}: {', '.join(same['run_dir'])}; give one run per model, phase and seed")


def _single_phase_models(aggregated: pd.DataFrame) -> set[str]:
    phases = aggregated.groupby("model")["phase"].apply(set)
    samplers = aggregated.groupby("model")["sampler"].first()
    return {m for m, p in phases.items() if p == {1} and samplers[m] == "none"}


def paper_table(rows: pd.DataFrame, metrics: Sequence[str] = PAPER_METRICS) -> pd.DataFrame:
    """The paper's Tables 1-3 (macro_results.csv shape): model, phase1_<m>, phase2_<m> ..., note.

    Values are means over seeds; with more than one seed per model, `phase<k>_<m>_std` and
    `n_seeds` columns follow. Single-phase baselines go in the phase2 columns, as in the paper.
    """
    aggregated = aggregate_over_seeds(rows, metrics)
    single = _single_phase_models(aggregated)
    multi_seed = bool((aggregated["n_seeds"] > 1).any())
    out = []
    for model in dict.fromkeys(aggregated["model"]):
        group = aggregated[aggregated["model"] == model]
        row: dict[str, Any] = {"model": model}
        for metric in metrics:
            for phase in (1, 2):
                source_phase = 1 if (model in single and phase == 2) else (None if model in single else phase)
                match = group[group["phase"] == source_phase] if source_phase else group.iloc[0:0]
                row[f"phase{phase}_{metric}"] = match[f"{metric}_mean"].iloc[0] if len(match) else np.nan
                if multi_seed:
                    row[f"phase{phase}_{metric}_std"] = match[f"{metric}_std"].iloc[0] if len(match) else np.nan
        if multi_seed:
            row["n_seeds"] = int(group["n_seeds"].max())
        row["note"] = SINGLE_PHASE_NOTE if model in single else ""
        out.append(row)
    columns = ["model"] + [f"phase{p}_{m}{s}" for m in metrics for p in (1, 2)
                           for s in (("", "_std") if multi_seed else ("",))]
    columns += (["n_seeds"] if multi_seed else []) + ["note"]
    return pd.DataFrame(out, columns=columns).round(4)


def _cell(mean: Any, std: Any = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {std:.4f}"


def paper_tables_markdown(table: pd.DataFrame, metrics: Sequence[str] = PAPER_METRICS) -> str:
    """One Markdown table per metric (rows: model; columns: phase 1, phase 2), mean ± std if known."""
    parts = []
    for metric in metrics:
        cells = []
        for row in table.to_dict("records"):
            cells.append({"model": row["model"],
                          "phase 1": _cell(row[f"phase1_{metric}"], row.get(f"phase1_{metric}_std")),
                          "phase 2": _cell(row[f"phase2_{metric}"], row.get(f"phase2_{metric}_std")),
                          **({"seeds": row["n_seeds"]} if "n_seeds" in row else {})})
        parts.append(f"### {METRIC_TITLES.get(metric, metric)}\n\n{markdown_table(pd.DataFrame(cells))}")
    notes = sorted({r for r in table["note"] if r})
    if notes:
        parts.append("".join(f"{table.loc[table['note'] == n, 'model'].str.cat(sep=', ')}: {n}.\n" for n in notes))
    return "\n\n".join(parts)


def regroup(rows: pd.DataFrame, split: str, head_min: Optional[int],
            tail_max: Optional[int]) -> tuple[pd.DataFrame, str]:
    """Each run's head/medium/tail accuracy and macro F1 recomputed from its per_class.csv with ONE
    set of thresholds (given, else derived from the train counts), so the group table and the paired
    group differences of a report use the same groups even if runs were evaluated with others.
    Macro F1 over the group's species present in the test split; accuracy = recall weighted by test
    images. Returns (rows with `<group>_accuracy`, `<group>_macro_f1`, the rule in words)."""
    rows = rows.copy()
    tables = [read_per_class(r, split) for r in rows["run_dir"]]
    train = dict(zip(tables[0]["species"], tables[0]["count_train"].astype(int)))
    head, tail, rule = group_thresholds(list(train.values()), head_min, tail_max)
    for group, members in class_groups(list(train), train, head, tail).items():
        names = {list(train)[i] for i in members}
        values: dict[str, list[float]] = {"accuracy": [], "macro_f1": []}
        for table in tables:
            present = table[table["species"].isin(names) & (table["count_test"].astype(int) > 0)]
            images = present["count_test"].astype(float)
            values["accuracy"].append(float((present["recall"] * images).sum() / images.sum()) if len(present)
                                      else float("nan"))
            values["macro_f1"].append(float(present["f1"].mean()) if len(present) else float("nan"))
        for key, column in values.items():
            rows[f"{group}_{key}"] = column
    return rows, rule


def group_table_markdown(rows: pd.DataFrame) -> str:
    """Head/medium/tail accuracy and macro F1 per (model, phase), mean ± std over seeds."""
    keys = [f"{g}_{m}" for g in GROUPS for m in GROUP_METRICS if f"{g}_{m}" in rows]
    if not keys:
        return ""
    aggregated = aggregate_over_seeds(rows, keys)
    cells = []
    for row in aggregated.to_dict("records"):
        cell = {"model": row["model"], "phase": row["phase"]}
        for key in keys:
            label = key.replace("_", " ", 1).replace("macro_f1", "macro F1")
            cell[label] = _cell(row[f"{key}_mean"], row[f"{key}_std"])
        cells.append(cell)
    return markdown_table(pd.DataFrame(cells))


# ----------------------------------------------------------------------------------------------
# Per-class F1 and its change
# ----------------------------------------------------------------------------------------------

def group_key(model: str, phase: int) -> str:
    return f"{model} phase {phase}"


def per_class_f1(rows: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """species, count_train, then the mean F1 over seeds of each (model, phase); species sorted by
    train count (descending), as in the paper's figures."""
    base: Optional[pd.DataFrame] = None
    columns: dict[str, pd.Series] = {}
    for (model, phase), group in rows.groupby(["model", "phase"], sort=False):
        tables = [read_per_class(r, split).set_index("species") for r in group["run_dir"]]
        if base is None:
            base = tables[0][["count_train"]]
        for t in tables:
            if set(t.index) != set(base.index):
                raise UserError(f"compare: runs were evaluated on different class sets "
                                f"({sorted(set(t.index) ^ set(base.index))[:5]} differ); compare runs of one dataset")
        columns[group_key(model, int(phase))] = pd.concat([t["f1"] for t in tables], axis=1).mean(axis=1)
    frame = base.join(pd.DataFrame(columns)).reset_index()
    return frame.sort_values(["count_train", "species"], ascending=[False, True]).reset_index(drop=True)


def f1_change(ref: pd.Series, new: pd.Series) -> pd.DataFrame:
    """abs_change = new - ref; rel_change = (new - ref) / ref. When ref is 0 the relative change is
    0 if new is 0 too, else undefined (NaN, flagged in `ref_zero`): a class the reference never got
    right cannot be expressed as a percentage of it."""
    ref = ref.astype(float)
    new = new.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref > 0, (new - ref) / ref, np.where(new == 0, 0.0, np.nan))
    return pd.DataFrame({"f1_ref": ref.to_numpy(), "f1_new": new.to_numpy(),
                         "abs_change": (new - ref).to_numpy(), "rel_change": rel,
                         "ref_zero": (ref == 0).to_numpy() & (new > 0).to_numpy()})


def comparisons(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(name, reference group, new group) for each phase-2 model and each single-phase method, against
    what its recipe is compared with (`recipes.references`): the baseline, and a phase-2 model's phase 1.

    The phase-1 reference of a phase-2 model is its own `model phase 1` group; `init_run` in the
    lineage names the exact run, so a phase-2 run evaluated without its phase-1 run gets no such plot.
    A phase-1 run on a sampler gets no plot of its own: its phase-2 run's plots show the sampler.
    """
    groups = set(group_key(m, int(p)) for m, p in zip(rows["model"], rows["phase"]))
    baseline = group_key(BASELINE, 1)
    out = []
    for model in dict.fromkeys(rows.loc[rows["phase"] == 2, "model"]):
        new = group_key(model, 2)
        for reference in references(2):
            if reference == "baseline" and baseline in groups and model != BASELINE:
                out.append((f"{model} phase 2 vs baseline", baseline, new))
            if reference == "phase 1" and _started_from_own_phase1(rows, model, groups):
                out.append((f"{model} phase 2 vs phase 1", group_key(model, 1), new))
    # Single-phase imbalance methods (issue 6: a loss, weighting or head re-balancing on the
    # original distribution) against the baseline they modify.
    for model in dict.fromkeys(rows.loc[(rows["phase"] == 1) & (rows["sampler"] == "none"), "model"]):
        if model != BASELINE and "baseline" in references(1) and baseline in groups \
                and group_key(model, 2) not in groups:
            out.append((f"{model} vs baseline", baseline, group_key(model, 1)))
    return out


def _started_from_own_phase1(rows: pd.DataFrame, model: str, groups: set[str]) -> bool:
    """True when the model's phase-1 group is there and holds every phase-2 run's `init_run`."""
    if group_key(model, 1) not in groups:
        return False
    members = rows[(rows["model"] == model) & (rows["phase"] == 2)]
    phase1_dirs = set(rows.loc[(rows["model"] == model) & (rows["phase"] == 1), "run_dir"].map(_resolved))
    return all(_resolved(i) in phase1_dirs for i in members["init_run"] if i)


def _resolved(path: str) -> str:
    return str(Path(path).resolve()) if path else ""


def f1_change_table(per_class: pd.DataFrame, pairs: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """Long table: comparison, species, count_train, f1_ref, f1_new, abs_change, rel_change, ref_zero."""
    parts = []
    for name, ref, new in pairs:
        change = f1_change(per_class[ref], per_class[new])
        change.insert(0, "count_train", per_class["count_train"].to_numpy())
        change.insert(0, "species", per_class["species"].to_numpy())
        change.insert(0, "comparison", name)
        parts.append(change)
    if not parts:
        return pd.DataFrame(columns=["comparison", "species", "count_train", "f1_ref", "f1_new",
                                     "abs_change", "rel_change", "ref_zero"])
    return pd.concat(parts, ignore_index=True).round({"f1_ref": 4, "f1_new": 4, "abs_change": 4, "rel_change": 4})


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").replace("__", "_")


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------

def write_report(rows: pd.DataFrame, out_dir: str | Path, split: str = "test",
                 title: str = "Comparison", eval_config: Optional[cfg.EvalConfig] = None) -> dict[str, Any]:
    """Writes runs.csv, macro_results.csv/.md, per_class_f1.csv, f1_change.csv, one PNG per
    comparison, the paired differences (`paired.py`: paired_differences.csv/.md, paired_summary.csv,
    paired_per_class.csv, verdict.json; `eval_config.bootstrap_samples` randomization draws, its seed,
    its group thresholds) and report.md into
    `out_dir`; returns their paths and the tables."""
    eval_config = eval_config or cfg.EvalConfig()
    out = Path(out_dir)
    rows = sort_rows(rows)
    # First, so that runs that cannot be paired (other images) stop the report before any file.
    differences = paired.paired_tables(rows, split, eval_config.bootstrap_samples, eval_config.seed,
                                       progress=print, head_min=eval_config.head_min, tail_max=eval_config.tail_max)
    differences_md = paired.paired_markdown(differences)
    out.mkdir(parents=True, exist_ok=True)
    table = paper_table(rows)
    tables_md = paper_tables_markdown(table)
    per_class = per_class_f1(rows, split)
    pairs = comparisons(rows)
    changes = f1_change_table(per_class, pairs)
    io_utils.write_csv(out / "runs.csv", rows)
    io_utils.write_csv(out / "macro_results.csv", table)
    io_utils.write_text(out / "macro_results.md", tables_md + "\n")
    io_utils.write_csv(out / "per_class_f1.csv", per_class.round(4))
    io_utils.write_csv(out / "f1_change.csv", changes)
    plots = []
    for name, _, _ in pairs:
        path = out / f"f1_change_{_slug(name)}.png"
        io_utils.save_figure(path, plot_f1_change(changes[changes["comparison"] == name],
                                                  f"Per-class relative F1 change: {name}"))
        plots.append((name, path))
    frequency_plot = out / "f1_vs_frequency.png"
    io_utils.save_figure(frequency_plot, plot_f1_vs_frequency(per_class))
    io_utils.write_csv(out / "paired_differences.csv", differences["seeds"].round(6))
    io_utils.write_csv(out / "paired_summary.csv", differences["summary"].round(6))
    io_utils.write_csv(out / "paired_per_class.csv", differences["per_class"].round(6))
    io_utils.write_text(out / "paired_differences.md", differences_md + "\n")
    io_utils.write_json(out / "verdict.json", paired.verdict_json(differences))
    grouped, group_rule = regroup(rows, split, eval_config.head_min, eval_config.tail_max)
    markdown = _report_markdown(title, rows, tables_md, group_table_markdown(grouped), plots, split, out,
                                frequency_plot, differences_md, group_rule)
    io_utils.write_text(out / "report.md", markdown)
    return {"out_dir": out, "markdown": out / "report.md", "table": table, "runs": rows,
            "per_class_f1": per_class, "f1_change": changes, "plots": [p for _, p in plots],
            "frequency_plot": frequency_plot, "paired": differences,
            "text": tables_md}


def _report_markdown(title: str, rows: pd.DataFrame, tables_md: str, groups_md: str,
                     plots: Sequence[tuple[str, Path]], split: str, out_dir: Path,
                     frequency_plot: Optional[Path] = None, differences_md: str = "", group_rule: str = "") -> str:
    seeds = sorted(rows["seed"].unique())
    lines = [f"# {title}", "",
             f"{len(rows)} runs evaluated on the {split} split; seeds: {', '.join(map(str, seeds))}. "
             "Macro averages are over all classes of the class map (scikit-learn labels=range(C), "
             "zero_division=0; the same macro F1 selects checkpoints on val)"
             + (", mean ± sample std over seeds." if len(seeds) > 1 else "."), "",
             "## Tables 1-3: accuracy and macro F1 / precision / recall after phase 1 and phase 2", "",
             tables_md, "",
             "CSV: [macro_results.csv](macro_results.csv); every run: [runs.csv](runs.csv) "
             "(with each run's 95% intervals for accuracy and for the macro F1 of the species with >= 10 test "
             "captures: stratified capture bootstrap, see README).", "",
             *(["## Paired differences: is a model better than the baseline on the same images?", "",
                differences_md, "",
                "CSV: [paired_summary.csv](paired_summary.csv) (per comparison: seed-aware Δ, interval, "
                "verdict), [paired_differences.csv](paired_differences.csv) (per seed), "
                "[paired_per_class.csv](paired_per_class.csv) (per species: `outside_noise` after "
                "Benjamini–Hochberg, `status` says why a species got no verdict); "
                "[verdict.json](verdict.json) (machine-readable).", ""] if differences_md else []),
             *(["## Head, medium and tail classes", "",
                "Classes grouped by training images (" + (group_rule or "eval.head_min, eval.tail_max")
                + "); accuracy over the group's test images, macro F1 over its classes present in the "
                "test split; mean ± std over seeds.", "",
                groups_md, ""] if groups_md else []),
             *(["## Per-class F1 against class frequency", "",
                "Every model (samplers and imbalance methods): each class's F1 against its number of "
                "training images (log scale).", "",
                f"![Per-class F1 against class frequency]({frequency_plot.name})", ""] if frequency_plot else []),
             "## Per-class F1 change", "",
             "Species sorted by number of training images, most frequent left. Relative change = "
             "(F1_new - F1_ref) / F1_ref. Data: [f1_change.csv](f1_change.csv), "
             "[per_class_f1.csv](per_class_f1.csv).", ""]
    if not plots:
        lines += ["No phase-2 runs with a baseline or phase-1 run to compare against.", ""]
    for name, path in plots:
        lines += [f"### {name}", "", f"![{name}]({path.name})", ""]
    lines += ["## Runs", "", "Per-class tables (the paper's Table 4 layout) and confusion matrices of each run:", "",
              markdown_table(_run_links(rows, out_dir, split)), ""]
    return "\n".join(lines)


def _run_links(rows: pd.DataFrame, out_dir: Path, split: str) -> pd.DataFrame:
    """model, phase, seed, run folder, and relative links to its per-class CSV and confusion PNG."""
    def link(run_dir: str, name: str) -> str:
        target = RunFolder(Path(run_dir)).eval_dir(split).root / name
        return f"[{name}]({Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()})"

    return pd.DataFrame({"model": rows["model"], "phase": rows["phase"], "seed": rows["seed"],
                         "run": rows["run_dir"],
                         "per-class": [link(r, run_folder.PER_CLASS) for r in rows["run_dir"]],
                         "confusion": [link(r, run_folder.CONFUSION_PNG) for r in rows["run_dir"]]})


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, split: str = "test",
                 evaluate_missing: bool = False, config: Optional[cfg.Config] = None,
                 overwrite: bool = False, on_event: events.EventSink = events.ignore) -> dict[str, Any]:
    """The `compare` command: Tables 1-3 and per-class F1-change plots for evaluated runs.

    Runs must have `eval/metrics.json` (`serengeti-tf evaluate RUN`) unless `evaluate_missing`.
    One run per (model, phase, seed); several seeds are averaged (mean ± std). `out_dir` is claimed
    with `claim_output_dir`: rerunning with the same runs rewrites it, other content needs `overwrite`.
    """
    if not run_dirs:
        raise UserError("compare: no run folders given")
    job = OutputJob(out_dir, "report", inputs={"RUN_DIR": list(run_dirs)}, what="report folder")
    job.check_inputs()
    io_utils.refuse_other_kind(out_dir, "report")
    rows = collect_runs(run_dirs, split, evaluate_missing, config, on_event)
    _check_one_run_per_seed(rows)
    fingerprint = {"kind": "serengeti-tf compare", "split": split,
                   "runs": sorted(str(Path(r).resolve()) for r in run_dirs)}
    with job.lock():  # one process per report folder
        job.claim(fingerprint, overwrite=overwrite)
        if config is not None:
            cfg.save_config(config, out_dir)
        result = write_report(rows, out_dir, split, title="Comparison of runs",
                              eval_config=config.eval if config is not None else None)
        result["levels"] = append_level_comparison(rows, out_dir, split)
        return result


def experiment_report(runs: pd.DataFrame, out_dir: str | Path, dataset_dir: Optional[str | Path] = None,
                      split: str = "test", eval_config: Optional[cfg.EvalConfig] = None) -> dict[str, Any]:
    """The `experiment` report: `runs` needs a `run_dir` column (runs evaluated on `split`, any
    seeds); the tables show mean ± std over seeds and paired differences use `eval_config`'s
    bootstrap settings. `dataset_dir` is recorded in the report header when given."""
    if "run_dir" not in runs:
        raise UserError("experiment_report: the runs table needs a run_dir column")
    rows = collect_runs(runs["run_dir"], split)
    _check_one_run_per_seed(rows)
    title = "Experiment report" + (f" ({Path(dataset_dir).name})" if dataset_dir else "")
    result = write_report(rows, out_dir, split, title=title, eval_config=eval_config)
    result["levels"] = append_level_comparison(rows, out_dir, split)  # crop datasets: scores per level
    return result
