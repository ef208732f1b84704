"""Evaluation: metrics from predicted probabilities, the paper's per-class table, and `evaluate_run`.

The metric functions are pure (arrays in, numbers and tables out) so `experiment` and tests can call
them without a model. `evaluate_run` is the one function that touches files: it predicts a run's
model on a prepared split and writes everything to `RUN_DIR/eval/` (`eval_<split>/` for val/train).

Conventions (they matter when classes are rare):
- Every score comes from `metrics.py` (the one definition shared with checkpoint selection, early
  stopping, the tau sweeps and `compare`): precision/recall/F1 per class of the class map with
  `zero_division=0`. A class never predicted gets precision 0 (0/0); a class absent from the
  evaluated split gets recall 0 (0/0), F1 0 and precision 0. The HEADLINE `macro_*` values average
  over ALL C classes (sklearn's `labels=range(C)`; the paper's 52 classes are all present in its
  test split, where both agree) and `macro_f1` is also what selects checkpoints (on val).
  `macro_*_present` average over the classes present in the evaluated split only; `classes_absent`
  lists the others.
- `balanced_accuracy` is sklearn's definition: mean recall over the classes present in y_true
  (equal to `macro_recall_present`).
- Intervals (`bootstrap.bootstrap_ci`, `metrics.json` key `bootstrap`): a stratified capture
  bootstrap with plain percentile intervals for accuracy and for `macro_f1_well_tested` (macro F1
  over the species with >= 10 test captures, which it names), and a Clopper-Pearson interval on
  every present species' recall (`per_class.csv` columns `recall_ci_low`, `recall_ci_high`,
  `test_captures`). The headline all-class `macro_f1` has no interval. Captures are resampled
  within each species (frames of one capture are near-duplicates), images when capture ids are
  unknown; `bootstrap.unit`, `bootstrap.method` and `bootstrap.estimands` say which and for what.
- Capture-level scores: the frames' probabilities are averaged per capture; the capture's true
  label is the majority frame label (ties: lowest class index).
- Class groups by TRAIN count: head >= eval.head_min, tail < eval.tail_max, medium in between; unset
  thresholds are derived from the train counts (`group_thresholds`: tertiles). Group means are over
  the group's classes present in the split; absent ones are listed, not scored as F1 = 0.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from serengeti_tf import config as cfg
from serengeti_tf import io_utils
from serengeti_tf.data import dataset as ds
from serengeti_tf.data.class_map import require_same_classes
from serengeti_tf.data.sampling import sampling_plan
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate.bootstrap import SINGLE_SCHEME as BOOTSTRAP_SCHEME
from serengeti_tf.evaluate.bootstrap import bootstrap_ci
from serengeti_tf.evaluate.run_reader import read_lineage, resolve_dataset_dir, run_class_names
from serengeti_tf.metrics import (
    SELECTION_DESCRIPTION,
    classification_scores,
    confusion_counts,
    scores_from_confusion,
)
from serengeti_tf.models.inference import predict_dataset
from serengeti_tf.plots import plot_confusion
from serengeti_tf.run_folder import CONFIG, MODEL, EvalFolder, Lineage, OutputJob, RunFolder

log = logging.getLogger(__name__)

PER_CLASS_COLUMNS = ["species", "precision", "recall", "f1", "count_train", "count_test"]
MACRO_ROW = "Macro"  # last row of the paper's Table 4 (macro averages, total counts)
GROUPS = ("head", "medium", "tail")


# ----------------------------------------------------------------------------------------------
# Input checks and small array helpers
# ----------------------------------------------------------------------------------------------

def check_inputs(y_true: Sequence[int], y_prob: np.ndarray,
                 class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validates labels and probabilities; returns them as int64 [N] and float64 [N, C] arrays."""
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    num_classes = len(class_names)
    if y_prob.ndim != 2 or y_prob.shape[1] != num_classes:
        raise UserError(f"evaluation: probabilities must have shape [N, {num_classes}] "
                        f"(one column per class), got {tuple(y_prob.shape)}")
    if y_true.ndim != 1 or len(y_true) != len(y_prob):
        raise UserError(f"evaluation: need one label per row of probabilities, got {y_true.shape} labels "
                        f"for {len(y_prob)} rows")
    if len(y_true) == 0:
        raise UserError("evaluation: no examples to evaluate (the split is empty)")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise UserError(f"evaluation: labels must be integer class indices, got dtype {y_true.dtype}")
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise UserError(f"evaluation: labels must be in [0, {num_classes - 1}], "
                        f"got range [{y_true.min()}, {y_true.max()}]")
    return y_true.astype(np.int64), y_prob


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (the models output logits), numerically stable."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def top_k_indices(y_prob: np.ndarray, k: int) -> np.ndarray:
    """[N, k] class indices by descending probability (ties: lower index first)."""
    k = min(k, y_prob.shape[1])
    return np.argsort(-y_prob, axis=1, kind="stable")[:, :k]


