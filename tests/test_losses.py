"""Class weights and imbalance-aware losses on tiny hand-computed cases; save/reload in .keras."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from serengeti_tf.config import TrainConfig
from serengeti_tf.errors import UserError
from serengeti_tf.train import losses

# Two classes, p = softmax([0, ln 3]) = [1/4, 3/4].
LOGITS = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], dtype=np.float32)
LABELS = np.array([0, 1], dtype=np.int32)  # row 0 is hard (p_y = 1/4), row 1 easy (p_y = 3/4)


def _value(loss, y_true, y_pred) -> float:
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


def _per_example(loss, y_true, y_pred) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(loss.call(y_true, y_pred)))


# --- class weights ---------------------------------------------------------------------------

def test_inverse_weights_average_one_over_present_classes_and_zero_for_empty():
    weights = losses.class_weights([10, 20, 0, 40], "inverse")
    # raw 1/n = [0.1, 0.05, -, 0.025], scaled to sum to 3 (classes with images): [12/7, 6/7, 0, 3/7].
    np.testing.assert_allclose(weights, [12 / 7, 6 / 7, 0.0, 3 / 7], rtol=1e-6)
    assert weights.dtype == np.float32


def test_effective_number_weights_match_hand_computed_values():
    weights = losses.class_weights([1, 10, 100], "effective_number", beta=0.9)
    # (1 - 0.9) / (1 - 0.9^n): n=1 -> 1, n=10 -> 0.1 / 0.6513215599 = 0.1535339933,
    # n=100 -> 0.1000026562; sum 1.2535366495; times 3 / sum:
    np.testing.assert_allclose(weights, [2.3932287909, 0.3674419731, 0.2393292360], rtol=1e-6)
    assert weights.sum() == pytest.approx(3.0, rel=1e-6)


def test_effective_number_limits_beta_zero_is_uniform_and_close_to_one_is_inverse():
    np.testing.assert_allclose(losses.class_weights([1, 10, 100], "effective_number", beta=0.0), [1, 1, 1])
    near = losses.class_weights([1, 10, 100], "effective_number", beta=1 - 1e-9)
    np.testing.assert_allclose(near, losses.class_weights([1, 10, 100], "inverse"), rtol=1e-5)


def test_effective_number_zero_count_class_gets_zero_weight():
    weights = losses.class_weights([0, 5, 5], "effective_number", beta=0.99)
    np.testing.assert_allclose(weights, [0.0, 1.0, 1.0], rtol=1e-6)


def test_none_weighting_is_ones():
    np.testing.assert_array_equal(losses.class_weights([3, 0, 7], "none"), [1, 1, 1])


@pytest.mark.parametrize("counts, method, beta, message", [
    ([1, 2], "sqrt", 0.9, "unknown class weighting 'sqrt'; known: none, inverse, effective_number"),
    ([1, 2], "effective_number", 1.0, "beta must be in [0, 1), got 1.0"),
    ([], "inverse", 0.9, "non-empty"),
    ([0, 0], "inverse", 0.9, "at least one class with images"),
    ([1, -2], "inverse", 0.9, "ints >= 0"),
    ([1.5, 2], "inverse", 0.9, "ints >= 0"),
])
def test_class_weights_reject_bad_input(counts, method, beta, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
        losses.class_weights(counts, method, beta)


# --- focal loss ------------------------------------------------------------------------------

def test_focal_gamma_zero_equals_sparse_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, size=16).astype(np.int32)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert _value(losses.FocalLoss(gamma=0.0), labels, logits) == pytest.approx(_value(ce, labels, logits), rel=1e-6)
    # Labels shaped [B, 1] work the same.
    assert _value(losses.FocalLoss(gamma=0.0), labels[:, None], logits) == pytest.approx(
        _value(ce, labels, logits), rel=1e-6)


def test_focal_down_weights_easy_examples_hand_computed():
    per_example = _per_example(losses.FocalLoss(gamma=2.0), LABELS, LOGITS)
    # hard: (1 - 1/4)^2 * ln 4 = 0.7797905781; easy: (1 - 3/4)^2 * -ln(3/4) = 0.0179801295.
    np.testing.assert_allclose(per_example, [0.7797905781, 0.0179801295], rtol=1e-5)
    # The easy example keeps 1/16 of its CE, the hard one 9/16.
    ce = np.array([math.log(4), -math.log(0.75)])
    np.testing.assert_allclose(per_example / ce, [0.5625, 0.0625], rtol=1e-5)
    assert _value(losses.FocalLoss(gamma=2.0), LABELS, LOGITS) == pytest.approx(0.3988853538, rel=1e-5)


def test_focal_with_class_weights_multiplies_by_weight_of_label():
    per_example = _per_example(losses.FocalLoss(gamma=2.0, class_weights=[2.0, 0.5]), LABELS, LOGITS)
    np.testing.assert_allclose(per_example, [2 * 0.7797905781, 0.5 * 0.0179801295], rtol=1e-5)


def test_focal_gradient_is_finite_for_confident_predictions_and_small_gamma():
    import tensorflow as tf

    logits = tf.Variable([[40.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        value = losses.FocalLoss(gamma=0.5)(np.array([0]), logits)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.isfinite(float(value))


def test_focal_rejects_negative_gamma():
    with pytest.raises(UserError, match="focal gamma must be a number >= 0, got -1"):
        losses.FocalLoss(gamma=-1)


def test_class_weighted_cross_entropy_hand_computed():
    per_example = _per_example(losses.ClassWeightedCrossEntropy([3.0, 1.0]), LABELS, LOGITS)
    np.testing.assert_allclose(per_example, [3 * math.log(4), -math.log(0.75)], rtol=1e-6)


def test_class_weights_of_wrong_width_are_refused():
    with pytest.raises(UserError, match="class_weights has 3 classes but the model outputs 2 logits"):
        losses.ClassWeightedCrossEntropy([1.0, 1.0, 1.0])(LABELS, LOGITS)


# --- logit adjustment / balanced softmax -------------------------------------------------------

def test_adjusted_logits_equal_logits_plus_tau_log_prior():
    logits = np.array([[1.0, 2.0, -1.0]], dtype=np.float32)
    out = keras.ops.convert_to_numpy(losses.adjusted_logits(logits, [0.5, 0.3, 0.2], tau=1.0))
    np.testing.assert_allclose(out, logits + np.log([0.5, 0.3, 0.2]), rtol=1e-6)
    # Counts are normalised to priors; tau scales the offset.
    out = keras.ops.convert_to_numpy(losses.adjusted_logits(logits, [50, 30, 20], tau=0.5))
    np.testing.assert_allclose(out, logits + 0.5 * np.log([0.5, 0.3, 0.2]), rtol=1e-6)


def test_balanced_softmax_is_cross_entropy_on_logits_plus_log_counts():
    counts = [1, 3]
    per_example = _per_example(losses.BalancedSoftmaxLoss(counts), LABELS, LOGITS)
    shifted = LOGITS + np.log(counts)  # row = [0, ln 9] -> p = [1/10, 9/10]
    np.testing.assert_allclose(shifted[0], [0.0, math.log(9)], rtol=1e-6)
    np.testing.assert_allclose(per_example, [math.log(10), -math.log(0.9)], rtol=1e-5)


def test_logit_adjusted_tau_zero_is_cross_entropy_and_tau_one_equals_balanced_softmax():
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert _value(losses.LogitAdjustedLoss([1, 9], tau=0.0), LABELS, LOGITS) == pytest.approx(
        _value(ce, LABELS, LOGITS), rel=1e-6)
    assert _value(losses.LogitAdjustedLoss([0.1, 0.9], tau=1.0), LABELS, LOGITS) == pytest.approx(
        _value(losses.BalancedSoftmaxLoss([1, 9]), LABELS, LOGITS), rel=1e-6)


def test_zero_prior_is_floored_to_half_the_smallest_positive_and_loss_stays_finite():
    priors = losses.normalise_priors([0, 10, 30])
    # 0 -> 0.25 / 2 = 0.125 before renormalising [0.125, 0.25, 0.75] / 1.125.
    np.testing.assert_allclose(priors, np.array([0.125, 0.25, 0.75]) / 1.125, rtol=1e-9)
    value = _value(losses.BalancedSoftmaxLoss([0, 10, 30]), np.array([0]), np.zeros((1, 3), np.float32))
    assert np.isfinite(value)


def test_logit_adjusted_rejects_bad_tau_and_priors():
    with pytest.raises(UserError, match="tau must be a number >= 0, got -0.5"):
        losses.LogitAdjustedLoss([1, 2], tau=-0.5)
    with pytest.raises(UserError, match="class priors must be finite"):
        losses.LogitAdjustedLoss([0, 0])


# --- make_loss -------------------------------------------------------------------------------

COUNTS = [100, 10, 1]


@pytest.mark.parametrize("loss, weighting, expected", [
    ("cross_entropy", "none", keras.losses.SparseCategoricalCrossentropy),
    ("cross_entropy", "inverse", losses.ClassWeightedCrossEntropy),
    ("focal", "none", losses.FocalLoss),
    ("focal", "effective_number", losses.FocalLoss),
    ("balanced_softmax", "none", losses.BalancedSoftmaxLoss),
    ("logit_adjusted", "none", losses.LogitAdjustedLoss),
])
def test_make_loss_picks_the_configured_loss(loss, weighting, expected):
    config = TrainConfig(loss=loss, class_weighting=weighting, focal_gamma=1.5, logit_adjust_tau=0.7,
                         effective_number_beta=0.9)
    made = losses.make_loss(config, COUNTS)
    assert type(made) is expected
    if weighting != "none":
        np.testing.assert_allclose(made.class_weights, losses.class_weights(COUNTS, weighting, 0.9), rtol=1e-6)
    elif hasattr(made, "class_weights"):
        assert made.class_weights is None
    if loss == "focal":
        assert made.gamma == 1.5
    if loss == "logit_adjusted":
        assert made.tau == pytest.approx(0.7)
        np.testing.assert_allclose(losses.normalise_priors(made.class_priors), np.array(COUNTS) / 111)


def test_make_loss_weighted_cross_entropy_value():
    config = TrainConfig(loss="cross_entropy", class_weighting="inverse")
    made = losses.make_loss(config, [1, 3])
    # inverse weights of [1, 3]: [1, 1/3] * 2 / (4/3) = [1.5, 0.5].
    expected = (1.5 * math.log(4) + 0.5 * -math.log(0.75)) / 2
    assert _value(made, LABELS, LOGITS) == pytest.approx(expected, rel=1e-5)


def test_make_loss_rejects_unknown_loss():
    with pytest.raises(UserError, match="unknown loss 'hinge'; known: cross_entropy, focal, "):
        losses.make_loss(TrainConfig(loss="hinge"), COUNTS)


# --- serialisation ---------------------------------------------------------------------------

SERIALISABLE = [
    losses.FocalLoss(gamma=2.0),
    losses.FocalLoss(gamma=1.0, class_weights=[2.0, 1.0, 0.5]),
    losses.ClassWeightedCrossEntropy([0.5, 1.0, 1.5]),
    losses.BalancedSoftmaxLoss([100, 10, 1]),
    losses.LogitAdjustedLoss([0.7, 0.2, 0.1], tau=0.5, class_weights=[1.0, 1.0, 2.0]),
]


@pytest.mark.parametrize("loss", SERIALISABLE, ids=lambda loss: type(loss).__name__)
def test_loss_round_trips_through_get_config(loss):
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


def test_losses_survive_save_and_load_of_a_keras_model(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=8).astype(np.int32)
    for i, loss in enumerate(SERIALISABLE):
        model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss=loss)
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # the loss also works in a compiled train step
        path = tmp_path / f"model_{i}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)  # no custom_objects: the losses are registered
        assert type(loaded.loss) is type(loss)
        assert loaded.loss.get_config() == loss.get_config()
        expected = _value(loss, y, model.predict(x, verbose=0))
        assert _value(loaded.loss, y, loaded.predict(x, verbose=0)) == pytest.approx(expected, rel=1e-6)
