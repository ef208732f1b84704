"""Phase 1 from pretrained weights (`--init-weights`): keras-hub preset, .keras and .weights.h5 sources,
layer-by-layer checks, frozen stages and the discriminative (backbone) learning rate.

Sources are random weights written locally (nothing downloads). Every weight is randomised first,
BatchNorm moving statistics included, so "equal to the source" cannot hold by accident.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import NUM_CLASSES, quiet, run_together, subprocess_env, tiny_config, train_cli

from serengeti_tf.errors import UserError
from serengeti_tf.models import pretrained
from serengeti_tf.models import resnet as M
from serengeti_tf.train import training
from serengeti_tf.train.optimizers import DiscriminativeAdam


def randomize(model: keras.Model, seed: int = 1) -> keras.Model:
    """Every weight random (variances positive), in place."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = [rng.normal(0, 0.05, w.shape).astype("float32") for w in layer.get_weights()]
        if isinstance(layer, keras.layers.BatchNormalization):
            values[3] = np.abs(values[3]) + 0.5  # moving variance
            values[0] = values[0] + 1.0  # gamma around 1 keeps activations finite
        layer.set_weights(values)
    return model


def backbone_weights(model: keras.Model, name_of=lambda n: n) -> dict[str, list[np.ndarray]]:
    """Source-side weights of every conv/BN layer of this project's backbone, keyed by OUR layer name."""
    reference = M.build_resnet18(NUM_CLASSES, 32)
    return {layer.name: [np.asarray(w) for w in model.get_layer(name_of(layer.name)).get_weights()]
            for layer in pretrained.backbone_layers(reference)}


def assert_backbone_equals(model: keras.Model, expected: dict[str, list[np.ndarray]]) -> None:
    checked = 0
    for layer in pretrained.backbone_layers(model):
        got = layer.get_weights()
        assert len(got) == len(expected[layer.name]), layer.name
        for a, b in zip(got, expected[layer.name]):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
            checked += 1
    assert checked == 20 * 1 + 20 * 4  # 20 convolutions (kernel) and 20 BatchNorm layers (4 weights)


