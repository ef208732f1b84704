"""Streaming reader for MegaDetector batch output (the JSON MegaDetector and LILA publish).

Layout read (format_version 1.0-1.4):

    {"info": {"format_version": "1.4", "detector": ...},
     "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
     "images": [{"file": "S9/B03/...JPG", "detections": [{"category": "1", "conf": 0.93,
                 "bbox": [x, y, w, h]}]},   # normalised to [0, 1], origin top-left
                {"file": "...", "failure": "Failure image access"}]}

These files reach GBs (one per LILA dataset), so the `images` array is streamed with ijson (through
the COCO reader's NaN-to-null filter) and only compact columns are kept: one row per image
(file, failure) and one row per detection (image row, category, conf, box, problem). `info` and
`detection_categories` are read in their own short passes (they usually open the file).

Every detection is kept with a `problem` (`` = usable) so callers can count drop reasons:
`conf_nan` (missing / NaN confidence), `box_malformed` (not four numbers), `box_empty` (zero or
negative width or height), `box_outside_image` (no overlap with the image), `unknown_category`
(category not in `detection_categories`). Boxes partly outside the image are clipped to it and
marked `clipped`. Peak memory: benchmarks/results/crop_prepare.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from serengeti_tf.errors import UserError

KNOWN_FORMAT_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")
BOX_PROBLEMS = ("conf_nan", "box_malformed", "box_empty", "box_outside_image", "unknown_category")
_BATCH = 20_000


@dataclass
class Detections:
    """What an MD file says: `images` (file, failure; one row per listed image, file order) and
    `boxes` (image = row in `images`, category name, conf, x, y, w, h clipped to [0, 1], clipped,
    problem), plus the file's `format_version` and `categories` (id -> name)."""

    images: pd.DataFrame
    boxes: pd.DataFrame
    format_version: str
    categories: dict[str, str]
    source: str

    def problem_counts(self) -> dict[str, int]:
        counts = self.boxes["problem"].value_counts()
        return {p: int(counts.get(p, 0)) for p in BOX_PROBLEMS}


def _stream(path: str, prefix: str) -> Iterator:
    import ijson

    from serengeti_tf.data.sources.coco_camera_traps import NonFiniteAsNull

    with open(path, "rb") as raw:
        try:
            yield from ijson.items(NonFiniteAsNull(raw), prefix, use_float=True)
        except ijson.JSONError as err:
            raise UserError(f"{path} is not valid JSON near '{prefix}': {str(err).splitlines()[0]}") from None


def _first(path: str, prefix: str):
    for value in _stream(path, prefix):
        return value
    return None


def check_format_version(path: str, info) -> str:
    """The file's `info.format_version`, refused with one line when missing or not a known one."""
    version = info.get("format_version") if isinstance(info, dict) else None
    if version is None:
        raise UserError(f"{path} is not MegaDetector batch output: no info.format_version "
                        f"(known: {', '.join(KNOWN_FORMAT_VERSIONS)})")
    text = str(version).strip()
    if text == "1":
        text = "1.0"
    if text not in KNOWN_FORMAT_VERSIONS:
        raise UserError(f"{path}: MegaDetector format_version {version!r} is not one this reader knows "
                        f"({', '.join(KNOWN_FORMAT_VERSIONS)})")
    return text


def _box_row(detection, categories: dict[str, str]) -> tuple:
    """(category name, conf, x, y, w, h, clipped, problem) of one detection."""
    if not isinstance(detection, dict):
        return ("", math.nan, 0.0, 0.0, 0.0, 0.0, False, "box_malformed")
    category_id = "" if detection.get("category") is None else str(detection.get("category"))
    name = categories.get(category_id, "")
    conf = detection.get("conf")
    conf = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else math.nan
    bbox = detection.get("bbox")
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        return (name, conf, 0.0, 0.0, 0.0, 0.0, False, "box_malformed")
    x, y, w, h = (float(v) for v in bbox)
    problem = ""
    clipped = False
    if math.isnan(conf):
        problem = "conf_nan"
    elif w <= 0 or h <= 0:
        problem = "box_empty"
    else:
        x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(1.0, x + w), min(1.0, y + h)
        if x1 <= x0 or y1 <= y0:
            problem = "box_outside_image"
        else:
            clipped = (x0, y0, x1, y1) != (x, y, x + w, y + h)
            x, y, w, h = x0, y0, x1 - x0, y1 - y0
    if not problem and not name:
        problem = "unknown_category"
    return (name or category_id, conf, x, y, w, h, clipped, problem)


