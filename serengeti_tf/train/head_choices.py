"""The named head re-balancings (`train.head_rebalancing`): name -> what it does to a trained head.

Registered here, not in `rebalancing.py`, because that module imports TensorFlow at load and
listing the names (`config.validate`, `serengeti-tf train --help`) must not; each builder imports
the `rebalancing.py` functions it uses when called. `rebalancing.rebalance_head` is the caller: it
reads the head and caches the features into its `HeadInputs`, calls the builder, writes the new weights.

A builder takes `(TrainConfig, HeadInputs)` and returns `(tau or None, sweep table or None, kernel,
bias)` for the new head, or None to leave the head as it is. A new method is one more builder; one
that fits a new head on the cached train features (as cRT does) says so with
`register_fitting_head`, so training caches `train.feature_views` views for it and the grid's ETA
counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from serengeti_tf.choices import HEAD_REBALANCINGS
from serengeti_tf.errors import UserError

if TYPE_CHECKING:  # annotations only: rebalancing.py (TensorFlow) is imported by the builders when called
    import pandas as pd

    from serengeti_tf.train.rebalancing import HeadInputs

    RebalancedHead = tuple[Optional[float], Optional[pd.DataFrame], np.ndarray, Optional[np.ndarray]]


def register_fitting_head(name: str):
    """`@HEAD_REBALANCINGS.register(name)` for a method that fits a new head on the train features."""
    def register(builder):
        builder.fits_on_train_features = True
        return HEAD_REBALANCINGS.register(name, builder)

    return register


def fits_on_train_features(name: str) -> bool:
    """Whether head re-balancing `name` fits a new head on the cached train features (cRT) rather
    than only scoring the val split (post-hoc adjustment, tau-norm)."""
    return getattr(HEAD_REBALANCINGS.lookup(name), "fits_on_train_features", False)


@HEAD_REBALANCINGS.register("none")
def keep_head(train_config, head: HeadInputs) -> None:
    return None


@HEAD_REBALANCINGS.register("posthoc_logit_adjustment")
def posthoc_adjusted_head(train_config, head: HeadInputs) -> RebalancedHead:
    """Tau from `train.posthoc_taus` by validation macro F1, baked into the bias (`posthoc_bias`)."""
    from serengeti_tf.train.rebalancing import posthoc_bias, sweep_tau

    if head.bias is None:
        raise UserError("post-hoc logit adjustment is baked into the head bias, but the head has no bias")
    logits = head.val_features @ head.kernel.astype(np.float64) + head.bias.astype(np.float64)
    tau, table = sweep_tau(logits, head.val_labels, head.train_counts, train_config.posthoc_taus)
    return tau, table, head.kernel, posthoc_bias(head.bias, head.train_counts, tau)


@HEAD_REBALANCINGS.register("tau_norm")
def tau_normalised_head(train_config, head: HeadInputs) -> RebalancedHead:
    """Tau from `train.tau_norm_taus` by validation macro F1, bias rule `train.tau_norm_bias`."""
    from serengeti_tf.train.rebalancing import sweep_tau_norm, tau_normalize_head

    tau, table = sweep_tau_norm(head.val_features, head.val_labels, head.kernel, head.bias,
                                train_config.tau_norm_taus, train_config.tau_norm_bias)
    return (tau, table, *tau_normalize_head(head.kernel, head.bias, tau, train_config.tau_norm_bias))


@register_fitting_head("crt")
def class_balanced_head(train_config, head: HeadInputs) -> RebalancedHead:
    """`class_balanced_head_retraining` with `train.crt_*`, `train.batch_size` and `train.seed`."""
    from serengeti_tf.train.rebalancing import class_balanced_head_retraining

    if head.train_features is None or head.train_labels is None:
        raise UserError("cRT needs the cached features and labels of the training split")
    if head.bias is None:
        raise UserError("cRT trains a head with bias but the model's head has use_bias=False")
    kernel, bias = class_balanced_head_retraining(
        head.train_features, head.train_labels, head.kernel.shape[1], epochs=train_config.crt_epochs,
        batch_size=train_config.batch_size, learning_rate=train_config.crt_learning_rate,
        steps_per_epoch=train_config.crt_steps_per_epoch, seed=train_config.seed, verbose=head.verbose)
    return None, None, kernel, bias
