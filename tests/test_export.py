"""`serengeti-tf export`: SavedModel, TFLite (float32, dynamic-range, fixed-shape float32, int8) and
.keras exports with the eval preprocessing inside reproduce `serengeti-tf predict` on the test split, in
a fresh process that never imports serengeti_tf and runs the TFLite files on LiteRT (`ai-edge-litert`).
Tiny model and data (32 px input, 40 px stored images); the >= 99% top-1 agreement of every TFLite
variant is checked on a small model trained to decisive predictions (`decisive_export`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from helpers import quiet, run_together, subprocess_env, tiny_config
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.data import pipeline
from serengeti_tf.errors import UserError
from serengeti_tf.models import export
from serengeti_tf.models.resnet import load_model
from serengeti_tf.testing import write_run, write_tiny_dataset, write_tiny_run
from serengeti_tf.train import training

CLASSES = {"antelope": 30, "buffalo": 12, "cheetah": 8, "dikdik": 4}
STORED = 40  # stored short side of the tiny dataset; predict decodes to it


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "serengeti_tf_cli.main", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, env=subprocess_env(), timeout=600)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained tiny run, the test split as image files (plus a non-square copy of each), predict's
    CSV on them, and the SavedModel and TFLite exports made through the CLI."""
    root = tmp_path_factory.mktemp("export")
    dataset = write_tiny_dataset(root / "ds", CLASSES, val_per_class=2, test_per_class=6, image_size=STORED)
    run = root / "run"
    training.train(tiny_config(epochs=2, steps_per_epoch=4), dataset, run, on_event=quiet)
    images = root / "images"
    images.mkdir()
    files = tf.data.TFRecordDataset([str(f) for f in sorted(dataset.glob("camera_traps-test.tfrecord*"))])
    for i, record in enumerate(files):
        jpeg = pipeline._parse_image_label(record)[0].numpy()
        (images / f"{i:03d}.jpg").write_bytes(jpeg)  # the stored bytes, untouched
        pixels = np.asarray(Image.open(images / f"{i:03d}.jpg").convert("RGB"))
        wide = np.pad(pixels, ((0, 0), (7, 13), (0, 0)), mode="reflect")  # 40 x 60: exercises the crop
        Image.fromarray(wide).save(images / f"{i:03d}_wide.jpg", quality=95)
    formats = ("saved_model", "tflite")
    # predict and the two exports only read the run: they run at the same time.
    results = run_together([cli("predict", str(run), str(images), "-o", str(root / "pred.csv"), "--top-k", "4"),
                            *(cli("export", str(run), "-o", str(root / fmt), "--format", fmt) for fmt in formats)],
                           env=subprocess_env(), timeout=600)
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    outs = {fmt: root / fmt for fmt in formats}
    return {"root": root, "run": run, "dataset": dataset, "images": images, "pred": root / "pred.csv", **outs}


FRESH_PROCESS = r'''
import json, sys
import numpy as np
import tensorflow as tf
from PIL import Image

from ai_edge_litert.interpreter import Interpreter

files, sm_dir, tfl_dir, big, fitted, out = sys.argv[1:7]
files = json.loads(open(files).read())
loaded = tf.saved_model.load(sm_dir)
serve, serve_bytes = loaded.signatures["serving_default"], loaded.signatures["serve_image_bytes"]
names = {k: [x.decode() for x in v.numpy()] for k, v in loaded.signatures["class_names"]().items()}
runners = {v: Interpreter(model_path=f"{tfl_dir}/model_{v}.tflite").get_signature_runner("serving_default")
           for v in ("float32", "dynamic_range", "fixed_float32", "int8")}
result = {"saved_model": [], "saved_model_bytes": [], "saved_model_tf_decoded": [], "tflite_float32": [],
          "tflite_dynamic_range": []}
for v in ("fixed_float32", "int8"):  # [1, 32, 32, 3] inputs: the images fitted to 32 x 32 by the test
    runner = runners[v]
    inputs, outputs = runner.get_input_details()["images"], runner.get_output_details()["probabilities"]
    (scale, zero), (out_scale, out_zero) = inputs["quantization"], outputs["quantization"]
    result[f"tflite_{v}_io"] = [np.dtype(inputs["dtype"]).name, np.dtype(outputs["dtype"]).name]
    rows = []
    for image in np.load(fitted):
        x = np.clip(np.round(image / scale + zero), 0, 255).astype(np.uint8) if scale else image
        y = runner(images=x[None])["probabilities"][0]
        rows.append(((y.astype(np.float32) - out_zero) * out_scale if out_scale else y).tolist())
    result[f"tflite_{v}"] = rows
for file in files + [big]:
    pixels = np.asarray(Image.open(file).convert("RGB"))[None]
    result["saved_model"].append(serve(images=tf.constant(pixels))["probabilities"].numpy()[0].tolist())
    data = tf.constant([open(file, "rb").read()])
    result["saved_model_bytes"].append(serve_bytes(image_bytes=data)["probabilities"].numpy()[0].tolist())
    tf_pixels = tf.io.decode_jpeg(data[0], channels=3)[None]  # TensorFlow's JPEG decoder, as in serve_image_bytes
    result["saved_model_tf_decoded"].append(serve(images=tf_pixels)["probabilities"].numpy()[0].tolist())
    for v in ("float32", "dynamic_range"):
        result[f"tflite_{v}"].append(runners[v](images=pixels)["probabilities"][0].tolist())
from tensorflow.lite.tools import flatbuffer_utils
model = flatbuffer_utils.read_model(f"{tfl_dir}/model_float32.tflite")
meta = {m.name.decode(): m.buffer for m in model.metadata}
result["names"] = names
result["tflite_class_map"] = json.loads(bytes(model.buffers[meta["serengeti_tf.class_map"]].data).decode())
result["imported_serengeti_tf"] = any(m.startswith("serengeti_tf") for m in sys.modules)
open(out, "w").write(json.dumps(result))
'''


