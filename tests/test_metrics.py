"""metrics.py: one macro F1 for every caller (selection, early stopping, tau sweeps, evaluate, compare)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from serengeti_tf import config as cfg
from serengeti_tf import metrics
from serengeti_tf.evaluate import bootstrap
from serengeti_tf.evaluate import evaluation as ev
from serengeti_tf.train import callbacks, rebalancing

NAMES = ["aardvark", "buffalo", "cheetah", "dikdik", "eland"]
TRAIN = {name: 100 for name in NAMES}
# Validation labels: eland (4) is absent (all its captures went to train/test), dikdik (3) too.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
# Two "epochs": the second sometimes predicts eland, absent from val.
EPOCH_A = np.array([0, 0, 0, 1, 1, 1, 0, 2, 1])
EPOCH_B = np.array([0, 0, 0, 4, 1, 1, 4, 2, 1])


def logits_for(pred: np.ndarray, num_classes: int = len(NAMES)) -> np.ndarray:
    return np.eye(num_classes)[pred] * 5.0


def every_call_site(labels: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Macro F1 of the same predictions through each caller."""
    logits = logits_for(pred)
    _, sweep = rebalancing.sweep_tau(logits, labels, np.ones(len(NAMES)), taus=[0.0])
    prob = ev.softmax(logits)
    evaluated = ev.compute_metrics(labels, prob, NAMES, TRAIN, cfg.EvalConfig(bootstrap_samples=0))
    paired = bootstrap.paired_bootstrap(labels, pred, pred, len(NAMES), samples=0, seed=0)
    return {"selection (callbacks)": callbacks.classification_metrics(logits, labels)["val_macro_f1"],
            "tau sweep (rebalancing)": float(sweep["macro_f1"].iloc[0]),
            "evaluate": evaluated["macro_f1"],
            "compare (paired bootstrap)": paired["macro_f1"]["new"],
            "metrics": metrics.classification_scores(labels, pred, len(NAMES))["macro_f1"]}


@pytest.mark.parametrize("pred", [EPOCH_A, EPOCH_B], ids=["no-absent-class-predicted", "absent-class-predicted"])
def test_every_call_site_returns_the_same_macro_f1(pred):
    values = every_call_site(LABELS, pred)
    expected = f1_score(LABELS, pred, labels=range(len(NAMES)), average="macro", zero_division=0)
    for site, value in values.items():
        assert value == pytest.approx(expected, abs=1e-12), site


def test_predicting_an_absent_class_is_not_a_different_divisor():
    """sklearn without labels= averages over classes in labels OR predictions: predicting eland
    (absent from val) used to add a 0 to the average only in that epoch. With explicit labels both
    epochs are averaged over the same five classes, so the selection score of an epoch only changes
    through its own right and wrong predictions."""
    plain = f1_score(LABELS, EPOCH_B, average="macro", zero_division=0)
    fixed = callbacks.classification_metrics(logits_for(EPOCH_B), LABELS)["val_macro_f1"]
    assert plain != pytest.approx(fixed)
    # Per present class, eland's predictions only cost recall of buffalo (row 3) and aardvark (row 6).
    per_class = metrics.scores_from_confusion(metrics.confusion_counts(LABELS, EPOCH_B, 5))["f1"]
    assert fixed == pytest.approx(per_class.sum() / 5)


def test_present_variant_and_weighted_match_sklearn():
    scores = metrics.classification_scores(LABELS, EPOCH_B, len(NAMES))
    present = np.unique(LABELS)
    p, r, f, _ = precision_recall_fscore_support(LABELS, EPOCH_B, labels=present, average="macro", zero_division=0)
    assert (scores["macro_precision_present"], scores["macro_recall_present"], scores["macro_f1_present"]) == \
        pytest.approx((p, r, f))
    p, r, f, _ = precision_recall_fscore_support(LABELS, EPOCH_B, labels=range(5), average="weighted", zero_division=0)
    assert (scores["weighted_precision"], scores["weighted_recall"], scores["weighted_f1"]) == pytest.approx((p, r, f))
    assert scores["num_classes_present"] == 3
    # Absent classes add 0 to the all-class average: the two rank epochs the same way.
    assert scores["macro_f1"] == pytest.approx(scores["macro_f1_present"] * 3 / 5)


def test_stacked_confusion_matrices_score_like_single_ones():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 5, (4, 5, 5)).astype(float)
    stack[1, 2] = 0  # an absent class
    np.testing.assert_allclose(metrics.macro_f1(stack), [metrics.macro_f1(cm) for cm in stack])
    np.testing.assert_allclose(metrics.accuracy(stack), [metrics.accuracy(cm) for cm in stack])
    assert metrics.accuracy(np.zeros((3, 3))) == 0.0


def test_evaluation_names_the_selection_metric():
    prob = ev.softmax(logits_for(EPOCH_A))
    m = ev.compute_metrics(LABELS, prob, NAMES, TRAIN, cfg.EvalConfig(bootstrap_samples=0))
    assert m["checkpoint_selection"] == metrics.SELECTION_DESCRIPTION
    assert "all classes of the class map" in m["checkpoint_selection"]
