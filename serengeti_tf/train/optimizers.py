"""Discriminative learning rates for fine-tuning (`train.backbone_learning_rate`).

Keras 3 optimizers have one learning rate. These subclasses scale it by `backbone_factor` for every
variable outside the head (`head_layer`, matched by the variable path `<layer>/<weight>`), so a
pretrained backbone moves slower than the new head. Scaling the gradients instead would not work for
Adam, whose update does not depend on the gradient's scale. Both classes are registered, so a
checkpoint saved with its optimizer state reloads and resumes with the same rates. The named
optimizers (`train.optimizer`) that build them are in `optimizer_choices.py`.
"""

from __future__ import annotations

import keras


class _BackboneRate:
    """Mixin before a Keras optimizer: backbone variables use `learning_rate * backbone_factor`."""

    def __init__(self, backbone_factor: float = 1.0, head_layer: str = "classifier", **kwargs):
        super().__init__(**kwargs)
        self.backbone_factor = float(backbone_factor)
        self.head_layer = head_layer

    def update_step(self, gradient, variable, learning_rate):
        # A Keras variable has `path` (`classifier/kernel`); the TF backend passes the bare
        # tf.Variable, whose `name` starts the same way (`classifier/kernel:0`).
        path = getattr(variable, "path", None) or variable.name
        if path.split("/")[0] != self.head_layer:
            learning_rate = learning_rate * self.backbone_factor
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_factor": self.backbone_factor, "head_layer": self.head_layer}


@keras.saving.register_keras_serializable(package="serengeti_tf")
class DiscriminativeAdam(_BackboneRate, keras.optimizers.Adam):
    """Adam with a separate backbone learning rate."""


@keras.saving.register_keras_serializable(package="serengeti_tf")
class DiscriminativeSGD(_BackboneRate, keras.optimizers.SGD):
    """SGD with a separate backbone learning rate."""

