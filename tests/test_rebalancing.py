"""Post-hoc logit adjustment, tau-normalisation and cRT on tiny known cases."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from serengeti_tf.errors import UserError
from serengeti_tf.models import resnet as M
from serengeti_tf.models.inference import predict_dataset
from serengeti_tf.train import rebalancing as rb

PRIORS = np.array([0.9, 0.09, 0.01])


# --- post-hoc logit adjustment ---------------------------------------------------------------

def test_posthoc_adjustment_subtracts_tau_log_prior():
    logits = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(rb.posthoc_logit_adjustment(logits, PRIORS, 0.5), logits - 0.5 * np.log(PRIORS))
    np.testing.assert_array_equal(rb.posthoc_logit_adjustment(logits, PRIORS, 0.0), logits)
    # Counts work as priors.
    np.testing.assert_allclose(rb.posthoc_logit_adjustment(logits, [900, 90, 10], 1.0), logits - np.log(PRIORS))


def test_sweep_tau_recovers_the_prior_that_was_added():
    # Clean scores classify perfectly (+1 on the true class); the "trained model" adds log prior,
    # so it predicts class 0 everywhere. tau = 1 removes exactly that offset.
    labels = np.repeat([0, 1, 2], 4)
    logits = np.eye(3)[labels] + np.log(PRIORS)
    best, table = rb.sweep_tau(logits, labels, PRIORS, [0.0, 0.5, 1.0, 1.5])
    assert best == 1.0
    assert list(table.columns) == ["tau", "macro_f1", "accuracy", "balanced_accuracy"]
    assert list(table["tau"]) == [0.0, 0.5, 1.0, 1.5]
    row = table.set_index("tau").loc[1.0]
    assert row["macro_f1"] == 1.0 and row["accuracy"] == 1.0 and row["balanced_accuracy"] == 1.0
    assert table.set_index("tau").loc[0.0, "accuracy"] == pytest.approx(1 / 3)


def test_sweep_tau_rejects_mismatched_inputs():
    with pytest.raises(UserError, match="labels have 2 entries but logits have 3 rows"):
        rb.sweep_tau(np.zeros((3, 3)), [0, 1], PRIORS, [0.0])
    with pytest.raises(UserError, match=r"logits must be \[N, 3\]"):
        rb.posthoc_logit_adjustment(np.zeros((3, 2)), PRIORS, 1.0)
    with pytest.raises(UserError, match="taus must be a non-empty list"):
        rb.sweep_tau(np.zeros((2, 3)), [0, 1], PRIORS, [])


# --- tau-normalisation -----------------------------------------------------------------------

def _head(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(5, 3)).astype(np.float32) * [3.0, 1.0, 0.2], rng.normal(size=3).astype(np.float32)


def test_tau_zero_leaves_the_head_unchanged():
    kernel, bias = _head()
    for rule in ("scale", "keep"):
        new_kernel, new_bias = rb.tau_normalize_head(kernel, bias, 0.0, bias_rule=rule)
        np.testing.assert_array_equal(new_kernel, kernel)
        np.testing.assert_array_equal(new_bias, bias)
        assert new_kernel is not kernel  # a copy, not the caller's array


def test_tau_one_gives_unit_norm_class_vectors_and_scales_bias_alike():
    kernel, bias = _head()
    norms = np.linalg.norm(kernel, axis=0)
    new_kernel, new_bias = rb.tau_normalize_head(kernel, bias, 1.0)
    np.testing.assert_allclose(np.linalg.norm(new_kernel, axis=0), [1, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(new_bias, bias / norms, rtol=1e-6)
    half_kernel, _ = rb.tau_normalize_head(kernel, bias, 0.5)
    np.testing.assert_allclose(half_kernel, kernel / np.sqrt(norms), rtol=1e-6)
    _, kept = rb.tau_normalize_head(kernel, bias, 1.0, bias_rule="keep")
    np.testing.assert_array_equal(kept, bias)
    _, zeroed = rb.tau_normalize_head(kernel, bias, 1.0, bias_rule="zero")
    np.testing.assert_array_equal(zeroed, np.zeros(3))


def test_tau_norm_leaves_an_all_zero_class_vector_alone():
    kernel = np.array([[2.0, 0.0], [0.0, 0.0]])
    new_kernel, new_bias = rb.tau_normalize_head(kernel, np.array([1.0, 1.0]), 1.0)
    np.testing.assert_array_equal(new_kernel, [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(new_bias, [0.5, 1.0])


def test_sweep_tau_norm_fixes_a_head_whose_frequent_class_has_the_larger_norm():
    kernel = np.diag([3.0, 1.0])  # class 0's vector is 3x longer: it wins class-1 samples
    features = np.array([[1.0, 0.5], [1.0, 0.4], [0.5, 1.0], [0.4, 1.0]])
    labels = np.array([0, 0, 1, 1])
    best, table = rb.sweep_tau_norm(features, labels, kernel, np.zeros(2), [0.0, 0.5, 1.0])
    scores = table.set_index("tau")["accuracy"]
    assert scores[0.0] == 0.5 and scores[0.5] == 1.0 and scores[1.0] == 1.0
    assert best == 0.5  # tie between 0.5 and 1.0 goes to the smaller tau


def test_tau_norm_rejects_bad_shapes_and_rules():
    kernel, bias = _head()
    with pytest.raises(UserError, match=r"head bias must have shape \(3,\)"):
        rb.tau_normalize_head(kernel, bias[:2], 1.0)
    with pytest.raises(UserError, match="bias rule must be one of scale, keep, zero, got 'drop'"):
        rb.tau_normalize_head(kernel, bias, 1.0, bias_rule="drop")
    with pytest.raises(UserError, match=r"features must be \[N, 5\]"):
        rb.sweep_tau_norm(np.zeros((4, 2)), [0, 1, 2, 0], kernel, bias, [0.0])


# --- cRT -------------------------------------------------------------------------------------

def _blobs(counts, seed):
    """Overlapping 2-D Gaussian blobs on a triangle; one row per sample."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [1.5, 0.0], [0.75, 1.3]])
    features = np.concatenate([rng.normal(centres[c], 0.7, size=(n, 2)) for c, n in enumerate(counts)])
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return features.astype(np.float32), labels.astype(np.int32)


