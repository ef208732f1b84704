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
    OUT/model_fixed_float32.tflite, OUT/model_int8.tflite
                            The same model with a fixed input [1, H, W, 3] (`export.fixed_shape`, default
                            the run's input size, square), for runtimes without dynamic shapes (TFLite
                            Micro, phone delegates, the Edge TPU compiler). int8 = full-integer: int8
                            weights and activations, uint8 input (pixels quantised with the input's
                            scale and zero point, recorded in the report) and uint8 output (probabilities,
                            scale 1/256), calibrated on a seeded sample of train-split images (`train_sample`).
    OUT/model.keras         Keras model with the preprocessing layer `serengeti_tf>EvalPreprocessing`
                            (loading it needs this package installed; SavedModel and TFLite do not)
    OUT/class_map.json, OUT/labels.txt, OUT/export_report.json/.md (sizes, agreement), OUT/config.yaml

Agreement: on up to `export.agreement_images` test-split images of the run's dataset, each export's
probabilities are compared with the run's Keras model on the same pixels (max abs difference, top-1
agreement). An image's size is its own: TFLite and SavedModel get one image per call; the fixed-shape
variants and their Keras reference get each image fitted to [H, W] (`fit_to`). TFLite files run on
LiteRT (`ai-edge-litert`, the `[tflite]` extra) when it is installed, else on `tf.lite.Interpreter`.

Differences from `predict`: predict first decodes a file to the dataset's stored size with PIL
(DCT-scaled decode, EXIF orientation) and then takes the same eval view. The export takes whatever
pixels it is given; an image already at the stored size gets exactly predict's view. The
`serve_image_bytes` signature decodes with TensorFlow, which ignores EXIF orientation.

The output folder follows the other verbs: refused if it holds something else (unless
`--overwrite`), built in a temporary folder and renamed into place, `config.yaml` beside it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from serengeti_tf import config as cfg
from serengeti_tf import events, io_utils
from serengeti_tf.choices import EXPORT_FORMATS
from serengeti_tf.data import dataset as ds_reader
from serengeti_tf.data import pipeline
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.errors import UserError, setting
from serengeti_tf.io_utils import file_digest
from serengeti_tf.run_folder import (
    CLASS_MAP,
    MODEL,
    DatasetFolder,
    ExportFolder,
    Lineage,
    OutputJob,
    RunFolder,
    require_run_file,
)

TFLITE_VARIANTS = ("float32", "dynamic_range", "fixed_float32", "int8")
FIXED_SHAPE_VARIANTS = ("fixed_float32", "int8")
TFLITE_SETTINGS = {
    "float32": "float32 weights and activations; any input size",
    "dynamic_range": "dynamic-range quantisation: int8 weights, float32 activations; any input size",
    "fixed_float32": "float32 weights and activations; fixed input [1, H, W, 3] (TFLite Micro, phone delegates)",
    "int8": "full-integer quantisation: int8 weights and activations, uint8 input and output; fixed input "
            "[1, H, W, 3] (Edge TPU compiler, int8-only MCU/NPU kernels)",
}
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


def deployable_model(model: keras.Model, builtin_ops: bool = False, input_dtype: str = "uint8") -> keras.Model:
    """`model` (normalised images -> logits) wrapped as uint8 images of any size -> probabilities.
    `input_dtype` float32: the same pixel values as floats (what full-integer conversion quantises)."""
    size = int(model.input_shape[1])
    images = keras.Input((None, None, 3), dtype=input_dtype, name="images")
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


