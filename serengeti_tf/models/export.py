"""`export`: a trained run as a deployable model that needs only TensorFlow (or a TFLite runtime).

Every export takes uint8 RGB images of any size (`[B, H, W, 3]`, one size per batch) and returns
class probabilities (`[B, C]` float32, softmax of the run's logits). The evaluation view is inside
the model: `pipeline.eval_transform` (centre-square crop, resize to the run's input size,
ImageNet normalisation) - the very function `evaluate` and `predict` use, not a copy.

    OUT/saved_model/        SavedModel; signatures `serving_default` (images uint8 -> probabilities),
                            `serve_image_bytes` (encoded JPEG/PNG bytes [B] -> probabilities, decoded by
                            `pipeline.decode_for_eval`) and `class_names` (no input -> canonical and paper
                            names); assets/class_map.json and assets/labels.txt
    OUT/model_float32.tflite, OUT/model_dynamic_range.tflite
                            TFLite from the serving signature (input shape [-1, -1, -1, 3]; resize it per
                            image); dynamic-range = int8 weights, float activations. The class map is
                            embedded as TFLite metadata `serengeti_tf.class_map` (JSON).
    OUT/model.keras         Keras model with the preprocessing layer `serengeti_tf>EvalPreprocessing`
                            (loading it needs this package installed; SavedModel and TFLite do not)
    OUT/class_map.json, OUT/labels.txt, OUT/export_report.json/.md (sizes, agreement), OUT/config.yaml

Agreement: on up to `export.agreement_images` test-split images of the run's dataset, each export's
probabilities are compared with the run's Keras model on the same pixels (max abs difference, top-1
agreement). An image's size is its own: TFLite and SavedModel get one image per call.

Differences from `predict`: predict first decodes a file to the dataset's stored size with PIL
(DCT-scaled decode, EXIF orientation) and then takes the same eval view. The export takes whatever
pixels it is given; an image already at the stored size gets exactly predict's view. The
`serve_image_bytes` signature decodes with TensorFlow, which ignores EXIF orientation.

The output folder follows the other verbs: refused if it holds something else (unless
`--overwrite`), built in a temporary folder and renamed into place, `config.yaml` beside it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from serengeti_tf import config as cfg
from serengeti_tf import io_utils
from serengeti_tf.data import pipeline
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.errors import UserError

TFLITE_VARIANTS = ("float32", "dynamic_range")
TFLITE_METADATA_NAME = "serengeti_tf.class_map"
SERVING_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serve_image_bytes"
NAMES_SIGNATURE = "class_names"


@keras.saving.register_keras_serializable(package="serengeti_tf")
class EvalPreprocessing(keras.layers.Layer):
    """uint8 images [B, H, W, 3] of any size -> the evaluation view [B, S, S, 3], normalised."""

    def __init__(self, input_size: int, builtin_ops: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.input_size = int(input_size)
        self.builtin_ops = bool(builtin_ops)  # TFLite: see `pipeline._resize`

    def call(self, images):
        return pipeline.eval_transform(images, self.input_size, builtin_ops=self.builtin_ops)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.input_size, self.input_size, 3)

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size, "builtin_ops": self.builtin_ops}


def deployable_model(model: keras.Model, builtin_ops: bool = False) -> keras.Model:
    """`model` (normalised images -> logits) wrapped as uint8 images of any size -> probabilities."""
    size = int(model.input_shape[1])
    images = keras.Input((None, None, 3), dtype="uint8", name="images")
    view = EvalPreprocessing(size, builtin_ops, name="eval_preprocessing", dtype="float32")(images)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(model(view))
    return keras.Model(images, probabilities, name=f"{model.name}_deployable")


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

def write_saved_model(model: keras.Model, out: Path, class_map: ClassMap) -> Path:
    """SavedModel with the three signatures of the module doc and the class map as assets."""
    deployable = deployable_model(model)
    size = int(model.input_shape[1])
    classes = class_map.classes
    assets = out.parent / f".{out.name}-assets"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "class_map.json").write_text(class_map.text(), encoding="utf-8")
    (assets / "labels.txt").write_text(class_map.labels_text(), encoding="utf-8")

    module = tf.Module()
    module.model = deployable
    module.class_map_asset = tf.saved_model.Asset(str(assets / "class_map.json"))
    module.labels_asset = tf.saved_model.Asset(str(assets / "labels.txt"))
    names = tf.constant([c["name"] for c in classes])
    paper_names = tf.constant([c.get("paper_name", c["name"]) for c in classes])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images):
        return {"probabilities": deployable(images, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes):
        views = tf.map_fn(lambda data: pipeline.decode_for_eval(data, size), image_bytes,
                          fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return {"probabilities": tf.nn.softmax(tf.cast(model(views, training=False), tf.float32))}

    @tf.function(input_signature=[])
    def class_names():
        return {"class_names": names, "paper_names": paper_names}

    module.serve, module.serve_image_bytes, module.class_names = serve, serve_image_bytes, class_names
    try:
        tf.saved_model.save(module, str(out), signatures={
            SERVING_SIGNATURE: serve.get_concrete_function(),
            BYTES_SIGNATURE: serve_image_bytes.get_concrete_function(),
            NAMES_SIGNATURE: class_names.get_concrete_function()})
    finally:
        for file in assets.iterdir():
            file.unlink()
        assets.rmdir()
    return out


def _with_metadata(tflite_bytes: bytes, name: str, payload: bytes) -> bytes:
    """The TFLite flatbuffer with one more named metadata entry (TFLite's own metadata table)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert_tflite(model: keras.Model, variant: str, class_map: ClassMap) -> bytes:
    """TFLite bytes of the deployable model (float32 or dynamic-range quantised: int8 weights, float
    activations), builtin ops only (no Flex delegate needed), the class map in its metadata."""
    if variant not in TFLITE_VARIANTS:
        raise UserError(f"TFLite variant must be one of {', '.join(TFLITE_VARIANTS)}, got {variant!r}")
    deployable = deployable_model(model, builtin_ops=True)
    # Through Keras' own ExportArchive: a plain tf.function over a Keras 3 model leaves its weights as
    # uninitialised resource variables in the flatbuffer (a 0.1 MB model that outputs NaN).
    archive = keras.export.ExportArchive()
    archive.track(deployable)
    archive.add_endpoint(SERVING_SIGNATURE, lambda images: {"probabilities": deployable(images, training=False)},
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    with tempfile.TemporaryDirectory(prefix="serengeti-tf-tflite-") as scratch:
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=[SERVING_SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if variant == "dynamic_range":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        data = converter.convert()
    return _with_metadata(data, TFLITE_METADATA_NAME, class_map.compact_json().encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Runners (also used by the benchmark) and the agreement check
# ---------------------------------------------------------------------------------------------

def saved_model_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    serve = tf.saved_model.load(str(path)).signatures[SERVING_SIGNATURE]
    return lambda images: serve(images=tf.constant(images, tf.uint8))["probabilities"].numpy()


def tflite_runner(path: Path, threads: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
    return lambda images: runner(images=np.asarray(images, np.uint8))["probabilities"]


def keras_runner(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The run's own model on the eval view: the reference every export is compared with."""
    size = int(model.input_shape[1])
    forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(pipeline.eval_transform(x, size), training=False),
                                                          tf.float32)), reduce_retracing=True)
    return lambda images: forward(tf.constant(images, tf.uint8)).numpy()


def held_out_images(dataset_dir: Optional[Path], limit: int) -> tuple[list[np.ndarray], str]:
    """Up to `limit` decoded uint8 test-split images of the run's dataset, and where they came from."""
    from serengeti_tf.data import dataset as ds_reader

    if limit <= 0:
        return [], "agreement check off (export.agreement_images = 0)"
    if dataset_dir is None or not Path(dataset_dir).is_dir():
        return [], f"run's dataset not found ({dataset_dir}); no agreement check"
    files = ds_reader.split_files(dataset_dir, "test")
    records = tf.data.TFRecordDataset(tf.constant(files, dtype=tf.string)).take(limit)
    images = [tf.io.decode_image(pipeline._parse_image_label(r)[0], channels=3, expand_animations=False).numpy()
              for r in records]
    return images, f"{len(images)} test-split images of {dataset_dir}"


def agreement(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Max abs probability difference and top-1 agreement of one export against the reference."""
    if not len(reference):
        return {"images": 0, "max_abs_diff": None, "top1_agreement": None}
    return {"images": int(len(reference)),
            "max_abs_diff": float(np.max(np.abs(reference - probabilities))),
            "top1_agreement": float(np.mean(reference.argmax(axis=1) == probabilities.argmax(axis=1)))}


def _each(runner: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([runner(image[None]) for image in images]) if images else np.zeros((0, 0))


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------

def _run_files(run_dir: Path) -> tuple[Path, ClassMap, Optional[Path]]:
    from serengeti_tf.train.runs import read_class_map, read_run_json

    model_path = run_dir / "model.keras"
    if not run_dir.is_dir() or not model_path.is_file():
        raise UserError(f"export needs a finished training run folder with model.keras, got {run_dir}")
    class_map = read_class_map(run_dir)
    if not class_map.classes:
        raise UserError(f"{run_dir}/class_map.json lists no classes")
    lineage = read_run_json(run_dir, "lineage.json") if (run_dir / "lineage.json").is_file() else {}
    dataset_dir = Path(lineage["dataset_dir"]) if lineage.get("dataset_dir") else None
    return model_path, class_map, dataset_dir


def detector_crop_settings(dataset_dir: Optional[Path]) -> Optional[dict]:
    """The `data.crops` settings of a crop dataset (prepared with --detections), else None."""
    config_path = Path(dataset_dir) / "config.yaml" if dataset_dir else None
    if config_path is None or not config_path.is_file():
        return None
    data = cfg.to_dict(cfg.load_saved(config_path))["data"]
    return {"detections": data["detections"], **data["crops"]} if data.get("detections") else None


def export_run(run_dir: str | Path, out_dir: str | Path, config: cfg.Config, overwrite: bool = False,
               print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Exports a run's model.keras in `config.export.format` into `out_dir`; returns the report."""
    from serengeti_tf.locks import output_lock

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_path, class_map, dataset_dir = _run_files(run_dir)
    io_utils.refuse_overlap(out_dir, {"RUN_DIR": run_dir, "the run's dataset": dataset_dir}, what="export folder")
    # The export folder is replaced whole on success, so the lock lives beside it.
    with output_lock(out_dir.parent, lock_name=f".{out_dir.name}.lock"):
        return _export(run_dir, out_dir, model_path, class_map, dataset_dir, config, overwrite, print_fn)


def _export(run_dir: Path, out_dir: Path, model_path: Path, class_map: ClassMap, dataset_dir: Optional[Path],
            config: cfg.Config, overwrite: bool, print_fn: Callable[[str], None]) -> dict[str, Any]:
    from serengeti_tf.io_utils import file_digest
    from serengeti_tf.models.resnet import load_model

    fmt = config.export.format
    fingerprint = {"kind": "serengeti-tf export", "run": str(run_dir.resolve()),
                   "model_sha256": file_digest(model_path),
                   "format": fmt, "agreement_images": config.export.agreement_images}
    if io_utils.check_output_dir(out_dir, fingerprint, overwrite, kind="export") and not overwrite:
        print_fn(f"{out_dir} already holds this export; nothing to do (pass --overwrite to export again)")
        return io_utils.read_json(out_dir / "export_report.json")
    model = load_model(model_path)
    size = int(model.input_shape[1])
    images, images_note = held_out_images(dataset_dir, config.export.agreement_images)
    print_fn(f"exporting {model_path} ({size}px, {len(class_map.classes)} classes) as {fmt}; "
             f"agreement on {images_note}")
    reference = _each(keras_runner(model), images)
    report: dict[str, Any] = {"run": str(run_dir.resolve()), "model_sha256": fingerprint["model_sha256"],
                              "format": fmt, "input_size": size, "input": "uint8 RGB [B, H, W, 3], any H and W",
                              "output": "probabilities float32 [B, C]", "agreement_on": images_note,
                              "level": "frame", "artifacts": {}}
    crops = detector_crop_settings(dataset_dir)
    if crops is not None:
        # The model was trained on detector crops: it must be fed crops cut the same way, not frames.
        report.update({"level": "crop", "crops": crops,
                       "input": report["input"] + "; each image one MegaDetector crop cut as `crops` says"})
        print_fn("warning: this run was trained on detector crops; the export expects crops cut with the "
                 "settings in export_report.json (`serengeti-tf predict --detections` cuts them), not whole frames")
    with io_utils.atomic_dir(out_dir, kind="export") as tmp:
        started = time.perf_counter()
        if fmt == "saved_model":
            saved = write_saved_model(model, tmp / "saved_model", class_map)
            report["artifacts"]["saved_model"] = {
                "path": "saved_model", "bytes": _folder_bytes(saved),
                "signatures": [SERVING_SIGNATURE, BYTES_SIGNATURE, NAMES_SIGNATURE],
                **agreement(reference, _each(saved_model_runner(saved), images))}
        elif fmt == "tflite":
            for variant in TFLITE_VARIANTS:
                print_fn(f"converting to TFLite ({variant})")
                file = tmp / f"model_{variant}.tflite"
                file.write_bytes(convert_tflite(model, variant, class_map))
                report["artifacts"][f"tflite_{variant}"] = {
                    "path": file.name, "bytes": file.stat().st_size,
                    **agreement(reference, _each(tflite_runner(file), images))}
        else:
            file = tmp / "model.keras"
            deployable_model(model).save(file)
            reloaded = load_model(file)
            report["artifacts"]["keras"] = {"path": file.name, "bytes": file.stat().st_size,
                                            "needs": "serengeti-tf installed (EvalPreprocessing layer)",
                                            **agreement(reference, _each(lambda x: reloaded(x).numpy(), images))}
        report["seconds"] = round(time.perf_counter() - started, 3)
        class_map.write(tmp / "class_map.json")
        io_utils.write_text(tmp / "labels.txt", class_map.labels_text())
        io_utils.write_json(tmp / "export_report.json", report)
        io_utils.write_text(tmp / "export_report.md", report_markdown(report))
        cfg.save_config(config, tmp)
        io_utils.write_json(tmp / "fingerprint.json", fingerprint)  # last: marks the export complete
    for name, item in report["artifacts"].items():
        agree = "" if item["max_abs_diff"] is None else \
            f"; max |diff| {item['max_abs_diff']:.2e}, top-1 agreement {item['top1_agreement']:.1%}"
        print_fn(f"{name}: {out_dir / item['path']} ({item['bytes'] / 1e6:.1f} MB{agree})")
    return report


def _folder_bytes(path: Path) -> int:
    return int(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()))


def report_markdown(report: dict) -> str:
    lines = [f"# Export of {report['run']}", "",
             f"Format `{report['format']}`; input {report['input']} (eval view inside: centre-square crop, "
             f"resize to {report['input_size']} px, ImageNet normalisation); output {report['output']}.", "",
             f"Agreement with the run's Keras model on {report['agreement_on']}:", "",
             "| artifact | file | size (MB) | max abs diff | top-1 agreement | notes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, item in report["artifacts"].items():
        diff = "–" if item["max_abs_diff"] is None else f"{item['max_abs_diff']:.2e}"
        top1 = "–" if item["top1_agreement"] is None else f"{item['top1_agreement']:.2%}"
        notes = item.get("needs", "")
        lines.append(f"| {name} | `{item['path']}` | {item['bytes'] / 1e6:.2f} | {diff} | {top1} | {notes} |")
    if report.get("level") == "crop":
        lines += ["", "Trained on detector crops: feed it crops cut with these settings, not whole frames: "
                  + ", ".join(f"{k} {v}" for k, v in report["crops"].items()) + "."]
    return "\n".join(lines) + "\n"
