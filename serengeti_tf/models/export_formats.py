"""The named export formats (`export.format`): name -> the writer of its artefacts, with its settings.

Registered here, not in `export.py`, because that module imports TensorFlow at load and listing the
names (`config.validate`, `serengeti-tf export --help`) must not; each writer lives in `export.py`
and is imported when called. A writer takes `(model, staging folder, ClassMap, dataset folder or
None, agreement images, the Keras model's probabilities on them, ExportConfig, report, on_event)`
and writes its files into the staging folder and their entries into `report["artifacts"]`.

A format's settings (`TfliteSettings`) are part of the export's fingerprint, so changing one
exports again; a new format is one writer in `export.py` plus one registration here.
"""

from __future__ import annotations

from dataclasses import dataclass

from serengeti_tf.choices import EXPORT_FORMATS
from serengeti_tf.config import SEED_LIMIT
from serengeti_tf.registry import lazy_function, setting_field


def _fixed_shape(v) -> bool:
    return len(v) == 0 or (len(v) == 2 and all(8 <= x <= 4096 for x in v))


@dataclass(frozen=True)
class TfliteSettings:
    fixed_shape: list[int] = setting_field([], _fixed_shape, "[] or [height, width], each in [8, 4096]",
                                           "input [1, H, W, 3] of the fixed-shape variants ([]: the run's input size)")
    calibration_images: int = setting_field(200, lambda v: 1 <= v <= 10000, "an int in [1, 10000]",
                                            "train-split images (a seeded sample) the int8 variant is calibrated on")
    calibration_seed: int = setting_field(0, lambda v: 0 <= v < SEED_LIMIT,
                                          "an int in [0, 2**32 - 1] (a random generator seed)", "seed of that sample")


EXPORT_FORMATS.register("saved_model", lazy_function("serengeti_tf.models.export:write_saved_model_artifact"),
                        help="TF SavedModel (also a JPEG-bytes signature)")
EXPORT_FORMATS.register("tflite", lazy_function("serengeti_tf.models.export:write_tflite_artifacts"),
                        settings=TfliteSettings,
                        help="TFLite: float32, dynamic-range, fixed-shape float32 and full-integer int8")
EXPORT_FORMATS.register("keras", lazy_function("serengeti_tf.models.export:write_keras_artifact"),
                        help=".keras file (needs serengeti-tf installed to load)")