def test_class_balanced_sampling_draws_classes_equally():
    features, labels = _blobs([500, 20, 5], seed=0)
    stream = rb._class_balanced_dataset(features, labels, seed=0).batch(3000).take(1)
    drawn = next(iter(stream))[1].numpy()
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.04)


def test_crt_improves_balanced_accuracy_over_a_plain_head_on_imbalanced_blobs():
    train_x, train_y = _blobs([600, 60, 12], seed=1)
    test_x, test_y = _blobs([300, 300, 300], seed=2)
    settings = dict(epochs=15, batch_size=32, learning_rate=1e-2, seed=0, verbose=0)
    plain = rb.train_head(train_x, train_y, 3, class_balanced=False, **settings)
    crt = rb.class_balanced_head_retraining(train_x, train_y, 3, **settings)

    def balanced_accuracy(kernel, bias):
        return rb.score_predictions(test_y, np.argmax(test_x @ kernel + bias, axis=1))["balanced_accuracy"]

    plain_score, crt_score = balanced_accuracy(*plain), balanced_accuracy(*crt)
    assert crt_score > plain_score + 0.1, (plain_score, crt_score)  # observed ~0.47 -> ~0.78


def _tiny_model(num_classes: int = 3) -> keras.Model:
    inputs = keras.Input(shape=(8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs)


def _image_dataset(counts, seed=0) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int32)
    images = rng.normal(size=(len(labels), 8, 8, 3)).astype(np.float32) + labels[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)


def test_apply_crt_changes_only_the_head_bit_for_bit():
    model = _tiny_model()
    dataset = _image_dataset([40, 8, 3])
    head = M.head_layer(model, None)
    assert head.name == "logits"
    before = {v.path: np.array(v.numpy()) for v in model.weights}
    head_paths = {v.path for v in head.weights}
    assert len(before) > len(head_paths)  # the model has backbone weights (conv, BN stats)

    kernel, bias = rb.apply_crt(model, dataset, 3, epochs=2, batch_size=8, seed=0, verbose=0)

    after = {v.path: v.numpy() for v in model.weights}
    assert after.keys() == before.keys()
    for path in before:
        if path in head_paths:
            continue
        assert after[path].tobytes() == before[path].tobytes(), f"backbone weight {path} changed"
    np.testing.assert_array_equal(head.get_weights()[0], kernel)
    np.testing.assert_array_equal(head.get_weights()[1], bias)
    assert not np.array_equal(before[head.kernel.path], kernel)
    # The model now predicts with the new head on the unchanged features.
    features, _ = predict_dataset(M.feature_extractor(model, None), dataset)
    images = np.concatenate([x.numpy() for x, _ in dataset])
    np.testing.assert_allclose(model.predict(images, verbose=0), features @ kernel + bias, rtol=1e-4, atol=1e-5)


