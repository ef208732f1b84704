"""Classifier re-balancing after training (issue 6): post-hoc logit adjustment, tau-normalisation, cRT.

All three work on the final Dense layer (the "head") or its logits and leave the backbone alone:

- `posthoc_logit_adjustment` / `sweep_tau` (Menon et al., ICLR 2021): predict with
  `logits - tau * log prior`; tau chosen by validation macro F1.
- `tau_normalize_head` / `sweep_tau_norm` (Kang et al., ICLR 2020): rescale each class's weight
  vector `w_c` to `w_c / ||w_c||^tau`; tau chosen by validation macro F1.
- `class_balanced_head_retraining` (cRT, Kang et al.): a fresh Dense head trained on cached
  backbone features with class-balanced sampling (each class equally likely per draw). This is the
  opposite order to the paper's two-phase training (balanced head after imbalanced representation).

The array functions are pure (numpy in, numpy/DataFrame out). `apply_crt` and `apply_tau_norm`
connect them to a Keras model whose last layer is a linear Dense head producing logits, through the
head API of `models/resnet.py` (`head_layer`, `feature_extractor`, `set_head_weights`).
`rebalance_head` is the one call for training: it applies `train.head_rebalancing` to a trained
model's head from cached features, in place, so the saved `model.keras` predicts re-balanced
logits (post-hoc adjustment is baked into the bias).

Model selection metric: `metrics.macro_f1` over all classes of the logits, the score that selects
checkpoints and heads the evaluation (a class absent from validation adds a constant 0, so the
choice equals that by macro F1 over present classes); ties go to the smaller tau (the change
closest to the unadjusted model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from serengeti_tf import metrics
from serengeti_tf.choices import HEAD_REBALANCINGS, TAU_NORM_BIASES
from serengeti_tf.errors import UserError
from serengeti_tf.models.inference import predict_dataset
from serengeti_tf.models.resnet import feature_extractor, head_layer, set_head_weights
from serengeti_tf.train.losses import log_priors

# ---------------------------------------------------------------------------------------------
# Scoring shared by the sweeps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadInputs:
    """A trained Dense head and the cached pooled features (its input) a re-balancing works from."""

    kernel: np.ndarray  # [features, classes]
    bias: Optional[np.ndarray]
    val_features: np.ndarray  # float64 [N, features] of the validation split
    val_labels: np.ndarray
    train_counts: Sequence[float]  # the class prior the logits carry (counts, or `prior_left_by_loss`)
    train_features: Optional[np.ndarray] = None  # the unaugmented training split, for cRT
    train_labels: Optional[np.ndarray] = None
    verbose: int = 2


def _check_rows(values: np.ndarray, labels: np.ndarray, what: str, width: str,
                num_classes: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Validates a non-empty [N, width] array and its N class indices (in [0, num_classes), by default
    the array's width); returns both as numpy arrays."""
    values = np.asarray(values)
    labels = np.asarray(labels).reshape(-1)
    if values.ndim != 2 or values.shape[0] == 0:
        raise UserError(f"{what} must be a non-empty [N, {width}] array, got shape {values.shape}")
    if labels.shape[0] != values.shape[0]:
        raise UserError(f"labels have {labels.shape[0]} entries but {what} have {values.shape[0]} rows")
    if num_classes is None:
        num_classes = values.shape[1]
    elif not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"labels must be class indices in [0, {num_classes - 1}], "
                        f"got range [{labels.min()}, {labels.max()}]")
    return values, labels


def _check_logits_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = _check_rows(np.asarray(logits, dtype=np.float64), labels, "logits", "C")
    return logits, labels.astype(np.int64)


def _check_taus(taus: Iterable[float]) -> list[float]:
    values = [float(t) for t in taus]
    if not values or not all(math.isfinite(t) for t in values):
        raise UserError(f"taus must be a non-empty list of finite numbers, got {list(taus)!r}")
    return values


