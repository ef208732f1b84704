"""ResNet-18 in the Keras 3 functional API, plus the phase-2 freeze and the feature extractor.

The network follows He et al. (2016): a 7x7 stride-2 stem and 3x3 stride-2 max-pool, four stages
of two basic blocks (64, 128, 256, 512 filters; stages 3-5 downsample with a 1x1 stride-2
projection shortcut), global average pooling and one Dense head. The head outputs LOGITS and is
always float32, so under a mixed-precision policy the loss is still computed in float32.

Stride-2 layers pad symmetrically (explicit `ZeroPadding2D`, then a `valid` convolution/pool), as
the original ResNet, torchvision and keras-hub's `ResNetBackbone` do. Keras' `padding="same"` pads
the bottom/right only for even inputs, which shifts the sampling grid by one pixel: pretrained
ImageNet filters (`pretrained.py`) would then see different inputs than they were trained on.
With the same padding, this backbone computes exactly what keras-hub's ResNet-18 computes.

Layer names are predictable (`stem_conv`, `stage2_block1_conv1`, `stage3_block1_shortcut_bn`,
`pool`, `classifier`) so code selects layers by role, never by position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np
from keras import layers

from serengeti_tf.choices import MODELS
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import atomic_path

HEAD_NAME = "classifier"  # the final Dense layer: the only trainable layer in phase 2
POOL_NAME = "pool"  # global average pooling: the backbone's output (512 features)
STAGE_FILTERS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)
MIN_INPUT_SIZE = 32  # five stride-2 steps: 32 px leaves a 1x1 map before pooling


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True, sync: bool = False):
    padding = "same"
    if stride > 1 and kernel > 1:  # symmetric padding (see the module doc); a 1x1 needs none
        x = layers.ZeroPadding2D((kernel - 1) // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, synchronized=sync, name=f"{name}_bn")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(x, filters: int, stride: int, name: str, sync: bool):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_shortcut", relu=False, sync=sync)
    y = _conv_bn(x, filters, 3, stride, f"{name}_conv1", sync=sync)
    y = _conv_bn(y, filters, 3, 1, f"{name}_conv2", relu=False, sync=sync)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"model: {name} must be an int >= {minimum}, got {value!r}")


def build_resnet18(num_classes: int, input_size: int = 224, name: str = "resnet18",
                   synchronized_bn: bool = False) -> keras.Model:
    """ResNet-18 from random initialisation (nothing downloaded); outputs float32 logits.

    Input: float32 images `[B, input_size, input_size, 3]` already normalised by the pipeline.
    About 11.2 M weights for 52 classes; the head has `512 * num_classes + num_classes`.
    `synchronized_bn`: batch statistics over the GLOBAL batch under a multi-replica tf.distribute
    strategy. Keras 3 never synchronises BN moving statistics between replicas, so without it
    each worker would end with different moving statistics (and different val metrics).
    """
    _check_int("num_classes", num_classes, 2)
    _check_int("input_size", input_size, MIN_INPUT_SIZE)
    if not isinstance(name, str) or not name:
        raise UserError(f"model: name must be a non-empty string, got {name!r}")

    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = _conv_bn(inputs, STAGE_FILTERS[0], 7, 2, "stem_conv", sync=bool(synchronized_bn))
    # Zero padding is safe before the max-pool: the ReLU output is >= 0.
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for stage, (filters, blocks) in enumerate(zip(STAGE_FILTERS, BLOCKS_PER_STAGE), start=2):
        for block in range(1, blocks + 1):
            # The first block of stages 3-5 halves the resolution (stage 2 follows the max-pool).
            stride = 2 if block == 1 and stage > 2 else 1
            x = _basic_block(x, filters, stride, f"stage{stage}_block{block}", bool(synchronized_bn))
    x = layers.GlobalAveragePooling2D(name=POOL_NAME)(x)
    # float32 head: logits (and the loss on them) stay float32 under a mixed-precision policy.
    outputs = layers.Dense(num_classes, name=HEAD_NAME, dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def build_model(model_config, num_classes: int, synchronized_bn: bool = False) -> keras.Model:
    """Builds the network named by `config.model` (`name`, `input_size`): the builder registered
    under that name in `models/choices.py`."""
    return MODELS.lookup(model_config.name)(model_config, num_classes, synchronized_bn)


def head_layer(model: keras.Model, name: Optional[str] = HEAD_NAME) -> layers.Dense:
    """The classification head: the layer called `name` (by role name, as this package builds
    models), or with `name=None` the layer producing the model's output (any model ending in a
    Dense head). It must be a linear Dense layer: it outputs logits."""
    if name is None:
        layer = next((candidate for candidate in model.layers
                      if _single_output(candidate) is model.outputs[0]), None)
    else:
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise UserError(f"model {model.name!r} has no head layer named {name!r} "
                            f"(layers end with {[layer.name for layer in model.layers[-3:]]})") from None
    if not isinstance(layer, layers.Dense) or keras.activations.serialize(layer.activation) != "linear":
        found = type(layer).__name__ if layer is not None else "nothing"
        raise UserError(f"model {model.name!r} needs a linear Dense head producing logits, found {found}")
    return layer


def _single_output(layer: layers.Layer):
    """The layer's output tensor (of its first call), or None for a layer without one."""
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


