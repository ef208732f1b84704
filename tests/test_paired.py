"""seed_aware.py and the groups of issue 18: seed-aware verdicts, Benjamini-Hochberg species flags,
group thresholds that follow the data, group means over the species present in the test split."""

from __future__ import annotations

import numpy as np
import pytest

from serengeti_tf import config as cfg
from serengeti_tf import presets
from serengeti_tf.evaluate import evaluation as ev
from serengeti_tf.evaluate import seed_aware as sa
from serengeti_tf.species import PAPER_SPECIES, PAPER_TEST_COUNTS, PAPER_TRAIN_COUNTS

MACRO = sa.SUMMARY_METRICS.index("macro_f1")
ACC = sa.SUMMARY_METRICS.index("accuracy")


def _labels(counts) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def _predict(rng, y, recall, num_classes) -> np.ndarray:
    """Right with the species' recall, else a uniformly drawn other species."""
    right = rng.random(len(y)) < np.asarray(recall)[y]
    other = (y + rng.integers(1, num_classes, len(y))) % num_classes
    return np.where(right, y, other)


def test_one_seed_gives_no_verdict_about_the_method_even_when_the_pair_differs():
    y = _labels([300, 300, 300])
    ref = np.where(np.arange(900) % 2 == 0, y, (y + 1) % 3)  # 50% right
    result = sa.compare_pairs([sa.make_pair(y, ref, y)], 3, {}, samples=200, seed=0)
    assert result["seed_aware"] is None and result["n_seeds"] == 1
    assert result["per_seed"]["low"][0, MACRO] > 0  # this network pair clearly differs ...
    summary = sa.summary_frame(result).set_index("metric")
    assert summary.loc["macro_f1", "verdict"] == "no verdict"  # ... but that is not a verdict on the method


def test_seed_aware_interval_includes_seed_to_seed_noise():
    """Each seed's pair differs beyond test-set noise, but the sign changes between seeds: the
    per-seed intervals all exclude 0 (the old report: "distinguishable from noise" in 3 of 3 seeds),
    the seed-aware interval must not."""
    rng = np.random.default_rng(1)
    y = _labels([400, 400, 400])
    pairs = []
    for new_recall in (0.9, 0.5, 0.9):  # seed 1's network is much worse, seeds 0 and 2 much better
        ref = _predict(rng, y, [0.7] * 3, 3)
        pairs.append(sa.make_pair(y, ref, _predict(rng, y, [new_recall] * 3, 3)))
    result = sa.compare_pairs(pairs, 3, {}, samples=200, seed=0)
    per_seed = result["per_seed"]
    assert all((per_seed["low"][s, MACRO] > 0) or (per_seed["high"][s, MACRO] < 0) for s in range(3))
    seeded = result["seed_aware"]
    assert seeded["low"][MACRO] < 0 < seeded["high"][MACRO]
    assert sa.summary_frame(result).set_index("metric").loc["macro_f1", "verdict"] == "no difference shown"
    # A difference that holds in every seed is called.
    consistent = [sa.make_pair(y, _predict(rng, y, [0.6] * 3, 3), _predict(rng, y, [0.9] * 3, 3)) for _ in range(3)]
    summary = sa.summary_frame(sa.compare_pairs(consistent, 3, {}, samples=200, seed=0)).set_index("metric")
    assert summary.loc["macro_f1", "verdict"] == "better" and summary.loc["accuracy", "verdict"] == "better"


def test_seed_aware_interval_keeps_the_test_noise_the_seeds_share():
    """Three seeds that agree exactly (new right on the same 8 captures every time): the spread over
    seeds is 0, but those 8 captures are one draw of the test set shared by all seeds, so the
    interval must keep their test-set noise instead of collapsing to a point."""
    y = _labels([200, 8])
    ref = y.copy()
    ref[200:] = 0  # the reference misses every rare capture
    pairs = [sa.make_pair(y, ref, y) for _ in range(3)]
    result = sa.compare_pairs(pairs, 2, {}, samples=400, seed=0)
    seeded = result["seed_aware"]
    assert np.ptp(result["per_seed"]["delta"][:, MACRO]) == 0
    assert seeded["se"][MACRO] > 0.05 and seeded["high"][MACRO] - seeded["low"][MACRO] > 0.3


def test_benjamini_hochberg_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan, 0.005])
    rejected, adjusted = sa.benjamini_hochberg(p, q=0.05)
    # Sorted tested p: 0.005, 0.01, 0.03, 0.04, 0.2 against 0.01, 0.02, 0.03, 0.04, 0.05.
    assert list(rejected) == [True, True, True, False, False, True]
    assert adjusted[5] == pytest.approx(0.025) and np.isnan(adjusted[4])
    assert sa.min_captures_for_verdict(0.95) == 6  # 2^(1-6) = 0.031 <= 0.05 < 2^(1-5)


def test_species_flags_control_false_discoveries_in_an_a_a_comparison():
    """Two networks from the same confusion model on the paper's 52 test counts (rare species weak,
    the rest strong). The old per-species percentile intervals flagged ~2 species per comparison; with
    Benjamini-Hochberg the expected number is <= 0.05 under this global null. Species with <= 5 test
    captures get no verdict and are listed."""
    counts = np.asarray(PAPER_TEST_COUNTS)
    y = _labels(counts)
    recall = np.where(counts <= 5, 0.4, 0.95)
    rng = np.random.default_rng(5)
    flags = []
    for draw in range(8):
        pair = sa.make_pair(y, _predict(rng, y, recall, 52), _predict(rng, y, recall, 52))
        species = sa.compare_pairs([pair], 52, {}, samples=150, seed=draw)["species"]
        flags.append(int(species["outside_noise"].sum()))
        assert list(~species["eligible"]) == list(counts < 6)
    assert np.mean(flags) <= 0.25


def test_group_thresholds_follow_the_train_counts_unless_given():
    counts = [1000, 400, 90, 60, 30, 10]
    head, tail, rule = ev.group_thresholds(counts)
    assert (head, tail) == (400, 31) and "tertiles" in rule  # lowest third <= 30, highest third >= 400
    groups = ev.class_groups(list("abcdef"), dict(zip("abcdef", counts)))
    assert groups == {"head": [0, 1], "medium": [2, 3], "tail": [4, 5]}
    assert ev.group_thresholds(counts, 5000, 500)[:2] == (5000, 500)
    assert ev.group_thresholds(counts, head_min=20)[:2] == (20, 20)  # derived tail never above the given head
    assert (cfg.EvalConfig().head_min, cfg.EvalConfig().tail_max) == (None, None)
    paper = cfg.resolve([presets.path("paper")])
    assert (paper.eval.head_min, paper.eval.tail_max) == (5000, 500)
    # The paper's own counts: tertiles give tail < 79, head >= 723 (the paper's preset keeps 5000 / 500).
    assert ev.group_thresholds(PAPER_TRAIN_COUNTS)[:2] == (723, 79)
    assert len(PAPER_SPECIES) == len(PAPER_TRAIN_COUNTS)


def test_group_means_average_over_species_present_in_the_test_split():
    names = ["a", "b", "c", "d"]
    train = {"a": 1000, "b": 500, "c": 5, "d": 3}
    y_true = np.array([0, 0, 1, 1, 2, 2])  # no test image of d
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    table = ev.group_table(y_true, y_pred, names, train, head_min=400, tail_max=10).set_index("group")
    assert table.loc["tail", "macro_f1"] == 1.0  # c only; d is absent, not an F1 of 0
    assert table.loc["tail", "classes_absent"] == "d" and table.loc["tail", "num_classes_present"] == 1
