"""Algorithm-level imbalance methods: class weights and imbalance-aware losses (issue 6).

Every loss here takes sparse int labels (`[B]` or `[B, 1]`) and the model's raw logits
(`[B, C]`), like `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`, and returns the
per-example loss that Keras reduces with `sum_over_batch_size` (a plain mean over the batch; class
weights are NOT re-normalised by the batch's weight sum, as with Keras `class_weight`).

- `class_weights`: inverse frequency or effective number of samples (Cui et al., CVPR 2019).
- `ClassWeightedCrossEntropy`: cross-entropy with a per-class weight on each example.
- `FocalLoss`: Lin et al. (ICCV 2017), `-w_y (1 - p_y)^gamma log p_y`, optional class weights.
- `LogitAdjustedLoss`: Menon et al. (ICLR 2021), cross-entropy on `logits + tau * log prior`.
- `BalancedSoftmaxLoss`: Ren et al. (NeurIPS 2020), the same with tau = 1 and train counts.
- `make_loss`: the one entry point training calls, driven by `TrainConfig`.

The names `train.loss` and `train.class_weighting` take are registered, with their builders, in
`loss_choices.py` (which imports without Keras, so the CLI and config can list them).

The logit-adjusted losses only add the prior while training: at inference the model's raw logits
are already the balanced scores, so prediction code uses them unchanged.

All losses are registered Keras serialisables, so a `model.keras` compiled with one reloads with
`keras.saving.load_model` and no `custom_objects`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

from serengeti_tf.choices import CLASS_WEIGHTINGS, LOSSES
from serengeti_tf.errors import UserError

_PACKAGE = "serengeti_tf"


# ---------------------------------------------------------------------------------------------
# Validation and numpy helpers (pure)
# ---------------------------------------------------------------------------------------------

def _as_counts(train_counts: Sequence[int], what: str = "train_counts") -> np.ndarray:
    """Checks per-class counts: a non-empty 1-D list of ints >= 0 with at least one > 0."""
    counts = np.asarray(train_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise UserError(f"{what} must be a non-empty list of per-class counts, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise UserError(f"{what} must hold ints >= 0, got {list(np.asarray(train_counts).tolist())}")
    if counts.sum() <= 0:
        raise UserError(f"{what} must have at least one class with images, got all zeros ({counts.size} classes)")
    return counts


def normalise_priors(priors: Sequence[float]) -> np.ndarray:
    """Priors (or counts) -> probabilities summing to 1, with zero entries floored.

    A class with prior 0 (no training images) would get log prior = -inf, making the loss infinite
    for any such label (e.g. in the validation split). Such classes get half the smallest positive
    prior instead: rarer than every class seen in training, but finite. The result is renormalised.
    """
    values = np.asarray(priors, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise UserError(f"class priors must be a non-empty 1-D list, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise UserError(f"class priors must be finite, >= 0 and not all zero, got {values.tolist()}")
    values = values / values.sum()
    if np.any(values == 0):
        values = np.where(values == 0, values[values > 0].min() / 2, values)
        values = values / values.sum()
    return values


def log_priors(priors: Sequence[float]) -> np.ndarray:
    """`log(normalise_priors(priors))` as float64 (finite for every class)."""
    return np.log(normalise_priors(priors))


def class_weights(train_counts: Sequence[int], method: str, beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights from training counts, as float32 `[C]`.

    `method` names a registered class weighting (`loss_choices.py`): `none` gives all ones;
    `inverse` is `w_c ∝ 1 / n_c`; `effective_number` (Cui et al., CVPR 2019) is
    `w_c ∝ (1 - beta) / (1 - beta ** n_c)`.

    Normalisation: weights of classes with at least one training image average 1 (they sum to the
    number of such classes, Cui et al.'s rule), so the loss keeps the scale of plain cross-entropy.
    Classes with 0 training images get weight 0: they never occur in training, and a validation
    label of such a class then adds nothing to the validation loss.
    """
    weights = _weights_or_none(train_counts, method, beta)
    return np.ones(len(_as_counts(train_counts)), dtype=np.float32) if weights is None else weights


