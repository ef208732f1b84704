"""Evaluation: metrics from predicted probabilities, the paper's per-class table, capture scores and groups.

The functions are pure (arrays in, numbers and tables out) so `experiment` and tests can call them
without a model; the job that predicts a run's model and writes `RUN_DIR/eval/` is
`run_evaluation.evaluate_run`.

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

import logging
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate.bootstrap import bootstrap_ci
from serengeti_tf.metrics import (
    SELECTION_DESCRIPTION,
    classification_scores,
    confusion_counts,
    scores_from_confusion,
)

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
