"""Reading a prepared dataset folder: the on-disk contract between `prepare` and everything after it.

Layout (written by `shards.py` / `prepare.py`):

    DATASET_DIR/
      config.yaml            resolved config of the prepare run
      class_map.json         {"num_classes": N, "classes": [{"index", "name", "paper_name"}, ...]}
      counts.csv             species, paper_name, train, val, test, total   (one row per class)
      manifest.csv           every input row: path, species, capture_id, site, datetime, season,
                             frame, source, drop_reason ('' = kept), split
      crops.csv              detector-crop datasets only (prepare --detections): one row per crop, the
                             manifest columns + crop, box_x, box_y, box_w, box_h, detection_conf;
                             counts.csv then has unit = crops and counts crops, not images
      shards.json            {"train": [{"file", "class", "num_examples", "num_bytes"}, ...], "val": [...],
                             "test": [...]}  (num_bytes: the size written, checked before use)
      dataset_info.json, features.json       TFDS metadata (tfds.builder_from_directory)
      camera_traps-<split>.tfrecord-XXXXX-of-YYYYY   shards; each train shard holds one class only
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import run_folder
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import read_json

SPLITS = ("train", "val", "test")
TFDS_NAME = "camera_traps"


def _require(dataset_dir: str | Path, what: str) -> Path:
    """`dataset_dir/what` (a `run_folder` artefact name); UserError when it is missing."""
    path = Path(dataset_dir) / what
    if not path.exists():
        raise UserError(f"prepared dataset: {what} missing at {path} (run `serengeti-tf prepare` first)")
    return path


def class_names(dataset_dir: str | Path) -> list[str]:
    """Class names in label-index order."""
    return class_map(dataset_dir).names


def class_map(dataset_dir: str | Path) -> ClassMap:
    return ClassMap.read(_require(dataset_dir, run_folder.CLASS_MAP))


def counts(dataset_dir: str | Path) -> pd.DataFrame:
    """Per-class image counts per split, in label-index order."""
    frame = pd.read_csv(_require(dataset_dir, run_folder.COUNTS), keep_default_na=False)
    order = {name: i for i, name in enumerate(class_names(dataset_dir))}
    return frame.sort_values("species", key=lambda s: s.map(order)).reset_index(drop=True)


def train_counts(dataset_dir: str | Path) -> dict[str, int]:
    frame = counts(dataset_dir)
    return dict(zip(frame["species"], frame["train"].astype(int)))


def shard_index(dataset_dir: str | Path) -> dict:
    return read_json(_require(dataset_dir, run_folder.SHARD_INDEX))


def damaged_shards(dataset_dir: str | Path, index: dict | None = None) -> list[str]:
    """Shards listed in shards.json that are missing or not the size prepare wrote (truncated)."""
    root = Path(dataset_dir)
    index = shard_index(root) if index is None else index
    damaged = []
    for entries in index.values():
        for entry in entries:
            path = root / entry["file"]
            expected = entry.get("num_bytes")  # absent in datasets written before sizes were recorded
            if not path.is_file() or (expected is not None and path.stat().st_size != expected):
                damaged.append(entry["file"])
    return damaged


def check_shards(dataset_dir: str | Path) -> None:
    """Raises a UserError naming missing or truncated shards, before any work starts on them."""
    damaged = damaged_shards(dataset_dir)
    if damaged:
        raise UserError(f"prepared dataset {dataset_dir}: {len(damaged)} shard(s) missing or truncated "
                        f"({', '.join(damaged[:3])}{', ...' if len(damaged) > 3 else ''}); rerun "
                        f"`serengeti-tf prepare` on it to rewrite them")


def split_files(dataset_dir: str | Path, split: str) -> list[str]:
    """Absolute shard paths of one split, in the order they were written."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(dataset_dir)
    return [str(root / s["file"]) for s in shard_index(root)[split]]


def train_class_files(dataset_dir: str | Path) -> dict[str, list[str]]:
    """Class name -> absolute paths of the train shards holding only that class (every class listed)."""
    root = Path(dataset_dir)
    files: dict[str, list[str]] = {name: [] for name in class_names(root)}
    for shard in shard_index(root)["train"]:
        files[shard["class"]].append(str(root / shard["file"]))
    return files


def manifest(dataset_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(_require(dataset_dir, run_folder.MANIFEST),
                       keep_default_na=False, dtype={"capture_id": str, "site": str, "season": str})


def example_unit(dataset_dir: str | Path) -> str:
    """What one example of the dataset is: `crops` (prepared with --detections) or `images`."""
    frame = pd.read_csv(_require(dataset_dir, run_folder.COUNTS), nrows=1, keep_default_na=False)
    return "crops" if "unit" in frame.columns and (frame["unit"] == "crops").all() else "images"


def stored_image_size(dataset_dir: str | Path) -> int:
    """Shorter side of the stored images (data.image_size of the prepare run)."""
    return cfg.load_saved(_require(dataset_dir, run_folder.CONFIG)).data.image_size