def score_predictions(labels: np.ndarray, predictions: np.ndarray,
                      num_classes: Optional[int] = None) -> dict[str, float]:
    """Macro F1 (`metrics`, all `num_classes` classes), accuracy and balanced accuracy (mean recall
    over present classes). `num_classes` defaults to 1 + the largest label or prediction; pass
    the model's class count (the sweeps do) so absent classes count as in evaluation."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    num_classes = num_classes or int(max(labels.max(), predictions.max())) + 1
    scores = metrics.classification_scores(labels, predictions, num_classes)
    return {key: scores[key] for key in ("macro_f1", "accuracy", "balanced_accuracy")}


def _sweep(taus: list[float], logits_for_tau, labels: np.ndarray) -> tuple[float, pd.DataFrame]:
    def scores(tau: float) -> dict[str, float]:
        logits = logits_for_tau(tau)
        return score_predictions(labels, np.argmax(logits, axis=1), logits.shape[1])

    rows = [{"tau": tau, **scores(tau)} for tau in taus]
    table = pd.DataFrame(rows, columns=["tau", "macro_f1", "accuracy", "balanced_accuracy"])
    # Highest macro F1; ties -> smallest tau (least change to the trained model).
    best = table.sort_values(["macro_f1", "tau"], ascending=[False, True], kind="stable").iloc[0]
    return float(best["tau"]), table


# ---------------------------------------------------------------------------------------------
# Post-hoc logit adjustment
# ---------------------------------------------------------------------------------------------

def posthoc_logit_adjustment(logits: np.ndarray, priors: Sequence[float], tau: float) -> np.ndarray:
    """`logits - tau * log prior` (Menon et al., post-hoc): removes the train prior from the scores.

    Note the sign: the training-time loss ADDS `tau * log prior` (`losses.adjusted_logits`); the
    post-hoc correction of a model trained with plain cross-entropy SUBTRACTS it. `priors` may be
    train counts; zero priors are floored as in `losses.normalise_priors`.
    """
    logits = np.asarray(logits, dtype=np.float64)
    offset = log_priors(priors)
    if logits.ndim != 2 or logits.shape[1] != offset.size:
        raise UserError(f"logits must be [N, {offset.size}] to match {offset.size} class priors, "
                        f"got shape {logits.shape}")
    return logits - float(tau) * offset


def prior_left_by_loss(prior_counts: Sequence[float], train_config) -> np.ndarray:
    """The class prior a trained head's logits still carry: what post-hoc adjustment may remove.

    Plain cross-entropy on data with class counts n learns logits log p(x|y) + log prior + const, so the
    whole prior (normalised `prior_counts`) is left. A prior-aware loss already removed part of it;
    at the loss's optimum (`train_config` is the trained run's `train` section):
    - `balanced_softmax` (cross-entropy on logits + log prior): nothing is left;
    - `logit_adjusted` with `logit_adjust_tau` t: prior^(1 - t) is left;
    - class weights w (`class_weighting`, any loss): the weighted optimum is proportional to
      w_y p(y | x), so prior * w is left (`inverse` weights: nothing);
    - `focal`: treated as cross-entropy (its down-weighting of easy examples is not a class prior).
    Subtracting tau * log prior again from such logits would remove the prior twice (issue 18).
    Returns the normalised prior left; uniform when nothing is left, where post-hoc adjustment changes
    no prediction for any tau.
    """
    from serengeti_tf.train.losses import class_weights, normalise_priors

    prior = normalise_priors(prior_counts)
    removed = {"balanced_softmax": 1.0, "logit_adjusted": float(train_config.logit_adjust_tau)}.get(
        train_config.loss, 0.0)
    weights = np.asarray(class_weights(prior_counts, train_config.class_weighting,
                                       train_config.effective_number_beta), dtype=np.float64)
    # A class without training images has weight 0; it keeps its floored prior instead.
    log_left = (1.0 - removed) * np.log(prior) + np.log(np.where(weights > 0, weights, 1.0))
    left = np.exp(log_left - log_left.max())
    return left / left.sum()


def prior_left_description(train_config) -> str:
    """One phrase for rebalancing.json: which loss settings `prior_left_by_loss` accounted for."""
    parts = [f"loss {train_config.loss}" + (f" (tau {train_config.logit_adjust_tau})"
                                            if train_config.loss == "logit_adjusted" else "")]
    if train_config.class_weighting != "none":
        parts.append(f"class weighting {train_config.class_weighting}")
    return "prior left after the training " + " and ".join(parts)


def sweep_tau(val_logits: np.ndarray, val_labels: np.ndarray, priors: Sequence[float],
              taus: Iterable[float]) -> tuple[float, pd.DataFrame]:
    """Scores post-hoc adjustment for each tau on validation; returns (best tau, table).

    The table has one row per tau: `tau, macro_f1, accuracy, balanced_accuracy`. Best = highest
    macro F1, ties to the smaller tau. Include 0 in `taus` to let "no adjustment" win.
    """
    logits, labels = _check_logits_labels(val_logits, val_labels)
    taus = _check_taus(taus)
    return _sweep(taus, lambda tau: posthoc_logit_adjustment(logits, priors, tau), labels)


# ---------------------------------------------------------------------------------------------
# Tau-normalisation of the head
# ---------------------------------------------------------------------------------------------

def _check_head(kernel: np.ndarray, bias: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise UserError(f"head kernel must be a Keras Dense kernel [features, classes], got shape {kernel.shape}")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (kernel.shape[1],):
            raise UserError(f"head bias must have shape ({kernel.shape[1]},) to match the kernel, "
                            f"got {bias.shape}")
    return kernel, bias


def tau_normalize_head(kernel: np.ndarray, bias: Optional[np.ndarray], tau: float,
                       bias_rule: str = "scale") -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Kang et al.'s tau-normalisation: class c's weights `w_c` (kernel column c) become `w_c / ||w_c||^tau`.

    Bias rule (Kang et al. use a head without bias; a Keras Dense head has one, learnt on the
    imbalanced data, so it also favours frequent classes):
    - `scale` (default): `b_c / ||w_c||^tau`, i.e. class c's whole logit is divided by the same
      positive factor. `tau = 0` leaves kernel and bias unchanged.
    - `keep`: bias unchanged.  - `zero`: bias set to 0 (Kang et al.'s bias-free head; not the
      identity at `tau = 0`).
    A class whose weight vector is all zeros keeps factor 1. Returns new arrays in the input dtype.
    """
    if bias_rule not in TAU_NORM_BIASES:  # the rules: `head_choices.py`
        raise UserError(f"tau-norm bias rule must be {TAU_NORM_BIASES.one_of()}, got {bias_rule!r}")
    kernel, bias = _check_head(kernel, bias)
    if tau == 0 and bias_rule != "zero":
        # Exactly the same head (no float round trip through norm ** 0).
        return kernel.copy(), None if bias is None else bias.copy()
    norms = np.linalg.norm(kernel.astype(np.float64), axis=0)
    factor = np.where(norms > 0, np.power(np.where(norms > 0, norms, 1.0), -float(tau)), 1.0)
    new_kernel = (kernel * factor[None, :]).astype(kernel.dtype)
    if bias is None:
        return new_kernel, None
    return new_kernel, TAU_NORM_BIASES.lookup(bias_rule)(bias, factor)