def top_k_frame(y_prob: np.ndarray, class_names: Sequence[str], k: int) -> pd.DataFrame:
    """Columns top1_species, top1_prob, ..., topk_species, topk_prob (shared with `predict`)."""
    idx = top_k_indices(y_prob, k)
    names = np.asarray(class_names, dtype=object)
    columns: dict[str, Any] = {}
    for j in range(idx.shape[1]):
        columns[f"top{j + 1}_species"] = names[idx[:, j]]
        columns[f"top{j + 1}_prob"] = np.round(np.take_along_axis(y_prob, idx[:, j:j + 1], axis=1)[:, 0], 6)
    return pd.DataFrame(columns)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def check_top_k(top_k: int, num_classes: int) -> None:
    """Refuses a k above the number of classes: top-k accuracy would be 1.0 by construction. The
    default k is the exception: on a dataset with fewer classes it is shown as k = classes."""
    if top_k > num_classes and top_k != cfg.EvalConfig().top_k:
        raise UserError(f"{setting('top_k')} / eval.top_k is {top_k} but the model has {num_classes} classes; top-k "
                        f"accuracy would be 1.0 by construction: choose k <= {num_classes}")


def summary_scores(y_true: np.ndarray, y_prob: np.ndarray, num_classes: int, top_k: int) -> dict[str, Any]:
    """Accuracy, top-k accuracy and every `metrics.scores_from_counts` score (macro/weighted P/R/F1
    over all classes and over present classes, balanced accuracy)."""
    y_pred = y_prob.argmax(axis=1)
    out: dict[str, Any] = {"num_examples": int(len(y_true)), **classification_scores(y_true, y_pred, num_classes)}
    k = min(top_k, num_classes)
    out["top_k"] = int(k)
    out["top_k_accuracy"] = float(np.mean((top_k_indices(y_prob, k) == y_true[:, None]).any(axis=1)))
    return out


def group_thresholds(train_counts: Sequence[int], head_min: Optional[int] = None,
                     tail_max: Optional[int] = None) -> tuple[int, int, str]:
    """(head_min, tail_max, rule in words): the user's thresholds, else derived from the train counts.

    The rule, fixed before any benchmark: TERTILES of the classes' training counts (every class of
    the class map counts once). tail = the lowest third (train count <= the lower tertile, numpy
    quantile 1/3 "lower"), head = the highest third (>= the upper tertile, quantile 2/3 "higher").
    Why: groups then follow the user's own imbalance (fixed thresholds made almost every class of a
    small dataset "tail") and each group holds about a third of the species, enough to average.
    A threshold the user gives is kept; only the missing one is derived (never crossing the other).
    """
    counts = np.sort(np.asarray([int(c) for c in train_counts], dtype=np.int64))
    if len(counts) == 0:
        raise UserError("evaluation: no classes to group")
    derived_tail = int(np.quantile(counts, 1 / 3, method="lower")) + 1
    derived_head = int(np.quantile(counts, 2 / 3, method="higher"))
    if head_min is not None and tail_max is not None:
        if tail_max > head_min:
            raise UserError(f"evaluation: tail_max ({tail_max}) must not exceed head_min ({head_min})")
        return int(head_min), int(tail_max), (f"given: head >= {head_min}, tail < {tail_max} training images "
                                              "(eval.head_min, eval.tail_max)")
    head = int(head_min) if head_min is not None else max(derived_head, int(tail_max or 1))
    tail = int(tail_max) if tail_max is not None else min(derived_tail, head)
    tail = min(tail, head)
    given = [name for name, v in (("eval.head_min", head_min), ("eval.tail_max", tail_max)) if v is not None]
    return head, tail, (f"tertiles of the {len(counts)} classes' training counts: head >= {head}, tail < {tail} "
                        f"training images" + (f" ({', '.join(given)} given)" if given else ""))


