"""ResNet-18 builder, freeze_backbone, feature extractor, head copy, .keras round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.models import resnet as M
from serengeti_tf.train import distribution

SIZE = 32  # the smallest input the five stride-2 steps allow; weights do not depend on it


@pytest.fixture(scope="module")
def net() -> keras.Model:
    keras.utils.set_random_seed(1)
    return M.build_resnet18(4, SIZE)


def _np(variable) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(variable))


def _images(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 3)).astype("float32")


def test_paper_size_weight_counts():
    model = M.build_resnet18(52, SIZE)
    total = model.count_params()
    assert 11_150_000 < total < 11_250_000  # "about 11.2 M" for 52 classes
    assert M.count_weights(model) + M.count_weights(model, trainable=False) == total
    M.freeze_backbone(model)
    assert M.count_weights(model) == 512 * 52 + 52 == 26_676


def test_architecture_and_layer_names(net):
    names = [layer.name for layer in net.layers]
    assert names[1:7] == ["stem_conv_pad", "stem_conv", "stem_conv_bn", "stem_conv_relu", "stem_pool_pad",
                          "stem_pool"]
    stem = net.get_layer("stem_conv")
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2) and stem.filters == 64
    for stage, filters in zip((2, 3, 4, 5), (64, 128, 256, 512)):
        for block in (1, 2):
            assert net.get_layer(f"stage{stage}_block{block}_conv1").filters == filters
            assert net.get_layer(f"stage{stage}_block{block}_conv2").filters == filters
        # Stages 3-5 downsample in block 1 with a projection shortcut; stage 2 needs none.
        shortcut = f"stage{stage}_block1_shortcut"
        assert (shortcut in names) == (stage > 2)
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in net.layers) == 1 + 16 + 3
    head = net.get_layer(M.HEAD_NAME)
    assert isinstance(head, keras.layers.Dense) and head.units == 4
    assert isinstance(net.get_layer(M.POOL_NAME), keras.layers.GlobalAveragePooling2D)
    assert net.output_shape == (None, 4)
    # Logits, not probabilities: rows need not sum to 1 and may be negative.
    logits = np.asarray(net(_images(), training=False))
    assert not np.allclose(logits.sum(axis=1), 1.0)


def test_build_model_from_config():
    config = cfg.Config()
    config.model.input_size = 48
    model = M.build_model(config.model, 3)
    assert model.input_shape == (None, 48, 48, 3) and model.output_shape == (None, 3)
    config.model.name = "resnet50"
    with pytest.raises(UserError, match="unknown model 'resnet50'; known: resnet18"):
        M.build_model(config.model, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=1), "num_classes must be an int >= 2, got 1"),
    (dict(num_classes=3.0), "num_classes must be an int >= 2, got 3.0"),
    (dict(num_classes=3, input_size=16), "input_size must be an int >= 32, got 16"),
    (dict(num_classes=3, name=""), "name must be a non-empty string, got ''"),
])
def test_bad_arguments_say_what_was_received(kwargs, message):
    with pytest.raises(UserError, match=message):
        M.build_resnet18(**kwargs)


def test_mixed_precision_keeps_float32_logits():
    with distribution.precision(True) as policy:
        model = M.build_resnet18(3, SIZE)
    assert policy == "mixed_bfloat16"  # CPU-only host
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer(M.HEAD_NAME).compute_dtype == "float32"
    assert model(_images(2), training=False).dtype.name == "float32"


def test_freeze_backbone_by_role_and_batchnorm_in_inference_mode():
    keras.utils.set_random_seed(2)
    model = M.build_resnet18(5, SIZE)
    # Train briefly so the BN moving statistics differ from batch statistics.
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _images(8), np.arange(8) % 5
    model.fit(x, y, epochs=1, verbose=0)
    M.freeze_backbone(model)
    assert [layer.name for layer in model.layers if layer.trainable] == [M.HEAD_NAME]
    assert M.count_weights(model) == 512 * 5 + 5
    bn = model.get_layer("stage3_block1_conv1_bn")
    moving = [_np(bn.moving_mean), _np(bn.moving_variance)]
    # A frozen BN layer uses its moving statistics even with training=True ...
    np.testing.assert_allclose(np.asarray(model(x, training=True)), np.asarray(model(x, training=False)),
                               rtol=1e-5, atol=1e-5)
    # ... and fit() updates neither them nor any other backbone weight.
    before = {w.path: _np(w) for w in model.weights if M.HEAD_NAME not in w.path}
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(_np(bn.moving_mean), moving[0])
    np.testing.assert_array_equal(_np(bn.moving_variance), moving[1])
    for w in model.weights:
        if M.HEAD_NAME not in w.path:
            np.testing.assert_array_equal(_np(w), before[w.path])


def test_freeze_backbone_needs_a_head():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs))
    with pytest.raises(UserError, match="no head layer named 'classifier'"):
        M.freeze_backbone(plain)


def test_feature_extractor_and_head_model_reproduce_the_logits(net):
    x = _images(3)
    features = M.feature_extractor(net)(x, training=False)
    assert tuple(features.shape) == (3, 512)
    head = M.head_model(net)
    assert head.get_layer(M.HEAD_NAME).count_params() == 512 * 4 + 4
    np.testing.assert_allclose(np.asarray(head(features)), np.asarray(net(x, training=False)), rtol=1e-5, atol=1e-5)
    # The copy is independent: changing it does not touch the full model until written back.
    kernel, bias = head.get_layer(M.HEAD_NAME).get_weights()
    head.get_layer(M.HEAD_NAME).set_weights([kernel * 0, bias + 1])
    assert not np.allclose(M.head_layer(net).get_weights()[1], bias + 1)


def test_save_and_load_round_trip(net, tmp_path):
    path = M.save_model(net, tmp_path / "m.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temp files left behind
    loaded = M.load_model(path)
    x = _images(2, seed=5)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), np.asarray(net(x, training=False)),
                               rtol=1e-6, atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in net.layers]
    with pytest.raises(UserError, match="must end in .keras"):
        M.save_model(net, tmp_path / "m.h5")
    with pytest.raises(UserError, match="model file not found"):
        M.load_model(tmp_path / "missing.keras")
    (tmp_path / "bad.keras").write_text("not a zip")
    with pytest.raises(UserError, match="cannot load model"):
        M.load_model(tmp_path / "bad.keras")
