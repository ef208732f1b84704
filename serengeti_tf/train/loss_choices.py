"""The named losses (`train.loss`) and class weightings (`train.class_weighting`): name -> builder.

They are registered here, not in `losses.py`, because `losses.py` imports Keras at load (its loss
classes subclass `keras.losses.Loss`) and listing the names must not: `config.validate` and
`serengeti-tf train --help` read `choices.LOSSES` / `choices.CLASS_WEIGHTINGS`, which import only this
module. A loss builder imports its Keras class when called. `losses.make_loss` and
`losses.class_weights` are the callers.

A new loss is its class in `losses.py` plus one registered builder here, with its settings dataclass
when it has parameters (`FocalSettings` below: the field is the config key `train.focal_gamma`, its
rule and help beside it); a new class weighting is one registered function here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from serengeti_tf.choices import CLASS_WEIGHTINGS, LOSSES
from serengeti_tf.registry import setting_field


@dataclass(frozen=True)
class EffectiveNumberSettings:
    effective_number_beta: float = setting_field(0.999, lambda v: 0 <= v < 1, "a float in [0, 1)",
                                                 "beta of the effective number of samples (-> 1: inverse frequency)")


@dataclass(frozen=True)
class FocalSettings:
    focal_gamma: float = setting_field(2.0, lambda v: v >= 0, "a float >= 0", "focusing exponent (0 = cross-entropy)")


@dataclass(frozen=True)
class LogitAdjustedSettings:
    logit_adjust_tau: float = setting_field(1.0, lambda v: v >= 0, "a float >= 0",
                                            "how much of the log class prior the loss adds to the logits")

# ---- class weightings: (counts of the classes with images, beta) -> their raw weights ----------
# `losses.class_weights` rescales the result so the weights of those classes average 1 and gives
# classes without images weight 0; None means no weighting (all ones, and a plain loss).


@CLASS_WEIGHTINGS.register("none", help="no class weights")
def no_weights(counts: np.ndarray, beta: float) -> None:
    return None


@CLASS_WEIGHTINGS.register("inverse", help="weights proportional to 1 / class count")
def inverse_frequency_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """`w_c ∝ 1 / n_c`."""
    return 1.0 / counts


@CLASS_WEIGHTINGS.register("effective_number", settings=EffectiveNumberSettings,
                           help="inverse effective number of samples (Cui et al. 2019)")
def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. (CVPR 2019): `w_c ∝ (1 - beta) / (1 - beta ** n_c)`, the inverse of the "effective
    number of samples" `(1 - beta^n) / (1 - beta)`. `beta = 0` gives equal weights; `beta -> 1`
    approaches `inverse`."""
    # -expm1(n log beta) = 1 - beta^n, accurate when beta is close to 1; beta = 0 gives 1 for n >= 1.
    effective = -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones(counts.size)
    return (1.0 - beta) / effective


# ---- losses: (TrainConfig, counts the loss sees, class weights or None) -> a Keras loss --------

@LOSSES.register("cross_entropy", help="sparse categorical cross-entropy (the paper's)")
def cross_entropy(train_config, counts: np.ndarray, weights: Optional[np.ndarray]):
    """Plain sparse cross-entropy on logits, or `ClassWeightedCrossEntropy` with class weights."""
    import keras

    from serengeti_tf.train.losses import ClassWeightedCrossEntropy

    if weights is None:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return ClassWeightedCrossEntropy(weights)


@LOSSES.register("focal", settings=FocalSettings, help="focal loss: down-weights easy images (Lin et al. 2017)")
def focal(train_config, counts: np.ndarray, weights: Optional[np.ndarray]):
    """`FocalLoss(train.focal_gamma)`."""
    from serengeti_tf.train.losses import FocalLoss

    settings = LOSSES.settings_for("focal", train_config)
    return FocalLoss(settings.focal_gamma, class_weights=weights)


@LOSSES.register("balanced_softmax", help="balanced softmax: log class prior added to the logits (Ren et al. 2020)")
def balanced_softmax(train_config, counts: np.ndarray, weights: Optional[np.ndarray]):
    """`BalancedSoftmaxLoss(counts)`."""
    from serengeti_tf.train.losses import BalancedSoftmaxLoss

    return BalancedSoftmaxLoss(counts, class_weights=weights)


@LOSSES.register("logit_adjusted", settings=LogitAdjustedSettings,
                 help="logit-adjusted loss: tau * log class prior added to the logits (Menon et al. 2021)")
def logit_adjusted(train_config, counts: np.ndarray, weights: Optional[np.ndarray]):
    """`LogitAdjustedLoss(counts, train.logit_adjust_tau)`."""
    from serengeti_tf.train.losses import LogitAdjustedLoss

    settings = LOSSES.settings_for("logit_adjusted", train_config)
    return LogitAdjustedLoss(counts, tau=settings.logit_adjust_tau, class_weights=weights)
