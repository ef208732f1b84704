"""Tiny generated prepared datasets for tests and smoke runs (no source images, no network).

`write_tiny_dataset` writes the same layout `prepare` does (see `dataset.py`), with small
synthetic images whose colour and stripe pattern depend on the class, so a small CNN can learn them.
Shard names and the TFDS metadata come from `shards`, so a tiny dataset also loads with
`tfds.builder_from_directory`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.data.records import encode_example
from serengeti_tf.data.shards import shard_file_name, write_tfds_metadata
from serengeti_tf.io_utils import write_csv, write_json


def class_image(label: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 image whose hue and stripe frequency encode `label`, plus noise."""
    hue = label / max(num_classes, 1)
    base = np.array([np.sin(2 * np.pi * hue), np.sin(2 * np.pi * (hue + 1 / 3)),
                     np.sin(2 * np.pi * (hue + 2 / 3))]) * 0.5 + 0.5
    xs = np.linspace(0, 2 * np.pi * (1 + label % 4), size)
    stripes = (np.sin(xs)[None, :, None] * 0.25 + 0.75)
    image = base[None, None, :] * stripes * np.ones((size, size, 3))
    image += rng.normal(0, 0.08, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_tiny_dataset(out_dir: str | Path, train_counts: dict[str, int], val_per_class: int = 2,
                       test_per_class: int = 2, image_size: int = 40, seed: int = 0) -> Path:
    """Writes a prepared dataset with the given per-class train counts; returns its folder."""
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(train_counts)
    rng = np.random.default_rng(seed)
    per_split = {"train": train_counts, "val": {n: val_per_class for n in names},
                 "test": {n: test_per_class for n in names}}
    shards: dict[str, list] = {"train": [], "val": [], "test": []}
    rows = []
    total_shards = {"train": sum(1 for n in names if train_counts[n] > 0), "val": 1, "test": 1}
    for split in ("train", "val", "test"):
        groups = [[n] for n in names if per_split[split][n] > 0] if split == "train" else [names]
        for shard_no, group in enumerate(groups):
            file = shard_file_name(split, shard_no, total_shards[split])
            written = 0
            with tf.io.TFRecordWriter(str(out / file)) as writer:
                for name in group:
                    label = names.index(name)
                    for i in range(per_split[split][name]):
                        path = f"{split}/{name}/{i:05d}.jpg"
                        capture = f"{split}-{name}-{i // 2}"
                        image = jpeg_bytes(class_image(label, len(names), image_size, rng))
                        writer.write(encode_example(image, label, capture, path, "site0", i % 2 + 1))
                        rows.append(dict(path=path, species=name, capture_id=capture, site="site0",
                                         datetime="", season="", frame=i % 2 + 1, source="generated",
                                         drop_reason="", split=split))
                        written += 1
            entry = {"file": file, "num_examples": written}
            if split == "train":
                entry["class"] = group[0]
            shards[split].append(entry)
    write_json(out / "shards.json", shards)
    write_tfds_metadata(out, shards, names, description="serengeti-tf tiny generated test dataset")
    write_json(out / "class_map.json", {"num_classes": len(names), "classes": [
        {"index": i, "name": n, "paper_name": n} for i, n in enumerate(names)]})
    write_csv(out / "counts.csv", pd.DataFrame([
        dict(species=n, paper_name=n, train=per_split["train"][n], val=per_split["val"][n],
             test=per_split["test"][n],
             total=per_split["train"][n] + per_split["val"][n] + per_split["test"][n]) for n in names]))
    write_csv(out / "manifest.csv", pd.DataFrame(rows))
    config = cfg.Config()
    config.data.image_size = image_size
    cfg.save_config(config, out)
    return out


def write_tiny_run(run: str | Path, class_names: list[str], input_size: int = 32, stored_size: int = 40,
                   conv: tuple[int, int, int] = (4, 3, 2)) -> Path:
    """A run folder holding a tiny random model (one conv of `conv` = (filters, kernel, stride), no
    training) for predict tests and benchmarks: model.keras, config.yaml (model.input_size,
    data.image_size), lineage.json (dataset missing) and class_map.json."""
    import keras

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((input_size, input_size, 3))
    filters, kernel, stride = conv
    x = keras.layers.Conv2D(filters, kernel, strides=stride, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(len(class_names))(x)).save(run / "model.keras")
    config = cfg.Config()
    config.model.input_size = input_size
    config.data.image_size = stored_size
    cfg.save_config(config, run)
    write_json(run / "lineage.json", {"phase": 1, "sampler": "none", "dataset_dir": str(run / "missing"), "seed": 0})
    write_json(run / "class_map.json", {"num_classes": len(class_names), "classes": [
        {"index": i, "name": n, "paper_name": n} for i, n in enumerate(class_names)]})
    return run
