"""Tiny generated prepared datasets for tests and smoke runs (no source images, no network).

`write_tiny_dataset` writes the same layout `prepare` does (see `dataset.py`), with small
synthetic images whose colour and stripe pattern depend on the class, so a small CNN can learn them.
Shard names and the TFDS metadata come from `shards`, so a tiny dataset also loads with
`tfds.builder_from_directory`.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.data import dataset as ds
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.data.records import encode_example
from serengeti_tf.data.shards import shard_file_name, write_tfds_metadata
from serengeti_tf.io_utils import write_csv, write_json
from serengeti_tf.run_folder import DatasetFolder, RunFolder


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
    folder = DatasetFolder(out)
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
    write_json(folder.shard_index, shards)
    write_tfds_metadata(out, shards, names, description="serengeti-tf tiny generated test dataset")
    class_map_of(names).write(folder.class_map)
    write_csv(folder.counts, pd.DataFrame([
        dict(species=n, paper_name=n, train=per_split["train"][n], val=per_split["val"][n],
             test=per_split["test"][n],
             total=per_split["train"][n] + per_split["val"][n] + per_split["test"][n]) for n in names]))
    write_csv(folder.manifest, pd.DataFrame(rows))
    config = cfg.Config()
    config.data.image_size = image_size
    cfg.save_config(config, out)
    return out


def class_map_of(class_names: list[str]) -> ClassMap:
    """The class map of classes named as listed, each its own paper name (a tiny dataset's)."""
    return ClassMap({"num_classes": len(class_names), "classes": [
        {"index": i, "name": n, "paper_name": n} for i, n in enumerate(class_names)]})


def write_run(run: str | Path, model, class_map: ClassMap, lineage: dict, config: cfg.Config | None = None) -> Path:
    """A run folder holding `model` as `train` leaves one for predict, evaluate and export:
    model.keras, class_map.json, lineage.json and (when given) config.yaml."""
    folder = RunFolder(Path(run))
    folder.root.mkdir(parents=True, exist_ok=True)
    model.save(folder.model)
    if config is not None:
        cfg.save_config(config, folder.root)
    write_json(folder.lineage, lineage)
    class_map.write(folder.class_map)
    return folder.root


def write_tiny_run(run: str | Path, class_names: list[str] | None = None, input_size: int = 32,
                   stored_size: int = 40, conv: tuple[int, int, int] = (4, 3, 2), *,
                   dataset_dir: str | Path | None = None, seed: int = 0, config: cfg.Config | None = None) -> Path:
    """A run folder holding a tiny random model (one conv of `conv` = (filters, kernel, stride), no
    training, weights from `seed`) for predict and evaluate tests and benchmarks: model.keras,
    config.yaml (a copy of `config`, default the defaults, with model.input_size and data.image_size set),
    lineage.json (phase 1 of `config.sampler.name`) and class_map.json.

    With `dataset_dir` (a prepared dataset) the classes and class map are the dataset's and the
    lineage points to it; otherwise the classes are `class_names` and the dataset is missing.
    """
    import keras

    if (class_names is None) == (dataset_dir is None):
        raise ValueError(f"give class_names or dataset_dir, got {class_names!r} and {dataset_dir!r}")
    run = Path(run)
    class_map = class_map_of(class_names) if dataset_dir is None else ds.class_map(dataset_dir)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3))
    filters, kernel, stride = conv
    x = keras.layers.Conv2D(filters, kernel, strides=stride, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(class_map.names))(x))
    config = copy.deepcopy(config) if config else cfg.Config()
    config.model.input_size = input_size
    config.data.image_size = stored_size
    lineage = {"phase": 1, "sampler": config.sampler.name,
               "dataset_dir": str(run / "missing" if dataset_dir is None else dataset_dir),
               "init_run": None, "seed": seed}
    return write_run(run, model, class_map, lineage, config)