def predict_probabilities(csv: Path, class_names: list[str]) -> tuple[list[str], np.ndarray]:
    """Full probability rows from predict's CSV (run with --top-k = number of classes)."""
    frame = pd.read_csv(csv)
    probs = np.zeros((len(frame), len(class_names)))
    for k in range(1, len(class_names) + 1):
        for row, (name, p) in enumerate(zip(frame[f"top{k}_species"], frame[f"top{k}_prob"])):
            probs[row, class_names.index(name)] = p
    return frame["path"].tolist(), probs


@pytest.fixture(scope="module")
def fresh_results(exported):
    root = exported["root"]
    names = sorted(CLASSES)
    paths, reference = predict_probabilities(exported["pred"], names)
    files = [str(exported["images"] / p) for p in paths]
    (root / "files.json").write_text(json.dumps(files))
    # A large image (side 120 > 2 x 32 px input): the antialiased resize branch of the preprocessing.
    big = np.asarray(Image.open(files[0]).resize((180, 120), Image.Resampling.BICUBIC))
    Image.fromarray(big).save(root / "big.jpg", quality=95)
    # The fixed-shape variants take [1, 32, 32, 3]: each image fitted to 32 x 32 here, run there.
    fitted = np.stack([export.fit_to(np.asarray(Image.open(f).convert("RGB")), 32, 32) for f in files])
    np.save(root / "fitted.npy", fitted)
    (root / "fresh.py").write_text(FRESH_PROCESS)
    result = subprocess.run([sys.executable, str(root / "fresh.py"), str(root / "files.json"),
                             str(exported["saved_model"] / "saved_model"), str(exported["tflite"]),
                             str(root / "big.jpg"), str(root / "fitted.npy"), str(root / "fresh.json")],
                            capture_output=True, text=True, env=subprocess_env(), timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((root / "fresh.json").read_text())
    out["keras_on_fitted"] = export.keras_runner(load_model(exported["run"] / "model.keras"))(fitted).tolist()
    return out, reference, len(files)


def test_fresh_process_never_imports_serengeti_tf(fresh_results):
    out, _, _ = fresh_results
    assert out["imported_serengeti_tf"] is False


def test_float_exports_reproduce_predict(fresh_results):
    out, reference, n = fresh_results
    assert n == 2 * 6 * len(CLASSES)  # the test split, and a non-square copy of each image
    for name in ("saved_model", "tflite_float32"):
        probs = np.array(out[name][:n])
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        diff = np.abs(probs - reference).max()
        assert diff <= 1e-4, f"{name}: max abs diff {diff}"


def test_jpeg_bytes_signature_matches_the_pixel_signature(fresh_results):
    """serve_image_bytes == serving_default on the same (TensorFlow-decoded) pixels. Against predict
    (PIL's decoder) it differs by the two JPEG decoders' rounding: measured and bounded loosely."""
    out, reference, n = fresh_results
    by_bytes = np.array(out["saved_model_bytes"])
    np.testing.assert_allclose(by_bytes, np.array(out["saved_model_tf_decoded"]), atol=1e-5)
    assert np.mean(by_bytes[:n].argmax(axis=1) == reference.argmax(axis=1)) >= 0.9


def test_quantised_tflite_agrees_on_top1(fresh_results):
    """Dynamic-range quantisation keeps the top-1 of most images (>= 90% here).

    The tiny test model trains for 8 steps and is not bit-reproducible on CPU, so many of its 48
    decisions are near-ties that rounding may flip (CI runs saw 0 to 2 flips, both near-ties and
    not), so the issue's >= 99% is not asserted on it but on a decisive model
    (`test_every_tflite_variant_keeps_99_percent_of_a_decisive_models_top1`)."""
    out, reference, n = fresh_results
    quantised = np.array(out["tflite_dynamic_range"][:n])
    agreement = np.mean(quantised.argmax(axis=1) == reference.argmax(axis=1))
    assert agreement >= 0.9, agreement


def test_fixed_shape_variants_on_litert(fresh_results):
    """fixed_float32 reproduces the Keras model on the same 32 x 32 pixels; int8 takes uint8 pixels and
    returns uint8 probabilities (scale 1/256) that sum to 1 up to each output's rounding."""
    out, _, n = fresh_results
    reference = np.array(out["keras_on_fitted"])
    assert len(out["tflite_fixed_float32"]) == n
    assert np.abs(np.array(out["tflite_fixed_float32"]) - reference).max() <= 1e-4
    assert out["tflite_fixed_float32_io"] == ["uint8", "float32"] and out["tflite_int8_io"] == ["uint8", "uint8"]
    int8 = np.array(out["tflite_int8"])
    assert int8.shape == reference.shape
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=len(CLASSES) / 256)