def test_apply_tau_norm_rewrites_the_head_in_place():
    model = _tiny_model()
    head = M.head_layer(model, None)
    kernel, bias = head.get_weights()
    rb.apply_tau_norm(model, 1.0)
    expected_kernel, expected_bias = rb.tau_normalize_head(kernel, bias, 1.0)
    np.testing.assert_array_equal(head.get_weights()[0], expected_kernel)
    np.testing.assert_array_equal(head.get_weights()[1], expected_bias)


def test_head_layer_refuses_a_model_ending_in_softmax():
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(UserError, match="needs a linear Dense head producing logits"):
        M.head_layer(model, None)
    with pytest.raises(UserError, match="has no head layer named 'nope'"):
        M.head_layer(model, "nope")


def test_head_training_rejects_bad_input():
    features, labels = _blobs([5, 5, 5], seed=0)
    with pytest.raises(UserError, match=r"labels must be class indices in \[0, 1\]"):
        rb.class_balanced_head_retraining(features, labels, 2, verbose=0)
    with pytest.raises(UserError, match="epochs must be an int >= 1, got 0"):
        rb.class_balanced_head_retraining(features, labels, 3, epochs=0, verbose=0)


# --- rebalance_head: the configured method, in place -----------------------------------------

def test_posthoc_bias_bakes_the_adjustment_into_the_head():
    kernel, bias = _head()
    features = np.random.default_rng(3).normal(size=(6, 5))
    counts = [500, 50, 5]
    baked = features @ kernel + rb.posthoc_bias(bias, counts, 0.8)
    np.testing.assert_allclose(baked, rb.posthoc_logit_adjustment(features @ kernel + bias, counts, 0.8),
                               rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def plain_head():
    """A 2-D -> 3-class linear head trained on imbalanced blobs (biased towards class 0), and the data."""
    counts = [600, 60, 12]
    train_x, train_y = _blobs(counts, seed=1)
    val_x, val_y = _blobs([100, 100, 100], seed=3)
    kernel, bias = rb.train_head(train_x, train_y, 3, class_balanced=False, epochs=15, batch_size=32,
                                 learning_rate=1e-2, seed=0, verbose=0)
    return (kernel, bias), counts, (train_x, train_y), (val_x, val_y)


def _plain_model_and_data(plain_head):
    (kernel, bias), counts, train, val = plain_head
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))
    model.get_layer("logits").set_weights([kernel, bias])
    return model, counts, train, val


@pytest.mark.parametrize("method", ["none", "posthoc_logit_adjustment", "tau_norm", "crt"])
def test_rebalance_head_applies_the_configured_method_in_place(method, plain_head):
    from serengeti_tf.config import TrainConfig

    model, counts, (train_x, train_y), (val_x, val_y) = _plain_model_and_data(plain_head)
    before = [w.copy() for w in model.get_layer("logits").get_weights()]
    config = TrainConfig(head_rebalancing=method, batch_size=32, crt_epochs=15, crt_learning_rate=1e-2)
    summary, table = rb.rebalance_head(model, config, counts, val_x, val_y, train_x, train_y, verbose=0)
    after = model.get_layer("logits").get_weights()
    assert summary["method"] == method
    # The model itself now predicts what the summary reports.
    predicted = np.argmax(model.predict(val_x, verbose=0), axis=1)
    assert rb.score_predictions(val_y, predicted)["macro_f1"] == pytest.approx(summary["val_after"]["macro_f1"])
    if method == "none":
        assert table is None and summary["tau"] is None
        for a, b in zip(after, before):
            np.testing.assert_array_equal(a, b)
        return
    gain = summary["val_after"]["balanced_accuracy"] - summary["val_before"]["balanced_accuracy"]
    if method == "crt":
        assert table is None and gain > 0.1, summary
        return
    taus = config.posthoc_taus if method == "posthoc_logit_adjustment" else config.tau_norm_taus
    assert list(table["tau"]) == taus and summary["tau"] in taus
    assert summary["val_after"]["macro_f1"] == pytest.approx(table["macro_f1"].max())
    assert summary["val_after"]["macro_f1"] >= summary["val_before"]["macro_f1"]  # tau = 0 is in the grid
    if method == "posthoc_logit_adjustment":
        assert summary["tau"] > 0 and gain > 0.1, summary  # the plain head's bias favours class 0
    # No such claim for tau_norm: on these 2-D blobs the imbalance sits in the bias, not in the
    # class-vector norms (class 0 has the SMALLEST norm), so tau = 0 wins with bias_rule=scale.


def test_rebalance_head_crt_needs_train_features(plain_head):
    from serengeti_tf.config import TrainConfig

    model, counts, _, (val_x, val_y) = _plain_model_and_data(plain_head)
    with pytest.raises(UserError, match="cRT needs the cached features"):
        rb.rebalance_head(model, TrainConfig(head_rebalancing="crt"), counts, val_x, val_y)