_BOX_COLUMNS = {"category": "category", "conf": "float32", "x": "float32", "y": "float32", "w": "float32",
                "h": "float32", "clipped": "bool", "problem": "category"}


def read_detections(path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                    progress: bool = False) -> Detections:
    """Streams an MD batch-output file; `file` paths are made relative to `image_root` when given.

    Raises UserError (one line) for a missing file, invalid JSON, an unknown format_version, a
    missing `detection_categories` or `images` list. A `datapackage.json` is read as a Camtrap DP
    package (`sources.camtrap_dp.package_detections`: its media-level observation boxes).
    """
    from tqdm import tqdm

    from serengeti_tf.data.sources import relative_posix

    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"detections file not found (--detections / data.detections): {path}")
    if Path(path).name.lower() == "datapackage.json":  # a Camtrap DP package: its observations' boxes
        from serengeti_tf.data.sources.camtrap_dp import package_detections

        return package_detections(path, image_root)
    version = check_format_version(path, _first(path, "info"))
    categories = _first(path, "detection_categories")
    if not isinstance(categories, dict) or not categories:
        raise UserError(f"{path} is not MegaDetector batch output: no detection_categories mapping")
    categories = {str(k): str(v) for k, v in categories.items()}

    # Python objects for at most `_BATCH` images / detections are alive at a time; the rest is
    # compact columns (pandas string storage, float32, categorical).
    file_pieces: list[pd.Series] = []
    failure_pieces: list[pd.Series] = []
    box_pieces: list[pd.DataFrame] = []
    files: list[str] = []
    failures: list[str] = []
    batch: list[tuple] = []
    owners: list[int] = []
    count = 0

    def flush_boxes() -> None:
        if batch:
            frame = pd.DataFrame(batch, columns=list(_BOX_COLUMNS))
            frame.insert(0, "image", np.asarray(owners, dtype=np.int32))
            box_pieces.append(frame.astype(_BOX_COLUMNS))
            batch.clear()
            owners.clear()

    def flush_images() -> None:
        if files:
            file_pieces.append(pd.Series(files, dtype="str"))
            failure_pieces.append(pd.Series(failures, dtype="str"))
            files.clear()
            failures.clear()

    bar = tqdm(desc=f"reading {Path(path).name}", unit="img", disable=not progress, mininterval=1.0, leave=False)
    for item in _stream(path, "images.item"):
        bar.update(1)
        if not isinstance(item, dict):
            continue
        files.append("" if item.get("file") is None else str(item.get("file")))
        failure = item.get("failure")
        failures.append("" if failure is None else str(failure))
        for detection in item.get("detections") or ():
            batch.append(_box_row(detection, categories))
            owners.append(count)
        count += 1
        if len(batch) >= _BATCH:
            flush_boxes()
        if len(files) >= _BATCH:
            flush_images()
    bar.close()
    flush_boxes()
    flush_images()
    if not count:
        raise UserError(f"{path} is not MegaDetector batch output: no 'images' list with entries")
    file_series = pd.concat(file_pieces, ignore_index=True)
    unnamed = int((file_series == "").sum())
    if unnamed:
        raise UserError(f"{path}: {unnamed} of {count} images have no 'file'")
    boxes = (pd.concat(box_pieces, ignore_index=True) if box_pieces else
             pd.DataFrame({"image": pd.Series([], dtype="int32"),
                           **{k: pd.Series([], dtype=v) for k, v in _BOX_COLUMNS.items()}}))
    boxes["problem"] = boxes["problem"].astype(str).astype(pd.CategoricalDtype(("",) + BOX_PROBLEMS))
    if image_root is not None:
        file_series = relative_posix(file_series, image_root)
    images = pd.DataFrame({"file": file_series, "failure": pd.concat(failure_pieces, ignore_index=True)})
    return Detections(images=images, boxes=boxes, format_version=version, categories=categories, source=path)


def write_md_file(path: str | os.PathLike, images: list[dict], categories: dict[str, str] | None = None,
                  format_version: str = "1.4", info: dict | None = None) -> None:
    """Writes an MD batch-output file (atomically): used by demo data, tests and benchmarks."""
    import json

    from serengeti_tf.io_utils import write_text

    content = {"info": {"format_version": format_version, **(info or {})},
               "detection_categories": categories or {"1": "animal", "2": "person", "3": "vehicle"},
               "images": images}
    write_text(path, json.dumps(content, indent=1) + "\n")