def test_large_image_uses_the_same_antialiased_view_in_tflite(fresh_results):
    """TFLite computes the antialiased resize with builtin ops; it must equal TensorFlow's."""
    out, _, n = fresh_results
    assert np.abs(np.array(out["tflite_float32"][n]) - np.array(out["saved_model"][n])).max() <= 1e-4


def test_class_names_travel_with_the_exports(fresh_results, exported):
    out, _, _ = fresh_results
    class_map = json.loads((exported["run"] / "class_map.json").read_text())
    names = [c["name"] for c in sorted(class_map["classes"], key=lambda c: c["index"])]
    assert out["names"]["class_names"] == names
    assert out["names"]["paper_names"] == [c["paper_name"] for c in class_map["classes"]]
    assert out["tflite_class_map"] == class_map
    assert (exported["saved_model"] / "saved_model" / "assets" / "labels.txt").read_text().split() == names


def test_export_folder_files_and_report(exported):
    tfl = exported["tflite"]
    report = json.loads((tfl / "export_report.json").read_text())
    for variant in export.TFLITE_VARIANTS:
        item = report["artifacts"][f"tflite_{variant}"]
        assert item["bytes"] == (tfl / item["path"]).stat().st_size
        assert item["images"] == 6 * len(CLASSES)
        assert item["settings"] == export.TFLITE_SETTINGS[variant]
    assert report["artifacts"]["tflite_fixed_float32"]["input"] == {"shape": [1, 32, 32, 3], "dtype": "uint8",
                                                                     "quantization": None}
    int8 = report["artifacts"]["tflite_int8"]
    assert int8["input"]["dtype"] == int8["output"]["dtype"] == "uint8"
    # Integer from input to output: no float island (CAST, DEQUANTIZE) an int8-only runtime cannot run;
    # a fixed input leaves no shape computation (SHAPE, IF) in either fixed-shape file.
    assert "CONV_2D" in int8["ops"] and not {"CAST", "DEQUANTIZE", "SHAPE", "IF"} & set(int8["ops"])
    assert not {"SHAPE", "IF"} & set(report["artifacts"]["tflite_fixed_float32"]["ops"])
    assert {"SHAPE", "IF"} <= set(report["artifacts"]["tflite_float32"]["ops"])  # the any-size file computes them
    assert int8["output"]["quantization"] == [1 / 256, 0]
    # The calibration sample: all 54 train images (fewer than the default 200), seed 0.
    assert int8["calibration"]["images"] == sum(CLASSES.values()) and int8["calibration"]["seed"] == 0
    assert report["skipped"] == {} and report["interpreter"].startswith("LiteRT")
    assert (tfl / "labels.txt").read_text().splitlines() == sorted(CLASSES)
    # int8 weights: the quantised file is about a quarter of the float one.
    assert report["artifacts"]["tflite_dynamic_range"]["bytes"] < 0.3 * report["artifacts"]["tflite_float32"]["bytes"]
    assert report["artifacts"]["tflite_float32"]["max_abs_diff"] <= 1e-4
    assert "tflite_dynamic_range" in (tfl / "export_report.md").read_text()
    assert cfg.load_saved(tfl / "config.yaml").export.format == "tflite"
    assert not list(tfl.parent.glob(".tflite.*.partial"))