def save_odd_model(path: Path) -> None:
    """A .keras model whose `stem_conv` has a 3x3 kernel (ours is 7x7): a source of the wrong shape."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(64, 3, use_bias=False, name="stem_conv")(inputs)
    outputs = keras.layers.Dense(4, name=M.HEAD_NAME)(keras.layers.GlobalAveragePooling2D()(x))
    M.save_model(keras.Model(inputs, outputs), path)


def hub_resnet18():
    keras_hub = pytest.importorskip("keras_hub")
    return keras_hub.models.ResNetBackbone(**pretrained.KERAS_HUB_RESNET18)


@pytest.fixture(scope="module")
def hub_preset(tmp_path_factory):
    backbone = randomize(hub_resnet18())
    preset = tmp_path_factory.mktemp("hub") / "resnet_18_random"
    backbone.save_to_preset(str(preset))
    return preset, backbone


@pytest.fixture(scope="module")
def project_source(tmp_path_factory):
    """A 3-class model of this project (another dataset's head) saved as .keras and .weights.h5."""
    folder = tmp_path_factory.mktemp("project")
    model = randomize(M.build_resnet18(3, 48), seed=2)
    M.save_model(model, folder / "other.keras")
    model.save_weights(folder / "other.weights.h5")
    return folder, model


def test_keras_hub_names_cover_every_backbone_layer(hub_preset):
    _, backbone = hub_preset
    hub_names = {layer.name for layer in backbone.layers if layer.weights}
    ours = [layer.name for layer in pretrained.backbone_layers(M.build_resnet18(NUM_CLASSES, 32))]
    assert sorted(pretrained.keras_hub_name(n) for n in ours) == sorted(hub_names)


def test_keras_hub_preset_loads_layer_by_layer_and_computes_the_same_features(hub_preset):
    preset, backbone = hub_preset
    model = M.build_resnet18(NUM_CLASSES, 64)
    head_before = model.get_layer(M.HEAD_NAME).get_weights()
    info = pretrained.load_backbone_weights(model, preset)
    assert_backbone_equals(model, backbone_weights(backbone, pretrained.keras_hub_name))
    for a, b in zip(model.get_layer(M.HEAD_NAME).get_weights(), head_before):
        np.testing.assert_array_equal(a, b)  # the head is never copied
    assert info["kind"] == "keras_hub_preset" and info["layers"] == 40 and len(info["sha256"]) == 64
    # Same padding as keras-hub: the pooled features equal keras-hub's backbone output, pooled.
    images = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    ours = np.asarray(M.feature_extractor(model)(images, training=False))
    theirs = np.asarray(backbone(images, training=False)).mean(axis=(1, 2))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("file_name", ["other.keras", "other.weights.h5", "run_folder"])
def test_project_model_round_trip(project_source, file_name):
    folder, source = project_source
    path = folder / file_name
    if file_name == "run_folder":
        path = folder / "run"
        path.mkdir(exist_ok=True)
        M.save_model(source, path / "model.keras")
    model = M.build_resnet18(NUM_CLASSES, 32)
    info = pretrained.load_backbone_weights(model, path)
    assert_backbone_equals(model, backbone_weights(source))
    assert model.get_layer(M.HEAD_NAME).kernel.shape == (512, NUM_CLASSES)
    assert info["kind"] == ("weights_h5" if file_name.endswith(".h5") else "keras_model")


def test_shape_mismatch_is_one_error_naming_the_layer(tmp_path):
    save_odd_model(tmp_path / "odd.keras")
    model = M.build_resnet18(NUM_CLASSES, 32)
    before = model.get_layer("stem_conv").get_weights()[0].copy()
    with pytest.raises(UserError, match=r"layer 'stem_conv' needs weight shapes \[\(7, 7, 3, 64\)\].*"
                                        r"has \[\(3, 3, 3, 64\)\]") as err:
        pretrained.load_backbone_weights(model, tmp_path / "odd.keras")
    assert "\n" not in str(err.value)
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], before)  # nothing half-loaded


