"""The named head re-balancings (`train.head_rebalancing`): name -> what it does to a trained head.

Registered here, not in `rebalancing.py`, because that module imports TensorFlow at load and
listing the names (`config.validate`, `serengeti-tf train --help`) must not; each builder imports
the `rebalancing.py` functions it uses when called. `rebalancing.rebalance_head` is the caller: it
reads the head and caches the features into its `HeadInputs`, calls the builder, writes the new weights.

A builder takes `(TrainConfig, HeadInputs)` and returns `(tau or None, sweep table or None, kernel,
bias)` for the new head, or None to leave the head as it is. A new method is one more builder; one
that fits a new head on the cached train features (as cRT does) says so with
`register_fitting_head`, so training caches `train.feature_views` views for it and the grid's ETA
counts them. A method's parameters are its settings dataclass (`TauNormSettings` below), registered
with it.

The tau-norm bias rules (`train.tau_norm_bias`) are registered here too: `(bias, factor) -> new bias`,
where `factor` is `1 / ||w_c||^tau` per class (`rebalancing.tau_normalize_head` calls them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from serengeti_tf.choices import HEAD_REBALANCINGS, TAU_NORM_BIASES
from serengeti_tf.errors import UserError
from serengeti_tf.registry import setting_field

if TYPE_CHECKING:  # annotations only: rebalancing.py (TensorFlow) is imported by the builders when called
    import pandas as pd

    from serengeti_tf.train.rebalancing import HeadInputs

    RebalancedHead = tuple[Optional[float], Optional[pd.DataFrame], np.ndarray, Optional[np.ndarray]]


def register_fitting_head(name: str, settings: Optional[type] = None, help: str = ""):
    """`@HEAD_REBALANCINGS.register(name)` for a method that fits a new head on the train features."""
    def register(builder):
        builder.fits_on_train_features = True
        return HEAD_REBALANCINGS.register(name, builder, settings=settings, help=help)

    return register


def fits_on_train_features(name: str) -> bool:
    """Whether head re-balancing `name` fits a new head on the cached train features (cRT) rather
    than only scoring the val split (post-hoc adjustment, tau-norm)."""
    return getattr(HEAD_REBALANCINGS.lookup(name), "fits_on_train_features", False)


def _taus(v) -> bool:
    return len(v) > 0 and all(t >= 0 for t in v)


@dataclass(frozen=True)
class PosthocSettings:
    posthoc_taus: list[float] = setting_field([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0], _taus,
                                              "a non-empty list of floats >= 0",
                                              "the taus swept on the validation split")


@dataclass(frozen=True)
class TauNormSettings:
    tau_norm_taus: list[float] = setting_field([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5],
                                               _taus, "a non-empty list of floats >= 0",
                                               "the taus swept on the validation split")
    tau_norm_bias: str = setting_field("scale", lambda v: v in TAU_NORM_BIASES, TAU_NORM_BIASES.one_of,
                                       "bias of the tau-normalised head (a `train.tau_norm_bias` rule)")


@dataclass(frozen=True)
class CrtSettings:
    crt_epochs: int = setting_field(10, lambda v: v >= 1, "an int >= 1", "epochs of the new head")
    crt_learning_rate: float = setting_field(1e-3, lambda v: 0 < v < 10, "a float in (0, 10)", "its learning rate")
    crt_steps_per_epoch: Optional[int] = setting_field(None, lambda v: v is None or v >= 1, "an int >= 1 or null",
                                                       "batches per epoch (null: training-set size / batch size)")


@TAU_NORM_BIASES.register("scale", help="b_c / ||w_c||^tau: the class's whole logit scaled alike")
def scaled_bias(bias: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return (bias * factor).astype(bias.dtype)


@TAU_NORM_BIASES.register("keep", help="bias unchanged")
def kept_bias(bias: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return bias.copy()


@TAU_NORM_BIASES.register("zero", help="bias 0 (Kang et al.'s bias-free head)")
def zero_bias(bias: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return np.zeros_like(bias)


@HEAD_REBALANCINGS.register("none", help="leave the head as trained")
def keep_head(train_config, head: HeadInputs) -> None:
    return None


@HEAD_REBALANCINGS.register("posthoc_logit_adjustment", settings=PosthocSettings,
                            help="post-hoc logit adjustment: tau * log prior out of the bias, tau by val macro F1")
def posthoc_adjusted_head(train_config, head: HeadInputs) -> RebalancedHead:
    """Tau from `train.posthoc_taus` by validation macro F1, baked into the bias (`posthoc_bias`)."""
    from serengeti_tf.train.rebalancing import posthoc_bias, sweep_tau

    if head.bias is None:
        raise UserError("post-hoc logit adjustment is baked into the head bias, but the head has no bias")
    logits = head.val_features @ head.kernel.astype(np.float64) + head.bias.astype(np.float64)
    settings = HEAD_REBALANCINGS.settings_for("posthoc_logit_adjustment", train_config)
    tau, table = sweep_tau(logits, head.val_labels, head.train_counts, settings.posthoc_taus)
    return tau, table, head.kernel, posthoc_bias(head.bias, head.train_counts, tau)


@HEAD_REBALANCINGS.register("tau_norm", settings=TauNormSettings,
                            help="tau-normalised class weight vectors, tau by val macro F1 (Kang et al. 2020)")
def tau_normalised_head(train_config, head: HeadInputs) -> RebalancedHead:
    """Tau from `train.tau_norm_taus` by validation macro F1, bias rule `train.tau_norm_bias`."""
    from serengeti_tf.train.rebalancing import sweep_tau_norm, tau_normalize_head

    settings = HEAD_REBALANCINGS.settings_for("tau_norm", train_config)
    tau, table = sweep_tau_norm(head.val_features, head.val_labels, head.kernel, head.bias,
                                settings.tau_norm_taus, settings.tau_norm_bias)
    return (tau, table, *tau_normalize_head(head.kernel, head.bias, tau, settings.tau_norm_bias))


@register_fitting_head("crt", settings=CrtSettings,
                       help="cRT: a new head trained with class-balanced sampling on the frozen backbone")
def class_balanced_head(train_config, head: HeadInputs) -> RebalancedHead:
    """`class_balanced_head_retraining` with `train.crt_*`, `train.batch_size` and `train.seed`."""
    from serengeti_tf.train.rebalancing import class_balanced_head_retraining

    if head.train_features is None or head.train_labels is None:
        raise UserError("cRT needs the cached features and labels of the training split")
    if head.bias is None:
        raise UserError("cRT trains a head with bias but the model's head has use_bias=False")
    settings = HEAD_REBALANCINGS.settings_for("crt", train_config)
    kernel, bias = class_balanced_head_retraining(
        head.train_features, head.train_labels, head.kernel.shape[1], epochs=settings.crt_epochs,
        batch_size=train_config.batch_size, learning_rate=settings.crt_learning_rate,
        steps_per_epoch=settings.crt_steps_per_epoch, seed=train_config.seed, verbose=head.verbose)
    return None, None, kernel, bias