def test_rerun_is_a_no_op_and_other_folders_are_refused(exported):
    again = run_cli("export", str(exported["run"]), "-o", str(exported["tflite"]), "--format", "tflite")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    other = run_cli("export", str(exported["run"]), "-o", str(exported["tflite"]), "--format", "saved_model")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1].startswith("Error:") and "--overwrite" in other.stderr
    (exported["root"] / "unrelated").mkdir()
    (exported["root"] / "unrelated" / "notes.txt").write_text("mine")
    refused = run_cli("export", str(exported["run"]), "-o", str(exported["root"] / "unrelated"))
    assert refused.returncode == 2 and (exported["root"] / "unrelated" / "notes.txt").read_text() == "mine"


def test_keras_format_round_trip(exported, tmp_path):
    config = cfg.Config()
    config.export.format = "keras"
    config.export.agreement_images = 8
    report = export.export_run(exported["run"], tmp_path / "k", config, on_event=quiet)
    assert report["artifacts"]["keras"]["max_abs_diff"] <= 1e-5
    model = load_model(tmp_path / "k" / "model.keras")
    pixels = np.asarray(Image.open(exported["images"] / "000_wide.jpg").convert("RGB"))[None]
    assert model.input.dtype == "uint8" and model(pixels).shape == (1, len(CLASSES))


def test_antialiased_resize_equals_tensorflow():
    rng = np.random.default_rng(0)
    for h, w, size in [(300, 400, 64), (97, 65, 32)]:
        image = rng.uniform(0, 255, (1, h, w, 3)).astype("float32")
        expected = tf.image.resize(image, [size, size], antialias=True).numpy()
        np.testing.assert_allclose(pipeline.antialiased_resize(image, size, size).numpy(), expected, atol=5e-4)


def test_bad_run_dir(tmp_path):
    with pytest.raises(UserError, match="finished training run folder with model.keras"):
        export.export_run(tmp_path, tmp_path / "out", cfg.Config(), on_event=quiet)


def test_crop_runs_export_says_it_expects_crops(tmp_path):
    """A model trained on detector crops is exported with the crop settings it must be fed."""
    from serengeti_tf import config as cfg
    from serengeti_tf.models.export import detector_crop_settings, report_markdown

    crops = cfg.resolve()
    crops.data.detections = "md.json"
    crops.data.crops.threshold = 0.35
    cfg.save_config(crops, tmp_path / "crops")
    cfg.save_config(cfg.resolve(), tmp_path / "frames")
    settings = detector_crop_settings(tmp_path / "crops")
    assert settings["threshold"] == 0.35 and settings["detections"] == "md.json"
    assert detector_crop_settings(tmp_path / "frames") is None
    assert detector_crop_settings(None) is None
    text = report_markdown({"run": "r", "format": "tflite", "input": "uint8", "input_size": 32, "output": "p",
                            "agreement_on": "x", "artifacts": {}, "level": "crop", "crops": settings})
    assert "not whole frames" in text and "threshold 0.35" in text


# ---------------------------------------------------------------------------------------------
# The >= 99% agreement target on a model with decisive predictions
# ---------------------------------------------------------------------------------------------

def _eval_views(dataset: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    from serengeti_tf.data import dataset as ds_reader

    views, labels = [], []
    for record in tf.data.TFRecordDataset(ds_reader.split_files(dataset, split)):
        jpeg, label = pipeline._parse_image_label(record)[:2]
        views.append(pipeline.eval_transform(tf.io.decode_jpeg(jpeg, channels=3), size).numpy())
        labels.append(int(label))
    return np.stack(views), np.array(labels)


@pytest.fixture(scope="module")
def decisive_export(tmp_path_factory):
    """A small CNN (conv-BN-ReLU, conv-ReLU, pooling, dense; 32 px) trained to near-certainty on the
    generated data (class = hue and stripe frequency, trivially separable), saved as a run of that
    dataset and exported as TFLite in-process. 30 test images a class: one flip is 0.8%."""
    import keras

    from serengeti_tf.data import dataset as ds

    root = tmp_path_factory.mktemp("decisive")
    dataset = write_tiny_dataset(root / "ds", {name: 40 for name in CLASSES}, val_per_class=1, test_per_class=30,
                                 image_size=STORED, seed=1)
    images, labels = _eval_views(dataset, "train", 32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES))(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=30, batch_size=32, verbose=0)
    run = write_run(root / "run", model, ds.class_map(dataset),
                    {"phase": 1, "sampler": "none", "seed": 0, "dataset_dir": str(dataset)})
    config = cfg.Config()
    config.export.format = "tflite"
    config.export.agreement_images = 1000  # the whole test split
    report = export.export_run(run, root / "tflite", config, on_event=quiet)
    test_views, test_labels = _eval_views(dataset, "test", 32)
    probabilities = tf.nn.softmax(model.predict(test_views, verbose=0)).numpy()
    return report, probabilities, test_labels