def test_bad_sources(tmp_path):
    with pytest.raises(UserError, match="init weights not found"):
        pretrained.describe_source(tmp_path / "missing.keras")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="must be a keras-hub preset folder"):
        pretrained.describe_source(tmp_path / "notes.txt")
    (tmp_path / "half_preset").mkdir()
    (tmp_path / "half_preset" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no model.weights.h5"):
        pretrained.describe_source(tmp_path / "half_preset")


def test_train_from_preset_with_frozen_backbone_then_phase2(hub_preset, tiny_dataset, tmp_path):
    """--init-weights through the CLI; with every stage frozen the trained backbone IS the source."""
    preset, backbone = hub_preset
    run = tmp_path / "ft"
    result = subprocess.run(train_cli("--data", str(tiny_dataset), "--phase", "1", "--run-dir", str(run),
                                "--init-weights", str(preset), "--freeze-stages", "5", "--epochs", "1",
                                "--input-size", "32", "--batch-size", "8", "--set", "train.steps_per_epoch=2",
                                "--set", "eval.batch_size=16"),
                            capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "backbone initialised from keras_hub_preset" in result.stdout
    trained = M.load_model(run / "model.keras")
    assert_backbone_equals(trained, backbone_weights(backbone, pretrained.keras_hub_name))
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["init_weights"]["path"] == str(preset.resolve())
    assert lineage["init_weights"]["sha256"] == pretrained.source_digest(pretrained.describe_source(preset)["files"])
    assert lineage["freeze_stages"] == 5
    assert f"init_weights: {preset}" in (run / "config.yaml").read_text()
    # Phase 2 works unchanged on top of a fine-tuned phase-1 run.
    phase2 = tmp_path / "ft-p2"
    training.train(tiny_config(phase=2, epochs=1), tiny_dataset, phase2, init_run=run, on_event=quiet)
    assert json.loads((phase2 / "lineage.json").read_text())["init_run_lineage"]["init_weights"]["kind"] \
        == "keras_hub_preset"


def test_freeze_stages_and_backbone_learning_rate(project_source, tiny_dataset, tmp_path):
    folder, source = project_source
    config = tiny_config(epochs=1, init_weights=str(folder / "other.keras"), freeze_stages=2,
                         backbone_learning_rate=1e-4)
    run = tmp_path / "disc"
    training.train(config, tiny_dataset, run, on_event=quiet)
    trained = M.load_model(run / "model.keras", compile=True)
    assert isinstance(trained.optimizer, DiscriminativeAdam)
    expected = backbone_weights(source)
    for name in ("stem_conv", "stem_conv_bn", "stage2_block2_conv2", "stage2_block1_conv1_bn"):
        for a, b in zip(trained.get_layer(name).get_weights(), expected[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)  # frozen stages never move
    assert not np.array_equal(trained.get_layer("stage3_block1_conv1").get_weights()[0],
                              expected["stage3_block1_conv1"][0])


def test_discriminative_optimizer_scales_only_the_backbone_step():
    from serengeti_tf.train.optimizers import DiscriminativeSGD

    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name=M.HEAD_NAME)(keras.layers.Dense(3, name="stage5_body")(inputs))
    model = keras.Model(inputs, outputs)
    before = {w.path: np.array(w.numpy()) for w in model.trainable_weights}
    grads = [keras.ops.ones(w.shape) for w in model.trainable_weights]
    optimizer = DiscriminativeSGD(backbone_factor=0.1, head_layer=M.HEAD_NAME, learning_rate=1.0, momentum=0.9)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    for w in model.trainable_weights:
        step = before[w.path] - w.numpy()
        np.testing.assert_allclose(step, 1.0 if w.path.startswith(M.HEAD_NAME) else 0.1, rtol=1e-6)
    restored = DiscriminativeSGD.from_config(optimizer.get_config())
    assert restored.backbone_factor == pytest.approx(0.1) and restored.head_layer == M.HEAD_NAME


def test_cli_mismatch_exits_2_before_claiming_the_run(tiny_dataset, tmp_path):
    save_odd_model(tmp_path / "odd.keras")
    run = tmp_path / "never"
    result, phase2 = run_together([
        train_cli("--data", str(tiny_dataset), "--run-dir", str(run), "--input-size", "32",
                  "--init-weights", str(tmp_path / "odd.keras")),
        train_cli("--data", str(tiny_dataset), "--phase", "2", "--init", str(tmp_path),
                  "--init-weights", str(tmp_path / "odd.keras"))], env=subprocess_env(), timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: init weights: layer 'stem_conv' needs")
    assert not run.exists()
    assert phase2.returncode == 2 and "Error: --init-weights is only used by phase 1" in phase2.stderr


def test_mixed_precision_run_builds_the_pretrained_model_under_its_policy(project_source):
    import tensorflow as tf

    folder, source = project_source
    config = tiny_config(init_weights=str(folder / "other.keras"), mixed_precision=True)
    model, info = training._pretrained_model(config, NUM_CLASSES, tf.distribute.get_strategy())
    assert model.get_layer("stem_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer(M.HEAD_NAME).dtype_policy.name == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert_backbone_equals(model, backbone_weights(source))


def test_experiment_phase2_runs_do_not_inherit_init_weights(tmp_path):
    from serengeti_tf import config as cfg
    from serengeti_tf.evaluate import experiment

    config = cfg.Config()
    config.experiment.samplers = ["ros"]
    config.train.init_weights = str(tmp_path / "preset")
    phase1, phase2 = experiment.plan_runs(config, tmp_path)
    assert experiment.run_config(config, phase1).train.init_weights == str(tmp_path / "preset")
    assert experiment.run_config(config, phase2).train.init_weights is None  # phase 2 starts from --init
