"""`predict --detections MD.json --md-out OUT.json`: the detector file with this model's species added,
in the MegaDetector batch-output format (1.6) that Timelapse, AddaxAI and MegaDetector's own
post-processing read as classifier output.

What changes against the input file: `format_version` becomes "1.6"; `info` gains `classifier`,
`classification_completion_time` and `classifier_metadata`; `classification_categories` (id -> class
name, ids are the class map's indices as strings) and `classification_category_descriptions` (id ->
scientific name where known, else the class name) are set; each detection that was classified gets
`classifications: [[id, conf], ...]`, top-k, highest first. Every image and detection of the input is
kept (also failures and boxes that were not classified), with `file` as the reader resolved it
(relative to the image folder predict ran on: absolute and prefixed paths rebased, which review tools
need); `classifications` the input already had
(another classifier's, in its own categories) are removed, because the categories are replaced.
Other top-level keys of the input are not copied (the format defines none besides these).

The input is streamed (ijson) and the output written image by image, atomically (temp + rename).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import pandas as pd

from serengeti_tf import io_utils
from serengeti_tf.errors import setting

MD_OUTPUT_VERSION = "1.6"
# In info.classifier_metadata: which predictions wrote the file, so a rerun may replace it.
DIGEST_KEY = "serengeti_tf_predictions"


def category_ids(class_names: Sequence[str]) -> dict[str, str]:
    """Class name -> MD classification category id (the class map index, as a string)."""
    return {name: str(index) for index, name in enumerate(class_names)}


def classifications_by_detection(crop_rows: pd.DataFrame, chosen: pd.DataFrame, md_row_of_path: Mapping[str, int],
                                 class_names: Sequence[str]) -> dict[tuple[int, int], list]:
    """(MD image row, detection index within that image's list) -> [[id, conf], ...] highest first.

    `crop_rows`: OUT.crops.csv rows (path, crop, top{j}_species, top{j}_prob); `chosen`: the selected
    boxes (`crops.select_boxes` of the same settings, with `ordinal` = index in the image's list).
    """
    ids = category_ids(class_names)
    if not len(crop_rows):
        return {}
    ordinal = {(int(image), int(crop)): int(o) for image, crop, o in zip(chosen["image"], chosen["crop"],
                                                                        chosen["ordinal"])}
    ranks = sorted(int(c[3:-len("_species")]) for c in crop_rows.columns
                   if c.startswith("top") and c.endswith("_species"))
    out: dict[tuple[int, int], list] = {}
    for row in crop_rows.to_dict("records"):
        image = md_row_of_path.get(str(row["path"]))
        if image is None:
            continue
        pairs = [[ids[str(row[f"top{j}_species"])], round(float(row[f"top{j}_prob"]), 6)] for j in ranks
                 if str(row.get(f"top{j}_species", "")) in ids]
        pairs.sort(key=lambda pair: -pair[1])  # already ordered; kept explicit, the format requires it
        out[(int(image), ordinal[(int(image), int(row["crop"]))])] = pairs
    return out


def _clean_detection(detection, added: Optional[list]):
    if not isinstance(detection, dict):
        return detection
    detection = {k: v for k, v in detection.items() if k != "classifications"}
    conf = detection.get("conf")
    if isinstance(conf, int) and not isinstance(conf, bool):
        detection["conf"] = float(conf)  # the format's confidences are floats (1 -> 1.0)
    if added:
        detection["classifications"] = added
    return detection


def write_md_output(detections_path: str | os.PathLike, out_path: str | os.PathLike,
                    classifications: Mapping[tuple[int, int], list], class_names: Sequence[str],
                    classifier: str, classifier_metadata: Optional[dict] = None,
                    describe: Optional[Callable[[str], str]] = None,
                    files: Optional[Sequence[str]] = None) -> dict[str, int]:
    """Streams `detections_path` into `out_path` with `classifications` added (module doc).

    `describe(class name)` gives the category description (a scientific name); None or an empty
    answer falls back to the class name. `files`: the `file` to write per image entry (the reader's
    image rows, in file order); None keeps the input's. Returns counts: images, detections,
    classified detections.
    """
    from serengeti_tf.data.detections import _first, _stream

    source = str(detections_path)
    info = dict(_first(source, "info") or {})
    info.update({"format_version": MD_OUTPUT_VERSION, "classifier": classifier,
                 "classification_completion_time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                 "classifier_metadata": classifier_metadata or {}})
    ids = category_ids(class_names)
    categories = {ids[name]: name for name in class_names}
    descriptions = {ids[name]: (describe(name) if describe else None) or name for name in class_names}
    head = {"info": info, "detection_categories": _first(source, "detection_categories"),
            "classification_categories": categories, "classification_category_descriptions": descriptions}
    counts = {"images": 0, "detections": 0, "classified_detections": 0}
    with io_utils.atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        text = json.dumps(head, indent=1)
        out.write(text[:-2] + ',\n "images": [')  # the head without its closing brace, then the list
        position = 0
        for item in _stream(source, "images.item"):
            if isinstance(item, dict):  # the reader's image rows count dict entries only
                if files is not None:
                    item = {**item, "file": files[position]}
                detections = item.get("detections")
                if isinstance(detections, list):
                    item = {**item, "detections": [
                        _clean_detection(d, classifications.get((position, k))) for k, d in enumerate(detections)]}
                    counts["detections"] += len(detections)
                    counts["classified_detections"] += sum((position, k) in classifications
                                                           for k in range(len(detections)))
                position += 1
            out.write(("\n  " if counts["images"] == 0 else ",\n  ") + json.dumps(item, allow_nan=False))
            counts["images"] += 1
        out.write("\n ]\n}\n")
    return counts


def check_replaceable(path: Path, digest: str) -> None:
    """Refuses to replace an existing `--md-out` file unless these same predictions wrote it."""
    from serengeti_tf.data.detections import _first
    from serengeti_tf.errors import UserError

    try:
        info = _first(str(path), "info")
    except UserError:
        info = None
    metadata = info.get("classifier_metadata") if isinstance(info, dict) else None
    if not (isinstance(metadata, dict) and metadata.get(DIGEST_KEY) == digest):
        raise UserError(f"{path} already exists (not written by these predictions); choose another {setting('md_out')} "
                        f"or pass {setting('overwrite')}")


def output_path(md_out: str | os.PathLike) -> Path:
    """Checks the `--md-out` name up front (a .json file)."""
    from serengeti_tf.errors import UserError

    path = Path(md_out)
    if path.suffix.lower() != ".json":
        raise UserError(f"{setting('md_out')} must be a .json file (MegaDetector batch output), got {path}")
    return path