def _weights_or_none(train_counts: Sequence[int], method: str, beta: float) -> Optional[np.ndarray]:
    """`class_weights`, or None when the weighting is no weighting (`none`)."""
    weigh = CLASS_WEIGHTINGS.lookup(method)
    if not (0 <= beta < 1):
        raise UserError(f"effective_number beta must be in [0, 1), got {beta!r}")
    counts = _as_counts(train_counts)
    present = counts > 0
    present_weights = weigh(counts[present], beta)
    if present_weights is None:
        return None
    raw = np.zeros_like(counts)
    raw[present] = present_weights
    raw *= present.sum() / raw.sum()
    return raw.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Tensor helpers
# ---------------------------------------------------------------------------------------------

def adjusted_logits(logits, priors: Sequence[float], tau: float = 1.0):
    """`logits + tau * log(prior)` (Menon et al.'s training-time adjustment); tensor `[B, C]`.

    `priors` may be counts (they are normalised; only differences between classes matter under
    softmax). Zero priors are floored as in `normalise_priors`.
    """
    offset = ops.convert_to_tensor(float(tau) * log_priors(priors), dtype="float32")
    return ops.cast(logits, "float32") + offset


def _sparse_labels(y_true):
    return ops.reshape(ops.cast(y_true, "int32"), (-1,))


def _log_prob_of_label(logits, labels):
    """log softmax(logits)[label] per example, `[B]`."""
    log_probs = ops.log_softmax(logits, axis=-1)
    return ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1)[:, 0]


def _check_width(logits, size: int, what: str) -> None:
    width = logits.shape[-1]
    if width is not None and width != size:
        raise UserError(f"{what} has {size} classes but the model outputs {width} logits")