def class_groups(class_names: Sequence[str], train_counts: Mapping[str, int], head_min: Optional[int] = None,
                 tail_max: Optional[int] = None) -> dict[str, list[int]]:
    """Class indices per group: head (train >= head_min), medium, tail (train < tail_max); a missing
    threshold is derived from the train counts (`group_thresholds`)."""
    counts = [int(train_counts.get(name, 0)) for name in class_names]
    head_min, tail_max, _ = group_thresholds(counts, head_min, tail_max)
    groups: dict[str, list[int]] = {g: [] for g in GROUPS}
    for i, n in enumerate(counts):
        groups["head" if n >= head_min else "tail" if n < tail_max else "medium"].append(i)
    return groups


def group_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                train_counts: Mapping[str, int], head_min: Optional[int] = None,
                tail_max: Optional[int] = None) -> pd.DataFrame:
    """One row per group: its classes, test images, accuracy on them and the mean per-class P/R/F1.

    Means are over the group's classes PRESENT in the evaluated split (a class without test images
    has no F1 to average; counting it as 0 made a group look worse for lack of data); the absent ones
    are listed in `classes_absent`. Per-class scores come from the all-class confusion matrix, so a
    tail image predicted as a head class lowers the tail recall AND the head precision.
    """
    num_classes = len(class_names)
    head_min, tail_max, rule = group_thresholds([int(train_counts.get(n, 0)) for n in class_names],
                                                head_min, tail_max)
    per_class = scores_from_confusion(confusion_counts(y_true, y_pred, num_classes))
    present = np.bincount(y_true, minlength=num_classes) > 0
    rows = []
    bounds = {"head": (head_min, None), "medium": (tail_max, head_min - 1), "tail": (0, tail_max - 1)}
    for group, members in class_groups(class_names, train_counts, head_min, tail_max).items():
        mask = np.isin(y_true, members)
        scored = [i for i in members if present[i]]

        def mean(scores: np.ndarray, scored=scored) -> float:
            return float(np.mean(scores[scored])) if scored else float("nan")

        rows.append({
            "group": group, "min_train": bounds[group][0], "max_train": bounds[group][1],
            "num_classes": len(members), "num_classes_present": len(scored), "num_test_images": int(mask.sum()),
            "accuracy": float(np.mean(y_pred[mask] == y_true[mask])) if mask.any() else float("nan"),
            "macro_precision": mean(per_class["precision"]), "macro_recall": mean(per_class["recall"]),
            "macro_f1": mean(per_class["f1"]),
            "classes": " ".join(class_names[i] for i in members),
            "classes_absent": " ".join(class_names[i] for i in members if not present[i]),
            "rule": rule,
        })
    table = pd.DataFrame(rows)
    table["max_train"] = pd.Series([r["max_train"] for r in rows], dtype=object)  # ints, None = no bound
    return table