def test_every_tflite_variant_keeps_99_percent_of_a_decisive_models_top1(decisive_export):
    """The previous round's target, on a model whose predictions are decided: every TFLite variant,
    int8 included, keeps the Keras top-1 on >= 99% of the 120 test images (at most one flip), run on
    LiteRT. The float variants also match its probabilities within 1e-4; int8 within 0.05 (its output
    step is 1/256; a broken calibration moves probabilities by far more)."""
    report, probabilities, labels = decisive_export
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    # The fixture is what this test needs: right and decided on nearly every image.
    assert np.mean(probabilities.argmax(axis=1) == labels) >= 0.95
    assert np.median(top2[:, 1] - top2[:, 0]) >= 0.9
    assert report["interpreter"].startswith("LiteRT")
    assert set(report["artifacts"]) == {f"tflite_{v}" for v in export.TFLITE_VARIANTS}
    for name, item in report["artifacts"].items():
        assert item["images"] == 30 * len(CLASSES)
        assert item["top1_agreement"] >= 0.99, (name, item["top1_agreement"])
        assert item["max_abs_diff"] <= (0.05 if name == "tflite_int8" else 1e-4), (name, item["max_abs_diff"])


# ---------------------------------------------------------------------------------------------
# Calibration sample, fitting, and the fallbacks
# ---------------------------------------------------------------------------------------------

def test_calibration_sample_is_seeded_and_from_the_train_split(exported):
    dataset = exported["dataset"]
    train, _ = export.train_sample(dataset, 1000, seed=0)  # more than there are: all of them, once
    assert len(train) == sum(CLASSES.values())
    train_bytes = {image.tobytes() for image in train}
    first, note = export.train_sample(dataset, 10, seed=3)
    again, _ = export.train_sample(dataset, 10, seed=3)
    other, _ = export.train_sample(dataset, 10, seed=4)
    assert len(first) == 10 and "10 of 54 train-split images" in note and "seed 3" in note
    assert [a.tobytes() for a in first] == [b.tobytes() for b in again]
    assert [a.tobytes() for a in first] != [b.tobytes() for b in other]
    assert {image.tobytes() for image in first} <= train_bytes
    assert export.train_sample(None, 10, 0)[0] == []


def test_fit_to_is_the_eval_views_crop_and_resize():
    """Fitted to a square, an image gives the eval view's pixels (up to rounding to uint8); to a wider
    shape, the centred window of that aspect."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    fitted = export.fit_to(image, 32, 32)
    assert fitted.shape == (32, 32, 3) and fitted.dtype == np.uint8
    expected = pipeline.eval_transform(tf.constant(image), 32).numpy()
    np.testing.assert_allclose(pipeline.normalize(tf.constant(fitted, tf.float32)).numpy(), expected, atol=0.01)
    assert export.fit_to(image, 20, 30).shape == (20, 30, 3)
    np.testing.assert_array_equal(export.fit_to(image, 40, 40), image[:, 10:50])


def test_int8_is_skipped_with_the_reason_without_training_data(tmp_path, monkeypatch):
    """A run whose dataset is gone still exports the other variants; int8 is listed as skipped. Without
    LiteRT installed the agreement check falls back to tf.lite and says so."""
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails: no LiteRT
    run = write_tiny_run(tmp_path / "run", sorted(CLASSES))
    config = cfg.Config()
    config.export.format = "tflite"
    report = export.export_run(run, tmp_path / "out", config, on_event=quiet)
    assert set(report["artifacts"]) == {"tflite_float32", "tflite_dynamic_range", "tflite_fixed_float32"}
    assert "no training data to calibrate on" in report["skipped"]["tflite_int8"]
    assert report["interpreter"].startswith("tf.lite.Interpreter")
    assert "skipped: no training data" in (tmp_path / "out" / "export_report.md").read_text()
    with pytest.raises(UserError, match="int8 TFLite variant needs calibration images"):
        export.convert_tflite(load_model(run / "model.keras"), "int8", None)
