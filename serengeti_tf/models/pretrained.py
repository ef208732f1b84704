"""Start phase 1 from pretrained backbone weights on a local path (`train.init_weights`); nothing downloads.

Sources (`describe_source` tells them apart):

    keras-hub preset folder   `config.json` + `model.weights.h5`, the layout of keras-hub's
                              `resnet_18_imagenet` preset as users download it. Loaded with keras-hub's
                              own `Backbone.from_preset` (the optional extra `pip install .[hub]`).
    this project's model      a `.keras` file, or a training run folder (its `model.keras`),
                              e.g. a run trained on another camera-trap dataset.
    this project's weights    a `.weights.h5` written by `Model.save_weights` of this project's ResNet-18.

The head is never copied: it is always new, sized to the class map. Every other layer with weights
(convolutions and BatchNorm: gamma, beta, moving mean and variance) must receive weights from the
source; the mapping is checked layer by layer and a missing layer or a shape mismatch is one
`UserError` naming the layer and both shapes.

keras-hub's ResNet-18 (ResNet v1, `basic_block`, blocks [2, 2, 2, 2], one 7x7 stem convolution) and
this project's `model.build_resnet18` have the same layers, named differently, and the same
symmetric padding, so the mapping is one-to-one (`KERAS_HUB_NAMES`) and the loaded backbone computes
what keras-hub's does. Pretrained ImageNet weights expect ImageNet mean/std normalisation, which is
what `pipeline.normalize` does.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import update_digest
from serengeti_tf.run_folder import MODEL, RunFolder

KERAS_HUB_CLASS = "ResNetBackbone"
# The keras-hub ResNetBackbone settings of ResNet-18 v1 (its `resnet_18_imagenet` preset).
KERAS_HUB_RESNET18 = {"input_conv_filters": [64], "input_conv_kernel_sizes": [7],
                      "stackwise_num_filters": [64, 128, 256, 512], "stackwise_num_blocks": [2, 2, 2, 2],
                      "stackwise_num_strides": [1, 2, 2, 2], "block_type": "basic_block",
                      "use_pre_activation": False}
HUB_INSTALL_HINT = "pip install 'serengeti-tf[hub]' (or pip install keras-hub)"


def keras_hub_name(name: str) -> str:
    """keras-hub ResNetBackbone layer name of one of this project's backbone layers.

    stem_conv -> conv1_conv, stem_conv_bn -> conv1_bn, stage<s>_block<b>_conv<k>[_bn] ->
    stack<s-2>_block<b-1>_<k>_conv / _bn, stage<s>_block<b>_shortcut[_bn] -> stack<s-2>_block<b-1>_0_conv / _bn.
    """
    if name in ("stem_conv", "stem_conv_bn"):
        return "conv1_bn" if name.endswith("_bn") else "conv1_conv"
    match = re.fullmatch(r"stage(\d)_block(\d)_(conv1|conv2|shortcut)(_bn)?", name)
    if not match:
        raise UserError(f"init weights: no keras-hub counterpart for layer {name!r}")
    stage, block, role, bn = match.groups()
    index = {"conv1": 1, "conv2": 2, "shortcut": 0}[role]
    return f"stack{int(stage) - 2}_block{int(block) - 1}_{index}_{'bn' if bn else 'conv'}"


def describe_source(source: str | Path) -> dict[str, Any]:
    """Kind and file(s) of an init-weights source, checked without loading it (cheap; no TensorFlow).

    Returns {"path", "kind" ("keras_hub_preset" | "keras_model" | "weights_h5"), "files"}.
    """
    path = Path(source)
    if not path.exists():
        raise UserError(f"init weights not found: {path} (expected a keras-hub preset folder, a .keras model, "
                        f"a training run folder or a .weights.h5)")
    if path.is_dir():
        if (path / "config.json").is_file():
            weights = sorted(path.glob("model*.weights.h5")) + sorted(path.glob("model*.weights.json"))
            if not weights:
                raise UserError(f"init weights: {path} has config.json but no model.weights.h5; "
                                f"not a complete keras-hub preset folder")
            return {"path": str(path), "kind": "keras_hub_preset", "files": [path / "config.json", *weights]}
        if RunFolder(path).model.is_file():
            return {"path": str(path), "kind": "keras_model", "files": [RunFolder(path).model]}
        raise UserError(f"init weights: folder {path} is neither a keras-hub preset (config.json) nor a "
                        f"training run ({MODEL})")
    if path.name.endswith(".weights.h5"):
        return {"path": str(path), "kind": "weights_h5", "files": [path]}
    if path.suffix == ".keras":
        return {"path": str(path), "kind": "keras_model", "files": [path]}
    raise UserError(f"init weights: {path} must be a keras-hub preset folder, a .keras model, a training run "
                    f"folder or a .weights.h5 file")


def source_digest(files: list[Path]) -> str:
    """sha256 over the source's files (name and bytes, in order): identifies the weights a run started from."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(Path(file).name.encode("utf-8") + b"\0")
        update_digest(digest, file)
    return digest.hexdigest()