def aggregate_captures(y_prob: np.ndarray, capture_ids: Sequence[str],
                       y_true: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Averages frame probabilities per capture (in first-seen order).

    Returns `capture_ids` [M], `probs` [M, C], `num_frames` [M] and, when labels are given,
    `labels` [M] (majority frame label, ties to the lowest class index).
    """
    ids = np.asarray(capture_ids, dtype=str)
    if len(ids) != len(y_prob):
        raise UserError(f"evaluation: need one capture id per image, got {len(ids)} for {len(y_prob)} images")
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep the order captures first appear in
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    index = rank[inverse]
    num = len(unique)
    sums = np.zeros((num, y_prob.shape[1]))
    np.add.at(sums, index, y_prob)
    frames = np.bincount(index, minlength=num)
    out: dict[str, Any] = {"capture_ids": unique[order], "probs": sums / frames[:, None], "num_frames": frames}
    if y_true is not None:
        votes = np.zeros((num, y_prob.shape[1]), dtype=np.int64)
        np.add.at(votes, (index, np.asarray(y_true)), 1)
        out["labels"] = votes.argmax(axis=1)
    return out


def compute_metrics(y_true: Sequence[int], y_prob: np.ndarray, class_names: Sequence[str],
                    train_counts: Mapping[str, int], config: cfg.EvalConfig,
                    capture_ids: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """All summary metrics of one evaluation as a JSON-ready dict.

    `y_prob` holds probabilities (softmax of the logits), one column per class in `class_names`
    order. With `capture_ids`, adds capture-level scores and bootstraps over captures.
    Keys: the `summary_scores` keys at image level, `headline`, `classes_absent`,
    `classes_never_predicted`, `groups` (per group dict), `bootstrap`, `capture_level` (or None).
    """
    y_true, y_prob = check_inputs(y_true, y_prob, class_names)
    num_classes = len(class_names)
    y_pred = y_prob.argmax(axis=1)
    metrics = summary_scores(y_true, y_prob, num_classes, config.top_k)
    metrics["num_classes"] = num_classes
    metrics["headline"] = ("macro_* average over all classes of the class map (sklearn labels=range(C), "
                           "zero_division=0); macro_*_present over the classes present in this split")
    metrics["checkpoint_selection"] = SELECTION_DESCRIPTION
    metrics["classes_absent"] = [class_names[i] for i in range(num_classes) if not np.any(y_true == i)]
    metrics["classes_never_predicted"] = [class_names[i] for i in range(num_classes) if not np.any(y_pred == i)]
    groups = group_table(y_true, y_pred, class_names, train_counts, config.head_min, config.tail_max)
    metrics["groups"] = {row["group"]: {k: v for k, v in row.items() if k not in ("group", "classes", "rule")}
                         for row in groups.to_dict("records")}
    metrics["group_rule"] = groups["rule"].iloc[0]
    metrics["bootstrap"] = interval_record(bootstrap_ci(y_true, y_pred, num_classes, config.bootstrap_samples,
                                                        config.seed, groups=capture_ids), class_names)
    metrics["capture_level"] = None
    if capture_ids is not None:
        captures = aggregate_captures(y_prob, capture_ids, y_true)
        capture_scores = summary_scores(captures["labels"], captures["probs"], num_classes, config.top_k)
        metrics["capture_level"] = capture_scores
    return _json_ready(metrics)


def interval_record(boot: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """`bootstrap_ci`'s result for metrics.json: species by name, recall intervals of present species only."""
    if not boot.get("unit"):
        return dict(boot)
    names = np.asarray(class_names, dtype=object)
    macro = boot["macro_f1_well_tested"]
    recall = boot["recall"]
    present = np.flatnonzero(recall["units"] > 0)
    return {**{k: v for k, v in boot.items() if k not in ("macro_f1_well_tested", "recall")},
            "macro_f1_well_tested": {"estimate": macro["estimate"], "ci": macro["ci"],
                                     "min_captures": macro["min_captures"], "num_species": macro["num_classes"],
                                     "species": [str(names[i]) for i in macro["classes"]]},
            "recall": {"method": recall["method"], "estimand": recall["estimand"],
                       "species": [str(names[i]) for i in present],
                       "test_captures": [int(n) for n in recall["units"][present]],
                       "recall": [round(float(v), 6) for v in recall["recall"][present]],
                       "ci_low": [round(float(v), 6) for v in recall["ci_low"][present]],
                       "ci_high": [round(float(v), 6) for v in recall["ci_high"][present]]}}


def with_recall_intervals(table: pd.DataFrame, boot: Optional[Mapping[str, Any]]) -> pd.DataFrame:
    """per_class.csv gains `test_captures`, `recall_ci_low`, `recall_ci_high` (Clopper-Pearson, see
    `bootstrap.py`) and `in_macro_f1_interval` (the species counts in `macro_f1_well_tested`)."""
    if not boot or not boot.get("recall"):
        return table
    recall = boot["recall"]
    by_name = {name: i for i, name in enumerate(recall["species"])}
    rows = [by_name.get(name) for name in table["species"]]

    def column(key: str) -> list:
        return [recall[key][i] if i is not None else None for i in rows]

    well_tested = set(boot["macro_f1_well_tested"]["species"])
    return table.assign(test_captures=pd.array(column("test_captures"), dtype="Int64"), recall_ci_low=column("ci_low"),
                        recall_ci_high=column("ci_high"),
                        in_macro_f1_interval=[None if name == MACRO_ROW else name in well_tested
                                              for name in table["species"]])


def _json_ready(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ----------------------------------------------------------------------------------------------
# Tables and figures
# ----------------------------------------------------------------------------------------------

def class_order(class_names: Sequence[str], train_counts: Mapping[str, int]) -> list[int]:
    """Class indices by train count, descending (ties by name): the paper's table and figure order."""
    return sorted(range(len(class_names)), key=lambda i: (-int(train_counts.get(class_names[i], 0)), class_names[i]))


def per_class_table(y_true: Sequence[int], y_prob: np.ndarray, class_names: Sequence[str],
                    train_counts: Mapping[str, int], macro_row: bool = True,
                    phase1_counts: Optional[Mapping[str, int]] = None) -> pd.DataFrame:
    """The paper's Table 4: species, precision, recall, f1, count_train, count_test.

    Rows sorted by train count (descending); `count_test` is the number of evaluated images of the
    class. With `macro_row`, a last row `Macro` holds the macro averages over all classes and the
    total counts, as printed in the paper. `phase1_counts` (images per epoch of the phase-1
    sampler) adds a `count_train_phase1` column, the count Tables 5 and 6 print.
    """
    y_true, y_prob = check_inputs(y_true, y_prob, class_names)
    num_classes = len(class_names)
    scores = scores_from_confusion(confusion_counts(y_true, y_prob.argmax(axis=1), num_classes))
    rows = [{"species": class_names[i], "precision": scores["precision"][i], "recall": scores["recall"][i],
             "f1": scores["f1"][i], "count_train": int(train_counts.get(class_names[i], 0)),
             "count_test": int(scores["support"][i])} for i in class_order(class_names, train_counts)]
    table = pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)
    if phase1_counts is not None:
        table["count_train_phase1"] = [int(phase1_counts.get(name, 0)) for name in table["species"]]
    if macro_row:
        table.loc[len(table)] = [MACRO_ROW, scores["precision"].mean(), scores["recall"].mean(),
                                 scores["f1"].mean(), int(table["count_train"].sum()),
                                 int(table["count_test"].sum())] + \
            ([int(table["count_train_phase1"].sum())] if phase1_counts is not None else [])
    return table.round({"precision": 4, "recall": 4, "f1": 4})


def confusion_frame(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str],
                    order: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Confusion counts as a labelled frame: rows true, columns predicted, in `order` (default: index)."""
    num_classes = len(class_names)
    cm = confusion_counts(np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64), num_classes)
    order = list(order) if order is not None else list(range(num_classes))
    names = [class_names[i] for i in order]
    frame = pd.DataFrame(cm[np.ix_(order, order)].astype(np.int64), index=names, columns=names)
    frame.index.name = "true\\predicted"
    return frame


def predictions_frame(paths: Sequence[str], capture_ids: Sequence[str], y_true: np.ndarray, y_prob: np.ndarray,
                      class_names: Sequence[str], top_k: int) -> pd.DataFrame:
    """predictions.csv: path, capture_id, true, predicted, confidence, correct, top-k species/probs."""
    names = np.asarray(class_names, dtype=object)
    y_pred = y_prob.argmax(axis=1)
    head = pd.DataFrame({"path": list(paths), "capture_id": list(capture_ids), "true": names[y_true],
                         "predicted": names[y_pred], "confidence": np.round(y_prob.max(axis=1), 6),
                         "correct": y_pred == y_true})
    return pd.concat([head, top_k_frame(y_prob, class_names, top_k)], axis=1)


def captures_frame(y_true: np.ndarray, y_prob: np.ndarray, capture_ids: Sequence[str],
                   class_names: Sequence[str], top_k: int) -> pd.DataFrame:
    """captures.csv: capture_id, num_frames, true (majority), predicted (mean probs), top-k."""
    names = np.asarray(class_names, dtype=object)
    captures = aggregate_captures(y_prob, capture_ids, y_true)
    pred = captures["probs"].argmax(axis=1)
    head = pd.DataFrame({"capture_id": captures["capture_ids"], "num_frames": captures["num_frames"],
                         "true": names[captures["labels"]], "predicted": names[pred],
                         "confidence": np.round(captures["probs"].max(axis=1), 6),
                         "correct": pred == captures["labels"]})
    return pd.concat([head, top_k_frame(captures["probs"], class_names, top_k)], axis=1)


def summary_text(metrics: Mapping[str, Any], title: str = "") -> str:
    """A short fixed-width table of the headline numbers (with CIs and capture level when present)."""
    boot = metrics.get("bootstrap") or {}
    capture = metrics.get("capture_level") or {}
    well = boot.get("macro_f1_well_tested") or {}

    def ci(interval) -> str:
        return f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""

    rows = [("accuracy (top-1)", metrics["accuracy"], ci(boot.get("accuracy")), capture.get("accuracy")),
            (f"top-{metrics['top_k']} accuracy", metrics["top_k_accuracy"], "", capture.get("top_k_accuracy")),
            ("macro F1 (all classes)", metrics["macro_f1"], "", capture.get("macro_f1")),
            ("macro precision", metrics["macro_precision"], "", capture.get("macro_precision")),
            ("macro recall", metrics["macro_recall"], "", capture.get("macro_recall")),
            ("macro F1 (present classes)", metrics["macro_f1_present"], "", capture.get("macro_f1_present")),
            ("weighted F1", metrics["weighted_f1"], "", capture.get("weighted_f1")),
            ("balanced accuracy", metrics["balanced_accuracy"], "", capture.get("balanced_accuracy"))]
    if well.get("estimate") is not None:
        rows.insert(3, (f"macro F1 ({well['num_species']} sp. >= {well['min_captures']} capt.)",
                        well["estimate"], ci(well.get("ci")), None))
    ci_head = f"{int(boot.get('level', 0.95) * 100)}% CI ({boot.get('unit')}s)" if boot.get("unit") else ""
    lines = [title] if title else []
    lines.append(f"{'metric':<28} {'images':>8} {ci_head:>24} {'captures':>9}")
    for name, value, interval, cap in rows:
        cap_text = f"{cap:.4f}" if cap is not None else "-"
        lines.append(f"{name:<28} {value:>8.4f} {interval:>24} {cap_text:>9}")
    recall = boot.get("recall") or {}
    if recall:
        few = [n for n in recall["test_captures"] if n < well.get("min_captures", 0)]
        lines.append(f"CIs: {boot.get('unit')} bootstrap (percentile) for accuracy and the macro F1 of species with "
                     f">= {well.get('min_captures')} test {boot.get('unit')}s; none for the all-class macro F1.")
        lines.append(f"Recall of each species ({len(few)} with fewer {boot.get('unit')}s): {recall['method']} "
                     f"(per_class.csv recall_ci_low/high).")
    groups = metrics.get("groups") or {}
    if groups:
        lines.append("")
        lines.append(f"{'group (train count)':<28} {'classes':>8} {'images':>8} {'acc':>8} {'macroF1':>8}")
        for name, g in groups.items():
            lo, hi = g["min_train"], g["max_train"]
            span = f"{name} ({lo}+)" if hi is None else f"{name} ({lo}-{hi})"
            acc = "-" if g["accuracy"] is None else f"{g['accuracy']:.4f}"
            f1 = "-" if g["macro_f1"] is None else f"{g['macro_f1']:.4f}"
            lines.append(f"{span:<28} {g['num_classes']:>8} {g['num_test_images']:>8} {acc:>8} {f1:>8}")
            if g.get("classes_absent"):
                lines.append(f"  {name}: not in this split, left out of its means: {g['classes_absent']}")
        if metrics.get("group_rule"):
            lines.append(f"groups: {metrics['group_rule']}")
    if metrics.get("classes_absent"):
        lines.append(f"classes absent from the split (recall counted as 0 in macro_*): "
                     f"{', '.join(metrics['classes_absent'])}")
    return "\n".join(lines)


def per_class_text(table: pd.DataFrame) -> str:
    """The per-class table as fixed-width text."""
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def predict_split(model, dataset_dir: Path, split: str, config: cfg.Config,
                  num_images: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Runs the model over a prepared split in stored order; returns (labels [N], probabilities [N, C])."""
    from serengeti_tf.data import pipeline
    batch_size = config.eval.batch_size
    data = pipeline.make_eval_dataset(dataset_dir, split, config, batch_size=batch_size)
    total = math.ceil(num_images / batch_size) if num_images else None
    logits, labels = predict_dataset(model, data, progress=lambda batches: tqdm(
        batches, total=total, desc=f"evaluate {split}", unit="batch"))
    if not len(labels):
        raise UserError(f"evaluation: split '{split}' of {dataset_dir} holds no images")
    return labels, softmax(logits)


# ----------------------------------------------------------------------------------------------
# evaluate_run
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate_run` produced: the evaluation folder, its metrics.json and per_class.csv, and
    whether it was read back from a finished evaluation with the same model and settings."""

    out_dir: Path
    metrics: dict[str, Any]
    per_class: pd.DataFrame
    skipped: bool


def evaluate_run(run_dir: str | Path, config: Optional[cfg.Config] = None, split: Optional[str] = None,
                 dataset_dir: Optional[str | Path] = None, overwrite: bool = False,
                 replace_stale: bool = False) -> EvaluationResult:
    """Evaluates a run's `model.keras` on a prepared split and writes `RUN_DIR/eval[_<split>]/`.

    `replace_stale`: an evaluation folder that serengeti-tf wrote for another model or other eval
    settings (or an older interval) is redone instead of refused; `experiment` passes it, since the
    evaluations inside its runs are derived output that follows the grid's `eval` section.

    `config`: its `eval` section sets top-k, batch size, bootstrap and group thresholds (default:
    the run's own config.yaml); model and data settings always come from the run, so the input
    size matches the trained model. `split` overrides `config.eval.split`. A finished evaluation
    with the same model and settings is not redone (rerun = resume) unless `overwrite`; different
    settings need `overwrite`.

    Writes metrics.json (last, so its presence means complete), per_class.csv (Table 4 layout,
    plus count_train_phase1 = the phase-1 sampler's images per class, as in Tables 5 and 6),
    confusion_matrix.csv/.png, predictions.csv, captures.csv, groups.csv, config.yaml.
    Returns an `EvaluationResult` (`summary_text`, `levels_text` and `per_class_text` render it).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    run = RunFolder(run_dir)
    if not run.model.is_file():
        raise UserError(f"{run_dir}: {MODEL} missing (training not finished?)")
    if not run.config.is_file():
        raise UserError(f"{run_dir}: {CONFIG} missing (not a training run folder?)")
    run_config = cfg.load_saved(run.config)
    if config is not None:
        run_config.eval = dataclasses.replace(config.eval)  # a copy: the caller's config stays as it is
    if split is not None:
        run_config.eval.split = split
    run_config = cfg.validate(run_config)
    split = run_config.eval.split
    lineage = read_lineage(run_dir)
    data_dir = resolve_dataset_dir(run_dir, lineage, dataset_dir)
    names = run_class_names(run_dir)
    require_same_classes(names, f"the run {run_dir}", ds.class_names(data_dir), f"the dataset {data_dir}")
    check_top_k(run_config.eval.top_k, len(names))
    ds.check_shards(data_dir)
    out = run.eval_dir(split)
    eval_settings = cfg.to_dict(run_config)["eval"]
    fingerprint = {"model_sha256": io_utils.file_digest(run.model), "dataset_dir": str(data_dir.resolve()),
                   "split": split, "input_size": run_config.model.input_size,
                   "bootstrap_method": BOOTSTRAP_SCHEME,  # an evaluation with the old interval is not reused
                   **{k: v for k, v in eval_settings.items() if k not in ("batch_size", "split", "scientific_names")}}
    job = OutputJob(out.root, "evaluation", inputs={setting("dataset_dir"): data_dir, "model": run.model},
                    what="evaluation folder", done=out.metrics.name)
    with job:  # one process per evaluation folder
        done = job.claim(fingerprint, overwrite=overwrite or replace_stale)
        if done and not overwrite and job.finished:
            log.info("%s already evaluated with the same model and settings; reading it", out.root)
            return EvaluationResult(out.root, io_utils.read_json(out.metrics),
                                    pd.read_csv(out.per_class, keep_default_na=False), skipped=True)
        return _evaluate(run, out, run_config, lineage, data_dir, names, fingerprint["model_sha256"])


def _evaluate(run: RunFolder, out: EvalFolder, run_config: cfg.Config, lineage: Lineage, data_dir: Path,
              names: list[str], model_sha256: str) -> "EvaluationResult":
    """The evaluation itself, into the claimed and locked `out`; metrics.json is written last."""
    from serengeti_tf.data import pipeline
    from serengeti_tf.evaluate import levels
    from serengeti_tf.models.resnet import load_model

    split = run_config.eval.split
    cfg.save_config(run_config, out.root)
    train_counts = ds.train_counts(data_dir)
    model = load_model(run.model)
    meta = pipeline.split_metadata(data_dir, split)
    labels, probs = predict_split(model, data_dir, split, run_config, num_images=len(meta))
    if len(meta) != len(labels) or not np.array_equal(meta["label"].to_numpy(dtype=np.int64), labels):
        raise UserError(f"{data_dir}: split '{split}' metadata ({len(meta)} rows) does not match the "
                        f"images read ({len(labels)}); the prepared dataset may be incomplete")
    captures = meta["capture_id"].astype(str).to_numpy()
    top_k = run_config.eval.top_k
    metrics = compute_metrics(labels, probs, names, train_counts, run_config.eval, capture_ids=captures)
    metrics.update({"run_dir": str(run.root), "split": split, "dataset_dir": str(data_dir),
                    "model_sha256": model_sha256, **{k: lineage.get(k) for k in Lineage.EVALUATION_KEYS}})
    table = per_class_table(labels, probs, names, train_counts,
                            phase1_counts=phase1_counts(run.root, run_config, lineage, train_counts))
    table = with_recall_intervals(table, metrics["bootstrap"])
    table["level"] = "crop" if levels.is_crop_split(meta) else "image"  # what one counted example is
    order = class_order(names, train_counts)
    confusion = confusion_frame(labels, probs.argmax(axis=1), names, order)
    io_utils.write_csv(out.per_class, table)
    io_utils.write_csv(out.confusion_csv, confusion.reset_index())
    io_utils.save_figure(out.confusion_png, plot_confusion(confusion, f"{run.root.name} ({split}), row-normalised"))
    io_utils.write_csv(out.predictions, levels.with_crop_columns(
        predictions_frame(meta["path"], captures, labels, probs, names, top_k), meta))
    io_utils.write_csv(out.captures, captures_frame(labels, probs, captures, names, top_k))
    io_utils.write_csv(out.groups, group_table(labels, probs.argmax(axis=1), names, train_counts,
                                              run_config.eval.head_min, run_config.eval.tail_max))
    # Crop / image / capture levels (levels.py); for crops it rewrites captures.csv from image level.
    metrics.update(levels.evaluate_levels(out.root, meta, labels, probs, names, train_counts, run_config.eval))
    io_utils.write_json(out.metrics, metrics)  # last: marks the evaluation finished
    return EvaluationResult(out.root, metrics, table, skipped=False)


def phase1_counts(run_dir: Path, run_config: cfg.Config, lineage: Mapping[str, Any],
                  train_counts: Mapping[str, int]) -> Optional[dict[str, int]]:
    """Images per class per epoch of the run's phase-1 sampler (its own, or its init run's for a
    phase-2 run), recomputed from the sampling plan; None when that sampler is unknown."""
    sampler = run_config.sampler
    if int(lineage.get(Lineage.PHASE, 1)) == 2:
        init = RunFolder(Path(str(lineage.get(Lineage.INIT_RUN) or "")))
        if lineage.get(Lineage.INIT_RUN) and init.config.is_file():
            sampler = cfg.load_saved(init.config).sampler
        elif lineage.get(Lineage.SAMPLER) == "none":
            sampler = dataclasses.replace(sampler, name="none")
        else:
            return None
    try:
        plan = sampling_plan(train_counts, sampler)
    except UserError:
        return None
    return dict(zip(plan["species"], plan["target"].astype(int)))

