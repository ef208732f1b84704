"""evaluation.py: metrics against hand-computed confusion matrices, Table 4 layout, bootstrap,
capture aggregation, groups, and `evaluate_run` end to end on a tiny model and dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serengeti_tf import config as cfg
from serengeti_tf import metrics
from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import evaluation as ev
from serengeti_tf.evaluate import run_evaluation
from serengeti_tf.io_utils import write_json
from serengeti_tf.plots import plot_confusion
from serengeti_tf.testing import write_tiny_run
from serengeti_tf_cli.evaluate import summary as evaluation_summary

NAMES = ["aardvark", "buffalo", "cheetah", "dikdik"]
# cheetah (2) is in the test split but never predicted; dikdik (3) is absent from the test split
# but predicted once (a pure false positive).
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 3, 1, 0])
# Confusion matrix (rows true, columns predicted):
#   aardvark [2 1 0 0]   buffalo [0 1 0 1]   cheetah [1 1 0 0]   dikdik [0 0 0 0]
# precision: 2/3, 1/3, 0 (never predicted: 0/0 -> 0), 0 (0/1)
# recall:    2/3, 1/2, 0, 0 (absent: 0/0 -> 0)
# F1:        2/3, 2/5, 0, 0
TRAIN = {"aardvark": 6000, "buffalo": 1000, "cheetah": 100, "dikdik": 50}


def probs_for(pred: np.ndarray, second: np.ndarray, num_classes: int = 4) -> np.ndarray:
    """0.7 on `pred`, 0.2 on `second`, the rest spread evenly."""
    prob = np.full((len(pred), num_classes), 0.1 / (num_classes - 2))
    prob[np.arange(len(pred)), pred] = 0.7
    prob[np.arange(len(pred)), second] = 0.2
    return prob


# Second choices: right for rows 2, 4 and 5 -> top-2 correct on 3 + 3 = 6 of 7 (row 6 stays wrong).
Y_PROB = probs_for(Y_PRED, np.array([1, 1, 0, 0, 1, 2, 1]))


def eval_config(**kw) -> cfg.EvalConfig:
    return cfg.EvalConfig(**{"top_k": 2, "bootstrap_samples": 200, "head_min": 5000, "tail_max": 500, **kw})


def test_metrics_match_hand_computed_confusion_matrix():
    m = ev.compute_metrics(Y_TRUE, Y_PROB, NAMES, TRAIN, eval_config())
    assert m["accuracy"] == pytest.approx(3 / 7)
    assert m["top_k"] == 2 and m["top_k_accuracy"] == pytest.approx(6 / 7)
    # Headline: macro over all 4 classes of the class map.
    assert m["macro_precision"] == pytest.approx((2 / 3 + 1 / 3) / 4)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 / 2) / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 5) / 4)
    # Over the 3 classes present in the split.
    assert m["num_classes_present"] == 3
    assert m["macro_precision_present"] == pytest.approx(1 / 3)
    assert m["macro_recall_present"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert m["macro_f1_present"] == pytest.approx((2 / 3 + 2 / 5) / 3)
    # Weighted by support 3, 2, 2, 0.
    assert m["weighted_precision"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 3) / 7)
    assert m["weighted_recall"] == pytest.approx(3 / 7)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 2 / 5) / 7)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["classes_absent"] == ["dikdik"]
    assert m["classes_never_predicted"] == ["cheetah"]
    json.dumps(m, allow_nan=False)  # strict JSON


def test_balanced_accuracy_is_sklearns_definition():
    from sklearn.metrics import balanced_accuracy_score

    m = ev.compute_metrics(Y_TRUE, Y_PROB, NAMES, TRAIN, eval_config())
    with pytest.warns(UserWarning):  # sklearn warns that dikdik is predicted but absent
        expected = balanced_accuracy_score(Y_TRUE, Y_PRED)
    assert m["balanced_accuracy"] == pytest.approx(expected)


def test_per_class_table_has_the_papers_table4_layout():
    table = ev.per_class_table(Y_TRUE, Y_PROB, NAMES, TRAIN)
    paper = pd.read_csv(Path(__file__).parents[1].parent / "shared" / "paper" / "table4_baseline.csv") \
        if (Path(__file__).parents[1].parent / "shared" / "paper" / "table4_baseline.csv").exists() else None
    assert list(table.columns) == ["species", "precision", "recall", "f1", "count_train", "count_test"]
    if paper is not None:  # same columns as printed (the paper names its train column after phase 1)
        assert [c.replace("_phase1", "") for c in paper.columns] == list(table.columns)
        assert paper["species"].iloc[-1] == table["species"].iloc[-1] == "Macro"
    # Sorted by train count, descending, with the macro row last.
    assert list(table["species"]) == ["aardvark", "buffalo", "cheetah", "dikdik", "Macro"]
    rows = table.set_index("species")
    assert rows.loc["aardvark", "precision"] == pytest.approx(0.6667, abs=1e-4)
    assert rows.loc["buffalo", "f1"] == pytest.approx(0.4)
    assert rows.loc["cheetah", ["precision", "recall", "f1"]].tolist() == [0, 0, 0]
    assert rows.loc["dikdik", "count_test"] == 0 and rows.loc["dikdik", "count_train"] == 50
    assert rows.loc["Macro", "f1"] == pytest.approx(round((2 / 3 + 2 / 5) / 4, 4))
    assert rows.loc["Macro", "count_test"] == 7 and rows.loc["Macro", "count_train"] == 7150


def test_per_class_table_order_follows_train_counts_not_names():
    counts = {"aardvark": 1, "buffalo": 50, "cheetah": 50, "dikdik": 9}
    table = ev.per_class_table(Y_TRUE, Y_PROB, NAMES, counts, macro_row=False)
    assert list(table["species"]) == ["buffalo", "cheetah", "dikdik", "aardvark"]


def test_confusion_frame_and_heatmap(tmp_path):
    frame = ev.confusion_frame(Y_TRUE, Y_PRED, NAMES)
    assert frame.to_numpy().tolist() == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    reordered = ev.confusion_frame(Y_TRUE, Y_PRED, NAMES, order=[1, 0, 2, 3])
    assert reordered.loc["buffalo", "dikdik"] == 1 and list(reordered.index)[0] == "buffalo"
    from serengeti_tf.io_utils import save_figure

    save_figure(tmp_path / "cm.png", plot_confusion(frame))
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_groups_use_train_counts_and_thresholds():
    table = ev.group_table(Y_TRUE, Y_PRED, NAMES, TRAIN, head_min=5000, tail_max=500).set_index("group")
    assert table.loc["head", "classes"] == "aardvark"
    assert table.loc["medium", "classes"] == "buffalo"
    assert table.loc["tail", "classes"] == "cheetah dikdik"
    assert table.loc["head", "accuracy"] == pytest.approx(2 / 3)
    assert table.loc["tail", "num_test_images"] == 2 and table.loc["tail", "accuracy"] == 0
    assert table.loc["medium", "macro_f1"] == pytest.approx(0.4)
    moved = ev.group_table(Y_TRUE, Y_PRED, NAMES, TRAIN, head_min=1000, tail_max=100).set_index("group")
    assert moved.loc["head", "classes"] == "aardvark buffalo" and moved.loc["tail", "classes"] == "dikdik"
    with pytest.raises(UserError, match="tail_max"):
        ev.class_groups(NAMES, TRAIN, head_min=100, tail_max=500)


def test_capture_aggregation_averages_frame_probabilities():
    prob = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    # Capture "a": frames say 0 (0.9) and 1 (0.8): mean [0.55, 0.45] -> class 0.
    out = ev.aggregate_captures(prob, ["a", "a", "b", "b"], np.array([0, 0, 1, 0]))
    assert list(out["capture_ids"]) == ["a", "b"]
    np.testing.assert_allclose(out["probs"], [[0.55, 0.45], [0.45, 0.55]])
    assert out["num_frames"].tolist() == [2, 2]
    assert out["labels"].tolist() == [0, 0]  # b: one vote each -> tie goes to the lower index
    frame = ev.captures_frame(np.array([0, 0, 1, 0]), prob, ["a", "a", "b", "b"], ["x", "y"], top_k=2)
    assert frame["predicted"].tolist() == ["x", "y"] and frame["correct"].tolist() == [True, False]
    assert frame["top2_species"].tolist() == ["y", "x"]


def test_capture_level_scores_in_metrics():
    m = ev.compute_metrics(Y_TRUE, Y_PROB, NAMES, TRAIN, eval_config(),
                           capture_ids=["c0", "c0", "c1", "c2", "c2", "c3", "c3"])
    capture = m["capture_level"]
    assert capture["num_examples"] == 4
    # c0: aardvark x2 -> right; c1: aardvark predicted buffalo -> wrong; c2: buffalo frames
    # [.2 .7 .05 .05] and [.05 .2 .05 .7] average to buffalo 0.45 -> right, although one frame alone
    # says dikdik; c3: cheetah frames average to buffalo 0.45, aardvark 0.375 -> wrong.
    assert capture["accuracy"] == pytest.approx(2 / 4)
    assert m["bootstrap"]["unit"] == "capture" and m["bootstrap"]["num_units"] == 4


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 400)
    y_pred = np.where(rng.random(400) < 0.7, y_true, rng.integers(0, 4, 400))
    prob = np.eye(4)[y_pred] * 0.9 + 0.025
    m = ev.compute_metrics(y_true, prob, NAMES, TRAIN, eval_config(bootstrap_samples=300))
    boot = m["bootstrap"]
    assert boot["unit"] == "image" and boot["samples"] == 300
    well = boot["macro_f1_well_tested"]  # every species has ~100 images: all four are in it
    assert well["species"] == NAMES and well["estimate"] == pytest.approx(m["macro_f1"])
    assert "macro_f1" not in boot  # the all-class macro F1 has no interval
    for (lo, hi), point in ((boot["accuracy"], m["accuracy"]), (well["ci"], well["estimate"])):
        assert lo < point < hi
        assert hi - lo < 0.2  # 400 images: a few points wide, not the whole [0, 1]
    recall = boot["recall"]
    assert recall["species"] == NAMES and recall["method"].startswith("Clopper-Pearson")
    assert all(lo < r < hi for lo, r, hi in zip(recall["ci_low"], recall["recall"], recall["ci_high"]))
    json.dumps(m, allow_nan=False)  # strict JSON for metrics.json
    again = ev.compute_metrics(y_true, prob, NAMES, TRAIN, eval_config(bootstrap_samples=300))
    assert again["bootstrap"] == boot  # seeded
    assert ev.compute_metrics(y_true, prob, NAMES, TRAIN, eval_config(bootstrap_samples=0))["bootstrap"]["unit"] is None


def test_bootstrap_weighted_matrix_equals_sklearn_on_a_resample():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    draws = rng.integers(0, 50, 50)
    weights = np.bincount(draws, minlength=50).astype(float)
    cm = ev.confusion_counts(y_true, y_pred, 4, weights=weights)
    f1, acc = metrics.macro_f1(cm), metrics.accuracy(cm)
    assert f1 == pytest.approx(f1_score(y_true[draws], y_pred[draws], labels=range(4), average="macro",
                                        zero_division=0))
    assert acc == pytest.approx(np.mean(y_true[draws] == y_pred[draws]))


@pytest.mark.parametrize("y_true, y_prob, message", [
    ([0, 1], np.ones((2, 3)) / 3, r"shape \[N, 4\]"),
    ([0, 1, 2], np.ones((2, 4)) / 4, "one label per row"),
    ([0, 4], np.ones((2, 4)) / 4, r"labels must be in \[0, 3\]"),
    ([], np.ones((0, 4)), "empty"),
])
def test_bad_inputs_are_user_errors(y_true, y_prob, message):
    with pytest.raises(UserError, match=message):
        ev.compute_metrics(np.asarray(y_true, dtype=int), y_prob, NAMES, TRAIN, eval_config())


def test_top_k_frame_and_softmax():
    prob = ev.softmax(np.array([[0.0, 2.0, 1.0], [1000.0, 0.0, 0.0]]))
    np.testing.assert_allclose(prob.sum(axis=1), 1)
    frame = ev.top_k_frame(prob, ["x", "y", "z"], k=5)  # k larger than C is capped
    assert list(frame.columns) == ["top1_species", "top1_prob", "top2_species", "top2_prob",
                                   "top3_species", "top3_prob"]
    assert frame.iloc[0][["top1_species", "top2_species", "top3_species"]].tolist() == ["y", "z", "x"]
    assert frame.iloc[1]["top1_prob"] == pytest.approx(1.0)


def test_summary_text_shows_headline_and_ci():
    m = ev.compute_metrics(Y_TRUE, Y_PROB, NAMES, TRAIN, eval_config(), capture_ids=list("aabccdd"))
    text = ev.summary_text(m)
    assert "macro F1" in text and f"{m['macro_f1']:.4f}" in text and "95% CI (captures)" in text
    assert "tail" in text and "dikdik" in text  # absent class is named


# ---------------------------------------------------------------- evaluate_run on a tiny run folder

def evaluable_run(run_dir: Path, dataset_dir: Path, sampler: str = "none", rus_cap: int | None = None) -> Path:
    """A run of `dataset_dir` as `train` leaves it, with a tiny random Keras model instead of a ResNet-18
    (`testing.write_tiny_run`) and 50 bootstrap resamples."""
    config = cfg.Config()
    config.eval.bootstrap_samples = 50
    config.sampler.name = sampler
    config.sampler.rus_cap = rus_cap
    return write_tiny_run(run_dir, dataset_dir=dataset_dir, config=config)


def test_evaluate_run_writes_every_output(tmp_path, tiny_dataset):
    pytest.importorskip("serengeti_tf.data.pipeline")
    run = evaluable_run(tmp_path / "run", tiny_dataset)
    result = run_evaluation.evaluate_run(run)
    out = run / "eval"
    assert result.out_dir == out and not result.skipped
    for name in ("metrics.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png",
                 "predictions.csv", "captures.csv", "groups.csv", "config.yaml"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    # tiny_dataset: 4 classes x 2 test images, 2 frames per capture.
    assert len(predictions) == metrics["num_examples"] == 8
    assert predictions["correct"].mean() == pytest.approx(metrics["accuracy"])
    assert {"path", "capture_id", "true", "predicted", "top1_species", "top1_prob", "top4_species"} \
        <= set(predictions.columns)
    assert (predictions["top1_species"] == predictions["predicted"]).all()
    per_class = pd.read_csv(out / "per_class.csv")
    assert list(per_class["species"]) == ["antelope", "buffalo", "cheetah", "dikdik", "Macro"]
    assert per_class["count_test"].iloc[:-1].tolist() == [2, 2, 2, 2]
    assert per_class["count_train_phase1"].tolist() == per_class["count_train"].tolist() == [30, 12, 5, 1, 48]
    assert per_class["f1"].iloc[-1] == pytest.approx(metrics["macro_f1"], abs=1e-4)
    confusion = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert confusion.to_numpy().sum() == 8 and np.trace(confusion.to_numpy()) == round(8 * metrics["accuracy"])
    assert len(pd.read_csv(out / "captures.csv")) == metrics["capture_level"]["num_examples"] == 4
    assert metrics["sampler"] == "none" and metrics["bootstrap"]["unit"] == "capture"
    assert cfg.load_saved(out / "config.yaml").model.input_size == 32
    assert "macro F1" in evaluation_summary(result) and "antelope" in ev.per_class_text(result.per_class)

    again = run_evaluation.evaluate_run(run)  # same model and settings: read back, not recomputed
    assert again.skipped and again.metrics == metrics
    other = cfg.Config()
    other.eval.bootstrap_samples = 10
    with pytest.raises(UserError, match="different output"):
        run_evaluation.evaluate_run(run, other)
    assert run_evaluation.evaluate_run(run, other, overwrite=True).metrics["bootstrap"]["samples"] == 10
    val = run_evaluation.evaluate_run(run, split="val")
    assert val.out_dir == run / "eval_val" and val.metrics["split"] == "val"


def test_per_class_table_phase1_counts_of_a_phase2_run(tmp_path, tiny_dataset):
    """A phase-2 run's table carries its phase-1 sampler's counts (the paper's Tables 5 and 6)."""
    pytest.importorskip("serengeti_tf.data.pipeline")
    phase1 = evaluable_run(tmp_path / "rus1", tiny_dataset, sampler="rus", rus_cap=10)
    phase2 = evaluable_run(tmp_path / "rus2", tiny_dataset)
    write_json(phase2 / "lineage.json", {"phase": 2, "sampler": "rus", "dataset_dir": str(tiny_dataset),
                                         "init_run": str(phase1), "seed": 0})
    config = cfg.Config()
    config.eval.bootstrap_samples = 0
    table = run_evaluation.evaluate_run(phase2, config).per_class
    assert table["count_train_phase1"].tolist() == [10, 10, 5, 1, 26]
    assert table["count_train"].tolist() == [30, 12, 5, 1, 48]
    assert config.eval.split == "test"  # the caller's config is not modified
    run_evaluation.evaluate_run(phase2, config, split="val")
    assert config.eval.split == "test"


def test_evaluate_run_refuses_bad_folders(tmp_path, tiny_dataset):
    with pytest.raises(UserError, match="run folder not found"):
        run_evaluation.evaluate_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="model.keras missing"):
        run_evaluation.evaluate_run(tmp_path / "empty")
    run = evaluable_run(tmp_path / "run", tiny_dataset)
    with pytest.raises(UserError, match="prepared dataset not found"):
        run_evaluation.evaluate_run(run, dataset_dir=tmp_path / "missing")


def test_evaluate_cli_prints_tables_and_reports_errors(tmp_path, tiny_dataset, capsys):
    pytest.importorskip("serengeti_tf.data.pipeline")
    from serengeti_tf_cli.main import main

    run = evaluable_run(tmp_path / "run", tiny_dataset)
    main(["evaluate", str(run), "--per-class", "--bootstrap", "20", "--top-k", "2"])
    out = capsys.readouterr().out
    assert "top-2 accuracy" in out and "count_train" in out and "Macro" in out
    saved = cfg.load_saved(run / "eval" / "config.yaml")
    assert saved.eval.bootstrap_samples == 20 and saved.eval.top_k == 2 and saved.model.input_size == 32
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "missing")])
    assert exit_info.value.code == 2 and "run folder not found" in capsys.readouterr().err