class _ClassWeightsMixin:
    """Optional per-class weights stored as plain floats (JSON-serialisable)."""

    def _set_weights(self, weights: Optional[Sequence[float]]) -> None:
        if weights is None:
            self.class_weights = None
            return
        values = np.asarray(weights, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise UserError(f"class_weights must be a non-empty list of finite numbers >= 0, got {weights!r}")
        self.class_weights = [float(v) for v in values]

    def _weigh(self, per_example, labels, logits):
        if self.class_weights is None:
            return per_example
        _check_width(logits, len(self.class_weights), "class_weights")
        weights = ops.convert_to_tensor(self.class_weights, dtype="float32")
        return per_example * ops.take(weights, labels)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassWeightedCrossEntropy(_ClassWeightsMixin, keras.losses.Loss):
    """Sparse cross-entropy on logits with `class_weights[y]` on each example."""

    def __init__(self, class_weights: Sequence[float], name: str = "class_weighted_cross_entropy",
                 reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if class_weights is None:
            raise UserError("ClassWeightedCrossEntropy needs class_weights, got None")
        self._set_weights(class_weights)

    def call(self, y_true, y_pred):
        labels, logits = _sparse_labels(y_true), ops.cast(y_pred, "float32")
        return self._weigh(-_log_prob_of_label(logits, labels), labels, logits)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(_ClassWeightsMixin, keras.losses.Loss):
    """Focal loss on logits: `-w_y (1 - p_y)^gamma log p_y` (Lin et al., ICCV 2017).

    `gamma = 0` without class weights is exactly sparse categorical cross-entropy. `gamma > 0`
    shrinks the loss of well-classified examples (p_y near 1) so rare, hard ones weigh more.
    """

    def __init__(self, gamma: float = 2.0, class_weights: Optional[Sequence[float]] = None,
                 name: str = "focal_loss", reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not gamma >= 0:
            raise UserError(f"focal gamma must be a number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self._set_weights(class_weights)

    def call(self, y_true, y_pred):
        labels, logits = _sparse_labels(y_true), ops.cast(y_pred, "float32")
        log_p = _log_prob_of_label(logits, labels)
        loss = -log_p
        if self.gamma > 0:
            # 1 - p computed as -expm1(log p) stays accurate for p near 1; the floor keeps the gradient
            # of (1-p)^gamma finite for gamma < 1 (an example that close to p = 1 contributes ~0 anyway).
            one_minus_p = ops.maximum(-ops.expm1(log_p), 1e-12)
            loss = ops.power(one_minus_p, self.gamma) * loss
        return self._weigh(loss, labels, logits)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LogitAdjustedLoss(_ClassWeightsMixin, keras.losses.Loss):
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021): CE on `logits + tau * log prior`.

    Training against the prior-shifted logits makes the raw logits approximate the balanced
    (class-prior-free) scores, so inference uses the raw logits. `tau = 0` is plain cross-entropy.
    Class weights are optional; combining them with the adjustment corrects for imbalance twice.
    """

    def __init__(self, class_priors: Sequence[float], tau: float = 1.0,
                 class_weights: Optional[Sequence[float]] = None, name: str = "logit_adjusted_loss",
                 reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not tau >= 0:
            raise UserError(f"logit adjustment tau must be a number >= 0, got {tau!r}")
        normalise_priors(class_priors)  # validates; kept as given so get_config round-trips exactly
        self.class_priors = [float(v) for v in np.asarray(class_priors, dtype=np.float64)]
        self.tau = float(tau)
        self._set_weights(class_weights)
        if self.class_weights is not None and len(self.class_weights) != len(self.class_priors):
            raise UserError(f"class_weights has {len(self.class_weights)} classes but class priors have "
                            f"{len(self.class_priors)}")

    def call(self, y_true, y_pred):
        labels = _sparse_labels(y_true)
        _check_width(y_pred, len(self.class_priors), "class priors")
        logits = adjusted_logits(y_pred, self.class_priors, self.tau)
        return self._weigh(-_log_prob_of_label(logits, labels), labels, logits)

    def get_config(self):
        return {**super().get_config(), "class_priors": self.class_priors, "tau": self.tau,
                "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al., NeurIPS 2020): CE on `logits + log n_c` (tau = 1, train counts).

    `log n_c` and `log prior_c` differ by the constant `log N`, which softmax ignores.
    """

    def __init__(self, class_counts: Sequence[int], class_weights: Optional[Sequence[float]] = None,
                 name: str = "balanced_softmax_loss", reduction: str = "sum_over_batch_size", **kwargs):
        counts = _as_counts(class_counts, "class_counts")
        super().__init__(class_priors=counts, tau=1.0, class_weights=class_weights, name=name,
                         reduction=reduction, **kwargs)
        self.class_counts = [int(v) for v in counts]

    def get_config(self):
        config = super().get_config()
        for key in ("class_priors", "tau"):
            config.pop(key)
        return {**config, "class_counts": self.class_counts}


# ---------------------------------------------------------------------------------------------
# The entry point training calls
# ---------------------------------------------------------------------------------------------

def make_loss(train_config, train_counts: Sequence[int]) -> keras.losses.Loss:
    """The loss for `train_config` (a `config.TrainConfig`), given the per-class counts the loss sees.

    `train_counts` must be the class distribution of the batches the loss is applied to: the
    original train counts when no sampler re-balances them (with a phase-1 sampler, the plan's
    per-class targets; otherwise weights/priors correct for an imbalance that is no longer there).

    The loss is the builder registered as `train_config.loss` (`loss_choices.py`), given the counts
    and the class weights of `class_weighting` (None for `none`):
    - `cross_entropy`: plain `SparseCategoricalCrossentropy(from_logits=True)`, or
      `ClassWeightedCrossEntropy` when `class_weighting` is not `none`.
    - `focal`: `FocalLoss(focal_gamma)`, with class weights when `class_weighting` is not `none`.
    - `logit_adjusted`: `LogitAdjustedLoss(train_counts, logit_adjust_tau)`.
    - `balanced_softmax`: `BalancedSoftmaxLoss(train_counts)`.
    The two logit-adjusted losses also take class weights when asked (double correction; allowed
    so a grid can include it).
    """
    build = LOSSES.lookup(train_config.loss)
    counts = _as_counts(train_counts)
    weights = _weights_or_none(counts, train_config.class_weighting, train_config.effective_number_beta)
    return build(train_config, counts, weights)
