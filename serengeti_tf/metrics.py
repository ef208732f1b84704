"""The one definition of every classification score: selection, early stopping, tau sweeps, evaluate, compare.

All scores come from a confusion matrix over ALL classes of the class map (rows = true class,
columns = predicted class), with scikit-learn's `zero_division=0` convention:

- precision_c = tp / predicted (0 when class c is never predicted),
- recall_c = tp / support (0 when class c is absent from the labels),
- F1_c = 2 tp / (support + predicted) (0 when both are 0).

`macro_*` (the HEADLINE, and the score that selects checkpoints and tau) averages over all C classes,
i.e. sklearn's `labels=range(C)`. `macro_*_present` averages over the classes present in the labels.
A class absent from the labels always has F1 0 (it has no true positives), so for one label set the
two macro F1s differ by the constant factor C / C_present and rank models, epochs and taus the same
way; the point of fixing `labels` is that the number no longer depends on what the model predicts
(sklearn without `labels=` averages over the classes in labels OR predictions, so predicting a class
absent from validation changed the divisor from epoch to epoch).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

# The score `callbacks.EpochRecorder` maximises (checkpoint selection, early stopping) and the
# tau sweeps of `rebalancing` maximise; written to metrics.json as `checkpoint_selection`.
SELECTION_METRIC = "macro_f1"
SELECTION_DESCRIPTION = ("validation macro F1 over all classes of the class map (metrics.macro_f1: "
                         "labels=range(C), zero_division=0)")


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                     weights: Optional[np.ndarray] = None) -> np.ndarray:
    """C x C matrix, rows = true class, columns = predicted class (optionally weighted counts)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    flat = np.bincount(y_true * num_classes + y_pred, weights=weights, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support with zero_division=0 (sklearn's convention).

    Works on one matrix [C, C] or a stack [..., C, C] (the bootstrap scores many at once).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)
    support = cm.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(cm: np.ndarray) -> np.ndarray | float:
    """Headline macro F1 (all classes) of one matrix or a stack of matrices."""
    f1 = scores_from_confusion(cm)["f1"].mean(axis=-1)
    return float(f1) if np.ndim(f1) == 0 else f1


def accuracy(cm: np.ndarray) -> np.ndarray | float:
    """Top-1 accuracy (trace / total) of one matrix or a stack of matrices (0 for an empty matrix)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum(axis=(-2, -1))
    trace = np.trace(cm, axis1=-2, axis2=-1)
    value = np.where(total > 0, trace / np.where(total > 0, total, 1.0), 0.0)
    return float(value) if np.ndim(value) == 0 else value


def scores_from_counts(cm: np.ndarray) -> dict[str, float]:
    """Every summary score of one confusion matrix (see the module docstring for the definitions).

    Keys: accuracy, macro_{precision,recall,f1} (all classes), macro_{...}_present (classes with
    support > 0), weighted_{precision,recall,f1} (weights = support), balanced_accuracy (sklearn's:
    mean recall over present classes, = macro_recall_present), num_classes_present.
    """
    cm = np.asarray(cm, dtype=np.float64)
    per_class = scores_from_confusion(cm)
    support = per_class["support"]
    present = support > 0
    total = support.sum()
    out: dict[str, float] = {"accuracy": accuracy(cm)}
    for key in ("precision", "recall", "f1"):
        values = per_class[key]
        out[f"macro_{key}"] = float(values.mean())
        out[f"macro_{key}_present"] = float(values[present].mean()) if present.any() else 0.0
        out[f"weighted_{key}"] = float((values * support).sum() / total) if total > 0 else 0.0
    out["balanced_accuracy"] = out["macro_recall_present"]
    out["num_classes_present"] = int(present.sum())
    return out


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """`scores_from_counts` of the predictions (class indices) against the labels, over `num_classes`."""
    return scores_from_counts(confusion_counts(y_true, y_pred, num_classes))