def _keras_hub_layers(path: Path) -> dict[str, Any]:
    """Layers of a keras-hub ResNet-18 preset's backbone, by keras-hub name (loaded by keras-hub itself)."""
    try:
        import keras_hub
    except ImportError:
        raise UserError(f"init weights: {path} is a keras-hub preset folder but keras-hub is not installed; "
                        f"{HUB_INSTALL_HINT}") from None
    try:
        backbone = keras_hub.models.Backbone.from_preset(str(path))
    except Exception as err:  # keras-hub raises several types for a broken preset
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"init weights: keras-hub cannot load the preset {path}: {first}") from None
    kind = type(backbone).__name__
    if kind != KERAS_HUB_CLASS:
        raise UserError(f"init weights: {path} holds a keras-hub {kind}, expected a {KERAS_HUB_CLASS} (ResNet-18)")
    config = backbone.get_config()
    for key, expected in KERAS_HUB_RESNET18.items():
        got = config.get(key)
        if (list(got) if isinstance(got, (list, tuple)) else got) != expected:
            raise UserError(f"init weights: {path} is not a ResNet-18 v1 backbone: {key} is {got!r}, "
                            f"expected {expected!r}")
    return {layer.name: layer for layer in backbone.layers}


def _project_layers(model) -> dict[str, Any]:
    return {layer.name: layer for layer in model.layers}


def _load_project_model(path: Path):
    from serengeti_tf.models.resnet import load_model

    return load_model(RunFolder(path).model if path.is_dir() else path)


def _load_project_weights(path: Path):
    """This project's ResNet-18 with the weights of a `.weights.h5` (its head size read from the file)."""
    import h5py

    from serengeti_tf.models.resnet import MIN_INPUT_SIZE, build_resnet18

    try:
        with h5py.File(path, "r") as f:
            heads = [name for name in f.get("layers", {}) if name == "dense" or name.startswith("dense_")]
            if len(heads) != 1:
                raise UserError(f"init weights: {path} is not a .weights.h5 of this project's ResNet-18 "
                                f"(expected one Dense head, found {len(heads)})")
            num_classes = int(f[f"layers/{heads[0]}/vars/0"].shape[-1])
    except OSError as err:
        raise UserError(f"init weights: cannot read {path}: {err}") from None
    model = build_resnet18(max(num_classes, 2), MIN_INPUT_SIZE)
    try:
        model.load_weights(path)
    except Exception as err:  # Keras raises ValueError/KeyError for weights of another architecture
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"init weights: {path} does not fit this project's ResNet-18: {first}") from None
    return model


def source_layers(source: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(layers by name, name mapping: our name -> source name) of a described source."""
    path = Path(source["path"])
    if source["kind"] == "keras_hub_preset":
        return _keras_hub_layers(path), keras_hub_name
    model = _load_project_model(path) if source["kind"] == "keras_model" else _load_project_weights(path)
    return _project_layers(model), lambda name: name


def backbone_layers(model) -> list:
    """Layers of `model` that hold weights, except the head (those the source must supply)."""
    from serengeti_tf.models.resnet import HEAD_NAME

    return [layer for layer in model.layers if layer.weights and layer.name != HEAD_NAME]


def load_backbone_weights(model, init_weights: str | Path) -> dict[str, Any]:
    """Copies the source's backbone weights into `model` (in place), checked layer by layer.

    The head keeps its fresh initialisation. Returns what lineage.json records: path, kind, sha256
    and the number of layers and scalar weights copied.
    """
    source = describe_source(init_weights)
    layers, counterpart = source_layers(source)
    assignments = []
    for layer in backbone_layers(model):
        name = counterpart(layer.name)
        if name not in layers:
            raise UserError(f"init weights: {source['path']} has no layer {name!r} for layer {layer.name!r}")
        weights = [np.asarray(w) for w in layers[name].get_weights()]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise UserError(f"init weights: layer {layer.name!r} needs weight shapes {expected}, "
                            f"source layer {name!r} of {source['path']} has {got}")
        assignments.append((layer, weights))
    for layer, weights in assignments:  # only after every layer checked: never a half-loaded model
        layer.set_weights(weights)
    return {"path": str(Path(source["path"]).resolve()), "kind": source["kind"],
            "sha256": source_digest(source["files"]), "layers": len(assignments),
            "weights": int(sum(w.size for _, ws in assignments for w in ws))}