def convert_tflite(model: keras.Model, variant: str, class_map: ClassMap,
                   fixed_shape: Optional[tuple[int, int]] = None,
                   calibration: Optional[list[np.ndarray]] = None) -> bytes:
    """TFLite bytes of the deployable model in one of `TFLITE_VARIANTS`, builtin ops only (no Flex
    delegate needed), the class map in its metadata. The fixed-shape variants take [1, H, W, 3] with
    `fixed_shape` = (H, W) (default: the model's input size); int8 needs `calibration`: uint8 images
    of that shape (the representative data the converter takes activation ranges from)."""
    if variant not in TFLITE_VARIANTS:
        raise UserError(f"TFLite variant must be one of {', '.join(TFLITE_VARIANTS)}, got {variant!r}")
    size = int(model.input_shape[1])
    height, width = fixed_shape or (size, size)
    if variant == "int8" and not calibration:
        raise UserError("the int8 TFLite variant needs calibration images (train-split images of the run's "
                        "dataset); none were given")
    # Full-integer conversion quantises float inputs only: a uint8 graph input would stay behind a
    # float CAST (which the Edge TPU cannot run), so int8 is traced on float pixels and the converter
    # makes that input uint8 with the calibrated scale and zero point.
    dtype = tf.float32 if variant == "int8" else tf.uint8
    shape = [1, height, width, 3] if variant in FIXED_SHAPE_VARIANTS else [None, None, None, 3]
    deployable = deployable_model(model, builtin_ops=True, input_dtype=dtype.name)
    # Through Keras' own ExportArchive: a plain tf.function over a Keras 3 model leaves its weights as
    # uninitialised resource variables in the flatbuffer (a 0.1 MB model that outputs NaN).
    archive = keras.export.ExportArchive()
    archive.track(deployable)
    archive.add_endpoint(SERVING_SIGNATURE, lambda images: {"probabilities": deployable(images, training=False)},
                         input_signature=[tf.TensorSpec(shape, dtype, name="images")])
    with tempfile.TemporaryDirectory(prefix="serengeti-tf-tflite-") as scratch:
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=[SERVING_SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if variant == "dynamic_range":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                {"images": np.asarray(image, np.float32)[None]} for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        with warnings.catch_warnings():
            # int8 calibration runs TensorFlow's own (deprecated) interpreter inside the converter.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            data = converter.convert()
    return _with_metadata(data, TFLITE_METADATA_NAME, class_map.compact_json().encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Runners (also used by the benchmark) and the agreement check
# ---------------------------------------------------------------------------------------------

def saved_model_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    serve = tf.saved_model.load(str(path)).signatures[SERVING_SIGNATURE]
    return lambda images: serve(images=tf.constant(images, tf.uint8))["probabilities"].numpy()


def _litert_interpreter() -> Optional[type]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter


def tflite_interpreter(path: Path, threads: Optional[int] = None):
    """LiteRT's interpreter (`ai-edge-litert`, the runtime TensorFlow's own is deprecated for) when
    installed (the `[tflite]` extra), else `tf.lite.Interpreter`, so a base install still exports."""
    interpreter = _litert_interpreter() or getattr(tf.lite, "Interpreter", None)
    if interpreter is None:  # a TensorFlow that has dropped its interpreter, and no LiteRT
        raise UserError("running a TFLite file needs LiteRT: pip install 'serengeti-tf[tflite]'")
    return interpreter(model_path=str(path), num_threads=threads)


def interpreter_name() -> str:
    """Which interpreter `tflite_interpreter` uses, with its version (for the report)."""
    if _litert_interpreter() is not None:
        return f"LiteRT (ai-edge-litert {metadata.version('ai-edge-litert')})"
    return f"tf.lite.Interpreter (TensorFlow {tf.__version__}; install serengeti-tf[tflite] for LiteRT)"


def _quantised(values: np.ndarray, detail: dict) -> np.ndarray:
    """Real values as the tensor's dtype: quantised with its (scale, zero point) when it has them."""
    scale, zero_point = detail["quantization"]
    if not scale:
        return np.asarray(values).astype(detail["dtype"])
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), limits.min, limits.max).astype(detail["dtype"])


def _real(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * scale if scale else values


def tflite_runner(path: Path, threads: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 images -> probabilities through one TFLite file, whichever its input/output types; a
    fixed-shape [1, H, W, 3] model is called once per image of a batch."""
    runner = tflite_interpreter(path, threads).get_signature_runner(SERVING_SIGNATURE)
    inputs, outputs = runner.get_input_details()["images"], runner.get_output_details()["probabilities"]
    fixed = int(inputs["shape_signature"][0]) == 1

    def run(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.uint8)
        if fixed and len(images) > 1:
            return np.concatenate([run(image[None]) for image in images])
        return _real(runner(images=_quantised(images, inputs))["probabilities"], outputs)
    return run


def tflite_ops(path: Path) -> list[str]:
    """The builtin operators a TFLite file uses (what a runtime or the Edge TPU compiler must support)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    # Codes above 127 live in `builtinCode` only; older files keep small ones in the deprecated byte.
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return sorted({names[codes[op.opcodeIndex]] for graph in model.subgraphs for op in graph.operators})


def tflite_io(path: Path) -> dict[str, Any]:
    """Shape (-1: any), dtype and (scale, zero point) of a TFLite file's input and output."""
    runner = tflite_interpreter(path).get_signature_runner(SERVING_SIGNATURE)
    details = {"input": runner.get_input_details()["images"], "output": runner.get_output_details()["probabilities"]}
    return {name: {"shape": [int(x) for x in d["shape_signature"]], "dtype": np.dtype(d["dtype"]).name,
                   "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]
                   if d["quantization"][0] else None}
            for name, d in details.items()}


def keras_runner(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """The run's own model on the eval view: the reference every export is compared with."""
    size = int(model.input_shape[1])
    forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(pipeline.eval_transform(x, size), training=False),
                                                          tf.float32)), reduce_retracing=True)
    return lambda images: forward(tf.constant(images, tf.uint8)).numpy()