def freeze_backbone(model: keras.Model) -> keras.Model:
    """Makes every layer except the head non-trainable, in place; returns the model.

    In Keras 3 a BatchNormalization layer with `trainable=False` runs in inference mode (it uses
    and never updates its moving statistics, even inside `fit`), which is what phase 2 needs.
    Recompile afterwards: `trainable` changes only take effect at compile time.
    """
    head = head_layer(model)
    for layer in model.layers:
        layer.trainable = layer is head
    head.trainable = True
    return model


def layer_stage(name: str) -> int | None:
    """Backbone stage of a layer from its role name: 1 for `stem_*`, k for `stage<k>_*`, else None."""
    if name.startswith("stem_"):
        return 1
    if name.startswith("stage") and name[5:6].isdigit():
        return int(name[5:6])
    return None


def freeze_stages(model: keras.Model, stages: int) -> list[str]:
    """Makes the stem (stage 1) and stages 2..`stages` non-trainable, in place; returns their names.

    `stages` 0 freezes nothing, 5 the whole backbone. Selected by role name, never by position;
    frozen BatchNorm layers run in inference mode (see `freeze_backbone`). Recompile afterwards.
    """
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= 5:
        raise UserError(f"model: freeze_stages must be an int in [0, 5], got {stages!r}")
    frozen = []
    for layer in model.layers:
        stage = layer_stage(layer.name)
        if stage is not None and stage <= stages:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def count_weights(model: keras.Model, trainable: bool = True) -> int:
    """Number of scalar weights that are (or are not) trainable."""
    variables = model.trainable_weights if trainable else model.non_trainable_weights
    return int(sum(int(v.numpy().size) for v in variables))


def feature_extractor(model: keras.Model, head_name: Optional[str] = HEAD_NAME) -> keras.Model:
    """A model sharing `model`'s layers (and weights) from its input to the head's input: the
    pooled backbone features (`[B, 512]` for ResNet-18). `head_name` as in `head_layer`."""
    head = head_layer(model, head_name)  # fails clearly on a model without the expected head
    return keras.Model(model.inputs[0], head.input, name=f"{model.name}_features")


def head_model(model: keras.Model) -> keras.Model:
    """A standalone copy of the head (features -> logits) with the same weights and dtype policy."""
    head = head_layer(model)
    features = keras.Input(shape=(head.kernel.shape[0],), name="features")
    copy = layers.Dense(head.units, name=HEAD_NAME, dtype=head.dtype_policy)
    outputs = copy(features)
    copy.set_weights(head.get_weights())
    return keras.Model(features, outputs, name=f"{model.name}_head")


def set_head_weights(model: keras.Model, weights: Sequence, head_name: Optional[str] = HEAD_NAME) -> None:
    """Writes head weights `[kernel, bias]` into `model`'s head layer in place (a None bias for a
    head without one), checking shapes and keeping the head's dtypes; touches nothing else."""
    head = head_layer(model, head_name)
    current = head.get_weights()
    new = [np.asarray(w) for w in weights if w is not None]
    if len(new) != len(current) or any(a.shape != b.shape for a, b in zip(new, current)):
        raise UserError(f"new head weights {[a.shape for a in new]} do not match the head "
                        f"{[b.shape for b in current]}")
    head.set_weights([a.astype(b.dtype) for a, b in zip(new, current)])


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Saves as `.keras` atomically (temp name + rename): never a half-written model file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"model files must end in .keras, got {path}")
    with atomic_path(path) as tmp:
        keras_tmp = tmp.with_suffix(".keras")  # Keras insists on the extension
        model.save(keras_tmp)
        keras_tmp.replace(tmp)
    return path


def load_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Loads a `.keras` model written by `save_model`; UserError when missing or unreadable.

    A model naming this project's own Keras classes loads once their module is imported (each
    registers them with `keras.saving.register_keras_serializable`): the caller imports it, as
    `train/` does for its losses and optimizers (compiled checkpoints) and `evaluate/predict.py`
    for `models/export.py`'s preprocessing layer. This module stays below both (docs/design.md, Layers).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as err:  # Keras raises many types for corrupt files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot load model {path}: {reason}") from None
