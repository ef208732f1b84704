"""The TFRecord example format of a prepared dataset: one place that writes it and parses it.

Keys and types match the TFDS `features.json` that `prepare` writes, so the same files load with
`tfds.builder_from_directory` and with the plain tf.data pipeline in `pipeline.py`.
"""

from __future__ import annotations

import tensorflow as tf

# name -> (tf dtype, default); every feature is a scalar.
FEATURE_SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),  # JPEG bytes, RGB, shorter side = data.image_size
    "label": tf.io.FixedLenFeature([], tf.int64),  # index into class_map.json
    "capture_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "path": tf.io.FixedLenFeature([], tf.string, default_value=""),  # source path, relative to image_root
    "site": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "frame": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    # Detector crops only (`crops.py`); whole-frame records do not write them and parse to the defaults
    # (crop -1 = the whole frame, box = the whole image, detection_conf -1 = no detector).
    "crop": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "box_x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    "box_y": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    "box_w": tf.io.FixedLenFeature([], tf.float32, default_value=1.0),
    "box_h": tf.io.FixedLenFeature([], tf.float32, default_value=1.0),
    "detection_conf": tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
}
CROP_FEATURES = ("crop", "box_x", "box_y", "box_w", "box_h", "detection_conf")


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def encode_example(image_jpeg: bytes, label: int, capture_id: str = "", path: str = "",
                   site: str = "", frame: int = 0, crop: dict | None = None) -> bytes:
    """Serialises one prepared image; deterministic, so rewritten shards are byte-identical.

    `crop` (detector crops only): {"crop", "box_x", "box_y", "box_w", "box_h", "detection_conf"}.
    """
    feature = {
        "image": _bytes(image_jpeg),
        "label": _int(label),
        "capture_id": _bytes(capture_id.encode("utf-8")),
        "path": _bytes(path.encode("utf-8")),
        "site": _bytes(site.encode("utf-8")),
        "frame": _int(frame),
    }
    if crop is not None:
        feature["crop"] = _int(crop["crop"])
        feature.update({key: _float(crop[key]) for key in CROP_FEATURES if key != "crop"})
    # deterministic=True sorts the feature map: upb's map order differs between processes, which made
    # shards written by a resumed run differ in bytes from a clean run's.
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised example (graph-safe, for `Dataset.map`)."""
    return tf.io.parse_single_example(serialized, FEATURE_SPEC)