def _decoded(record: tf.Tensor) -> np.ndarray:
    return tf.io.decode_image(pipeline._parse_image_label(record)[0], channels=3, expand_animations=False).numpy()


def held_out_images(dataset_dir: Optional[Path], limit: int) -> tuple[list[np.ndarray], str]:
    """Up to `limit` decoded uint8 test-split images of the run's dataset, and where they came from."""
    if limit <= 0:
        return [], "agreement check off (export.agreement_images = 0)"
    if dataset_dir is None or not Path(dataset_dir).is_dir():
        return [], f"run's dataset not found ({dataset_dir}); no agreement check"
    files = ds_reader.split_files(dataset_dir, "test")
    records = tf.data.TFRecordDataset(tf.constant(files, dtype=tf.string)).take(limit)
    images = [_decoded(r) for r in records]
    return images, f"{len(images)} test-split images of {dataset_dir}"


def train_sample(dataset_dir: Optional[Path], count: int, seed: int) -> tuple[list[np.ndarray], str]:
    """A seeded uniform sample of `count` train-split images (all of them if fewer), decoded uint8 at
    the stored size, in shard order; and where they came from. Reads only the shards sampled from,
    each up to its last sampled record."""
    if dataset_dir is None or not DatasetFolder(Path(dataset_dir)).shard_index.is_file():
        return [], f"run's dataset not found ({dataset_dir})"
    shards = ds_reader.shard_index(dataset_dir)["train"]
    sizes = np.array([int(s["num_examples"]) for s in shards], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    chosen = np.sort(np.random.default_rng(seed).choice(int(starts[-1]), min(count, int(starts[-1])), replace=False))
    images = []
    for shard, start, end in zip(shards, starts[:-1], starts[1:]):
        wanted = set((chosen[(chosen >= start) & (chosen < end)] - start).tolist())
        if wanted:
            records = tf.data.TFRecordDataset(str(Path(dataset_dir) / shard["file"])).take(max(wanted) + 1)
            images += [_decoded(r) for i, r in enumerate(records) if i in wanted]
    return images, f"{len(images)} of {int(starts[-1])} train-split images of {dataset_dir} (seed {seed})"


def fit_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [height, width, 3]: the centred window of the target's aspect ratio,
    resized as the eval view resizes (antialiased for a > 2x shrink) and rounded. How the fixed-shape
    variants' agreement and calibration images are made; for a square target it is the eval view's
    crop and resize, so the model's own view inside is then only the normalisation."""
    rows, columns = image.shape[:2]
    scale = min(rows / height, columns / width)
    window_rows, window_columns = min(rows, round(height * scale)), min(columns, round(width * scale))
    top, left = (rows - window_rows) // 2, (columns - window_columns) // 2
    window = tf.constant(image[top:top + window_rows, left:left + window_columns], tf.float32)
    resized = pipeline._resize(window, height, width, tf.constant(max(window_rows, window_columns)))
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)


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
    run = RunFolder(run_dir)
    if not run_dir.is_dir() or not run.model.is_file():
        raise UserError(f"export needs a finished training run folder with {MODEL}, got {run_dir}")
    class_map = ClassMap.read(require_run_file(run_dir, CLASS_MAP))
    if not class_map.classes:
        raise UserError(f"{run.class_map} lists no classes")
    lineage = Lineage.read(run_dir) if run.lineage.is_file() else Lineage({})
    dataset_dir = Path(lineage.dataset_dir) if lineage.dataset_dir else None
    return run.model, class_map, dataset_dir


def detector_crop_settings(dataset_dir: Optional[Path]) -> Optional[dict]:
    """The `data.crops` settings of a crop dataset (prepared with --detections), else None."""
    config_path = DatasetFolder(Path(dataset_dir)).config if dataset_dir else None
    if config_path is None or not config_path.is_file():
        return None
    data = cfg.to_dict(cfg.load_saved(config_path))["data"]
    return {"detections": data["detections"], **data["crops"]} if data.get("detections") else None


