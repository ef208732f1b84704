"""The named models (`model.name`): name -> builder `(ModelConfig, num_classes, synchronized_bn)`.

Registered here, not in `resnet.py`, because that module imports Keras at load and listing the
names (`config.validate`, `--help`) must not; a builder imports its network code when called.
`resnet.build_model` is the caller. A new model is its builder function plus one registration.
"""

from __future__ import annotations

from serengeti_tf.choices import MODELS


@MODELS.register("resnet18", help="ResNet-18 (the paper's network)")
def resnet18(model_config, num_classes: int, synchronized_bn: bool = False):
    """ResNet-18 (`resnet.build_resnet18`) at `model_config.input_size`."""
    from serengeti_tf.models.resnet import build_resnet18

    return build_resnet18(num_classes, model_config.input_size, name=model_config.name,
                          synchronized_bn=synchronized_bn)
