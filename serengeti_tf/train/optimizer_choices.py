"""The named optimizers (`train.optimizer`): name -> builder `(learning_rate, backbone_factor)`.

Registered here, not in `optimizers.py`, because that module imports Keras at load (its classes
subclass Keras optimizers) and listing the names (`config.validate`, `--help`) must not; a builder
imports Keras when called. `backbone_factor` is None for one learning rate everywhere, else the
backbone's rate over the head's (`train.backbone_learning_rate`, phase 1: the `Discriminative*`
classes of `optimizers.py`). `make_optimizer` is the caller.

A new optimizer is one registered builder here.
"""

from __future__ import annotations

from typing import Optional

from serengeti_tf.choices import OPTIMIZERS


@OPTIMIZERS.register("adam", help="Adam (as in the paper)")
def adam(learning_rate: float, backbone_factor: Optional[float]):
    import keras

    if backbone_factor is None:
        return keras.optimizers.Adam(learning_rate=learning_rate)
    from serengeti_tf.models.resnet import HEAD_NAME
    from serengeti_tf.train.optimizers import DiscriminativeAdam

    return DiscriminativeAdam(backbone_factor=backbone_factor, head_layer=HEAD_NAME, learning_rate=learning_rate)


@OPTIMIZERS.register("sgd", help="SGD with momentum 0.9")
def sgd(learning_rate: float, backbone_factor: Optional[float]):
    import keras

    if backbone_factor is None:
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    from serengeti_tf.models.resnet import HEAD_NAME
    from serengeti_tf.train.optimizers import DiscriminativeSGD

    return DiscriminativeSGD(backbone_factor=backbone_factor, head_layer=HEAD_NAME, learning_rate=learning_rate,
                             momentum=0.9)


def make_optimizer(train_config):
    """A fresh optimizer of `train.optimizer`; in phase 1 with `train.backbone_learning_rate` the
    backbone's variables use that rate and the head keeps `train.learning_rate`."""
    factor = None
    if train_config.backbone_learning_rate is not None and train_config.phase == 1:
        factor = train_config.backbone_learning_rate / train_config.learning_rate
    return OPTIMIZERS.lookup(train_config.optimizer)(train_config.learning_rate, factor)