def export_run(run_dir: str | Path, out_dir: str | Path, config: cfg.Config, overwrite: bool = False,
               on_event: events.EventSink = events.ignore) -> dict[str, Any]:
    """Exports a run's model.keras in `config.export.format` into `out_dir`; returns the report."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_path, class_map, dataset_dir = _run_files(run_dir)
    # The export folder is replaced whole on success, so the lock lives beside it.
    job = OutputJob(out_dir, "export", inputs={"RUN_DIR": run_dir, "the run's dataset": dataset_dir},
                    what="export folder", lock_beside=True)
    with job:
        return _export(run_dir, job, model_path, class_map, dataset_dir, config, overwrite, on_event)


def _export(run_dir: Path, job: OutputJob, model_path: Path, class_map: ClassMap, dataset_dir: Optional[Path],
            config: cfg.Config, overwrite: bool, on_event: events.EventSink) -> dict[str, Any]:
    from serengeti_tf.models.resnet import load_model

    out_dir = job.path
    fmt = config.export.format
    fingerprint = {"kind": "serengeti-tf export", "run": str(run_dir.resolve()),
                   "model_sha256": file_digest(model_path),
                   "format": fmt, "agreement_images": config.export.agreement_images}
    settings = EXPORT_FORMATS.settings_for(fmt, config.export)  # only tflite has any (`export_formats.py`)
    if settings is not None:
        fingerprint.update(dataclasses.asdict(settings))
    if job.holds(fingerprint, overwrite) and not overwrite:
        on_event(events.Step(f"{out_dir} already holds this export; nothing to do "
                             f"(pass {setting('overwrite')} to export again)"))
        return io_utils.read_json(ExportFolder(out_dir).report)
    model = load_model(model_path)
    size = int(model.input_shape[1])
    images, images_note = held_out_images(dataset_dir, config.export.agreement_images)
    on_event(events.Step(f"exporting {model_path} ({size}px, {len(class_map.classes)} classes) as {fmt}; "
                         f"agreement on {images_note}"))
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
        on_event(events.Warning(f"this run was trained on detector crops; the export expects crops cut with the "
                                f"settings in export_report.json (`serengeti-tf predict {setting('detections')}` "
                                f"cuts them), not whole frames"))
    with job.stage() as tmp:
        staged = ExportFolder(tmp)
        started = time.perf_counter()
        EXPORT_FORMATS.lookup(fmt)(model, tmp, class_map, dataset_dir, images, reference, config.export, report,
                                   on_event)
        report["seconds"] = round(time.perf_counter() - started, 3)
        class_map.write(staged.class_map)
        io_utils.write_text(staged.labels, class_map.labels_text())
        io_utils.write_json(staged.report, report)
        io_utils.write_text(staged.report_markdown, report_markdown(report))
        cfg.save_config(config, tmp)
        io_utils.write_json(staged.fingerprint, fingerprint)  # last: marks the export complete
    for name, item in report["artifacts"].items():
        agree = "" if item["max_abs_diff"] is None else \
            f"; max |diff| {item['max_abs_diff']:.2e}, top-1 agreement {item['top1_agreement']:.1%}"
        on_event(events.Step(f"{name}: {out_dir / item['path']} ({item['bytes'] / 1e6:.1f} MB{agree})"))
    return report


# ---- the writers of the export formats (registered in `export_formats.py`) ----

def write_saved_model_artifact(model: keras.Model, out: Path, class_map: ClassMap, dataset_dir: Optional[Path],
                               images: list[np.ndarray], reference: np.ndarray, settings: cfg.ExportConfig,
                               report: dict, on_event: events.EventSink) -> None:
    saved = write_saved_model(model, ExportFolder(out).saved_model, class_map)
    report["artifacts"]["saved_model"] = {
        "path": saved.name, "bytes": _folder_bytes(saved),
        "signatures": [SERVING_SIGNATURE, BYTES_SIGNATURE, NAMES_SIGNATURE],
        **agreement(reference, _each(saved_model_runner(saved), images))}


def write_keras_artifact(model: keras.Model, out: Path, class_map: ClassMap, dataset_dir: Optional[Path],
                         images: list[np.ndarray], reference: np.ndarray, settings: cfg.ExportConfig,
                         report: dict, on_event: events.EventSink) -> None:
    from serengeti_tf.models.resnet import load_model

    file = ExportFolder(out).model
    deployable_model(model).save(file)
    reloaded = load_model(file)
    report["artifacts"]["keras"] = {"path": file.name, "bytes": file.stat().st_size,
                                    "needs": "serengeti-tf installed (EvalPreprocessing layer)",
                                    **agreement(reference, _each(lambda x: reloaded(x).numpy(), images))}


def write_tflite_artifacts(model: keras.Model, out: Path, class_map: ClassMap, dataset_dir: Optional[Path],
                           images: list[np.ndarray], reference: np.ndarray, settings: cfg.ExportConfig, report: dict,
                           on_event: events.EventSink) -> None:
    """Writes every TFLite variant into `out` and its entry (settings, input/output types, agreement)
    into `report`; int8 is skipped, with the reason reported, when there is no training data."""
    size = int(model.input_shape[1])
    fixed_shape = tuple(settings.fixed_shape) or (size, size)
    fitted = [fit_to(image, *fixed_shape) for image in images]
    fixed_reference = _each(keras_runner(model), fitted)
    on_event(events.Step(f"int8 calibration: sampling {settings.calibration_images} train-split images "
                         f"(seed {settings.calibration_seed})"))
    calibration, calibration_note = train_sample(dataset_dir, settings.calibration_images, settings.calibration_seed)
    calibration = [fit_to(image, *fixed_shape) for image in calibration]
    report.update({"interpreter": interpreter_name(), "labels": "labels.txt", "fixed_shape": list(fixed_shape),
                   "fixed_shape_agreement_on": f"the same images, each fitted to {fixed_shape[0]}x{fixed_shape[1]} "
                                               "(`export.fit_to`) for both the export and the Keras model",
                   "skipped": {}})
    for variant in TFLITE_VARIANTS:
        name, fixed = f"tflite_{variant}", variant in FIXED_SHAPE_VARIANTS
        entry: dict[str, Any] = {"settings": TFLITE_SETTINGS[variant]}
        if variant == "int8":
            if not calibration:
                report["skipped"][name] = f"no training data to calibrate on: {calibration_note}"
                on_event(events.Warning(f"{name} skipped: {report['skipped'][name]}"))
                continue
            entry["calibration"] = {"images": len(calibration), "requested": settings.calibration_images,
                                    "seed": settings.calibration_seed, "split": "train", "from": calibration_note,
                                    "view": f"each fitted to {fixed_shape[0]}x{fixed_shape[1]} (`export.fit_to`)"}
        on_event(events.Step(f"converting to TFLite ({variant})"))
        file = out / f"model_{variant}.tflite"
        file.write_bytes(convert_tflite(model, variant, class_map, fixed_shape,
                                        calibration if variant == "int8" else None))
        runner = tflite_runner(file)
        checked = agreement(fixed_reference, _each(runner, fitted)) if fixed else \
            agreement(reference, _each(runner, images))
        report["artifacts"][name] = {"path": file.name, "bytes": file.stat().st_size, **entry, **tflite_io(file),
                                     "ops": tflite_ops(file), **checked}


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
        if "input" in item:  # TFLite: its input and output tensors
            notes = f"in {_tensor_text(item['input'])}, out {_tensor_text(item['output'])}"
        if "calibration" in item:
            sample = item["calibration"]
            notes += f"; calibrated on {sample['images']} train images (seed {sample['seed']})"
        lines.append(f"| {name} | `{item['path']}` | {item['bytes'] / 1e6:.2f} | {diff} | {top1} | {notes} |")
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"| {name} | – | – | – | – | skipped: {reason} |")
    if "fixed_shape" in report:
        lines += ["", f"Fixed-shape variants: compared on {report['fixed_shape_agreement_on']}. "
                  f"TFLite files were run with {report['interpreter']}; class names one a line in `labels.txt`."]
    if report.get("level") == "crop":
        lines += ["", "Trained on detector crops: feed it crops cut with these settings, not whole frames: "
                  + ", ".join(f"{k} {v}" for k, v in report["crops"].items()) + "."]
    return "\n".join(lines) + "\n"


def _tensor_text(tensor: dict) -> str:
    quantisation = "" if tensor["quantization"] is None else \
        f" (scale {tensor['quantization'][0]:.6g}, zero point {tensor['quantization'][1]})"
    return f"{tensor['dtype']} {tensor['shape']}{quantisation}"