def sweep_tau_norm(features_val: np.ndarray, labels_val: np.ndarray, kernel: np.ndarray,
                   bias: Optional[np.ndarray], taus: Iterable[float],
                   bias_rule: str = "scale") -> tuple[float, pd.DataFrame]:
    """Scores tau-normalised heads on cached validation features; returns (best tau, table).

    `features_val` are the pooled backbone features `[N, D]` (the head's input). Table and choice
    rule as in `sweep_tau`.
    """
    kernel, bias = _check_head(kernel, bias)
    features = np.asarray(features_val, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != kernel.shape[0]:
        raise UserError(f"features must be [N, {kernel.shape[0]}] to match the head kernel, got shape "
                        f"{features.shape}")
    _check_logits_labels(np.zeros((features.shape[0], kernel.shape[1])), labels_val)
    labels = np.asarray(labels_val).reshape(-1)
    taus = _check_taus(taus)

    def logits_for(tau: float) -> np.ndarray:
        k, b = tau_normalize_head(kernel, bias, tau, bias_rule)
        logits = features @ k.astype(np.float64)
        return logits if b is None else logits + b.astype(np.float64)

    return _sweep(taus, logits_for, labels)


# ---------------------------------------------------------------------------------------------
# Head (re-)training on cached features: plain and class-balanced (cRT)
# ---------------------------------------------------------------------------------------------

def _check_features(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    features, labels = _check_rows(np.asarray(features, dtype=np.float32), labels, "features", "D", num_classes)
    return features, labels.astype(np.int32)


def _class_balanced_dataset(features: np.ndarray, labels: np.ndarray, seed: int) -> tf.data.Dataset:
    """Endless (feature, label) stream where each class present is equally likely per draw."""
    per_class = []
    for c in np.unique(labels):
        rows = features[labels == c]
        ds = tf.data.Dataset.from_tensor_slices((rows, np.full(len(rows), c, np.int32)))
        per_class.append(ds.shuffle(len(rows), seed=seed + int(c), reshuffle_each_iteration=True).repeat())
    weights = [1.0 / len(per_class)] * len(per_class)
    return tf.data.Dataset.sample_from_datasets(per_class, weights=weights, seed=seed)


def _instance_dataset(features: np.ndarray, labels: np.ndarray, seed: int) -> tf.data.Dataset:
    """Endless stream in the data's own (imbalanced) class proportions."""
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    return ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).repeat()


def train_head(features: np.ndarray, labels: np.ndarray, num_classes: int, *, class_balanced: bool,
               epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-3,
               steps_per_epoch: Optional[int] = None, loss: Optional[keras.losses.Loss] = None,
               seed: int = 0, verbose: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Trains a freshly initialised Dense head `[D] -> [C]` logits on cached features; returns (kernel, bias).

    `class_balanced=True` is cRT's sampling (each class present equally likely per draw; a class
    without features gets no positive examples); `False` samples instances as they come (a plain
    head on imbalanced data, as in the paper's phase 2). One epoch is `steps_per_epoch` batches,
    by default `ceil(N / batch_size)` (balanced sampling has no natural epoch). Adam, glorot-uniform
    kernel seeded with `seed`, zero bias; `loss` defaults to sparse cross-entropy on logits.
    Nothing global is touched (no global seed), so the caller's model is unaffected.
    """
    features, labels = _check_features(features, labels, num_classes)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"head training {name} must be an int >= 1, got {value!r}")
    if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
        raise UserError(f"head training steps_per_epoch must be an int >= 1 or None, got {steps_per_epoch!r}")
    if not 0 < learning_rate < 10:
        raise UserError(f"head training learning_rate must be in (0, 10), got {learning_rate!r}")
    steps = steps_per_epoch or math.ceil(len(labels) / batch_size)
    stream = (_class_balanced_dataset if class_balanced else _instance_dataset)(features, labels, seed)
    stream = stream.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    head = keras.Sequential([
        keras.Input(shape=(features.shape[1],), dtype="float32"),
        keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                           bias_initializer="zeros", dtype="float32"),
    ])
    head.compile(optimizer=keras.optimizers.Adam(learning_rate),
                 loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit(stream, epochs=epochs, steps_per_epoch=steps, verbose=verbose, shuffle=False)
    kernel, bias = head.layers[-1].get_weights()
    return kernel, bias


def class_balanced_head_retraining(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                                   epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-3,
                                   steps_per_epoch: Optional[int] = None, seed: int = 0,
                                   verbose: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """cRT (Kang et al., ICLR 2020): a fresh head trained with class-balanced sampling; returns (kernel, bias).

    `features` are pooled backbone features of the training images `[N, D]` (from
    the frozen backbone, e.g. `train/features.py`), `labels` their class indices. See `train_head`.
    """
    return train_head(features, labels, num_classes, class_balanced=True, epochs=epochs,
                      batch_size=batch_size, learning_rate=learning_rate,
                      steps_per_epoch=steps_per_epoch, seed=seed, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Model glue (the head API of `models/resnet.py`): re-balance a model's head in place
# ---------------------------------------------------------------------------------------------

def apply_crt(model: keras.Model, train_dataset: tf.data.Dataset, num_classes: int, *,
              epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-3,
              steps_per_epoch: Optional[int] = None, seed: int = 0, verbose: int = 2,
              head_name: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """cRT on a trained model, in place: cache backbone features of `train_dataset` (unaugmented,
    unbalanced `(images, labels)` batches), retrain the head class-balanced, write it back.

    Only the head's weights change; every backbone weight (incl. BatchNorm statistics) stays
    bit-for-bit the same because the backbone only runs in inference mode. Returns (kernel, bias).
    """
    if not head_layer(model, head_name).use_bias:
        raise UserError("cRT trains a head with bias but the model's head has use_bias=False")
    features, labels = predict_dataset(feature_extractor(model, head_name), train_dataset)
    if not len(labels):
        raise UserError("feature extraction got an empty dataset")
    kernel, bias = class_balanced_head_retraining(
        features, labels.astype(np.int32), num_classes, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, steps_per_epoch=steps_per_epoch, seed=seed, verbose=verbose)
    set_head_weights(model, [kernel, bias], head_name)
    return kernel, bias


def apply_tau_norm(model: keras.Model, tau: float, bias_rule: str = "scale",
                   head_name: Optional[str] = None) -> None:
    """Tau-normalises the model's head in place (see `tau_normalize_head`)."""
    kernel, bias = _head_weights(model, head_name)
    kernel, bias = tau_normalize_head(kernel, bias, tau, bias_rule)
    set_head_weights(model, [kernel, bias], head_name)


def _head_weights(model: keras.Model, head_name: Optional[str]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The head's (kernel, bias); bias None for a head without one."""
    head = head_layer(model, head_name)
    weights = head.get_weights()
    return weights[0], (weights[1] if head.use_bias else None)


# ---------------------------------------------------------------------------------------------
# One call for training: the configured head re-balancing on cached features
# ---------------------------------------------------------------------------------------------

def posthoc_bias(bias: np.ndarray, priors: Sequence[float], tau: float) -> np.ndarray:
    """Bakes post-hoc logit adjustment into a Dense head: `bias - tau * log prior`.

    `x @ W + (b - tau log p)` equals `posthoc_logit_adjustment(x @ W + b, p, tau)`, so a model
    with this bias predicts the adjusted scores and `model.keras` needs no extra layer.
    """
    bias = np.asarray(bias)
    offset = log_priors(priors)
    if bias.shape != offset.shape:
        raise UserError(f"head bias has shape {bias.shape} but there are {offset.size} class priors")
    return (bias.astype(np.float64) - float(tau) * offset).astype(bias.dtype)


def rebalance_head(model: keras.Model, train_config, train_counts: Sequence[int],
                   val_features: np.ndarray, val_labels: np.ndarray,
                   train_features: Optional[np.ndarray] = None, train_labels: Optional[np.ndarray] = None,
                   head_name: Optional[str] = None, verbose: int = 2) -> tuple[dict, Optional[pd.DataFrame]]:
    """Applies `train_config.head_rebalancing` to the model's head in place; returns (summary, sweep table).

    Inputs are cached pooled features (the head's input) of the validation split and, for `crt`,
    of the unaugmented original training split. `train_counts` is the class prior the head's logits
    carry, which post-hoc adjustment removes: the counts the model was last trained on, or (training
    passes this) `prior_left_by_loss` of them when its loss already removed part of the prior.
    The method is the one registered under that name in `head_choices.py`: `none` (nothing changes),
    `posthoc_logit_adjustment`, `tau_norm` or `crt`.
    The summary holds the method, chosen tau (or None) and validation scores before and after;
    the table (one row per tau, or None) is for the caller to write as CSV.
    """
    method = train_config.head_rebalancing
    kernel, bias = _head_weights(model, head_name)
    val_x = np.asarray(val_features, dtype=np.float64)
    _check_head(kernel, bias)
    if val_x.ndim != 2 or val_x.shape[1] != kernel.shape[0]:
        raise UserError(f"validation features must be [N, {kernel.shape[0]}], got shape {val_x.shape}")

    def val_scores(k: np.ndarray, b: Optional[np.ndarray]) -> dict[str, float]:
        logits = val_x @ k.astype(np.float64) + (0.0 if b is None else b.astype(np.float64))
        return score_predictions(val_labels, np.argmax(logits, axis=1), logits.shape[1])

    summary: dict = {"method": method, "tau": None, "val_before": val_scores(kernel, bias)}
    rebalanced = HEAD_REBALANCINGS.lookup(method)(train_config, HeadInputs(
        kernel, bias, val_x, val_labels, train_counts, train_features, train_labels, verbose))
    if rebalanced is None:  # `none`: the head stays as it is
        summary["val_after"] = summary["val_before"]
        return summary, None
    tau, table, kernel, bias = rebalanced
    set_head_weights(model, [kernel, bias], head_name)
    summary["tau"] = tau
    summary["val_after"] = val_scores(kernel, bias)
    return summary, table
