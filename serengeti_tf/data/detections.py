"""Streaming reader for MegaDetector batch output (the JSON MegaDetector, AddaxAI, LILA, and converters
for PyTorch-Wildlife, Zamba and SpeciesNet write).

Layout read (https://lila.science/megadetector-output-format; format_version 1.0-1.6, later 1.x read
with a warning, a missing version read with a warning):

    {"info": {"format_version": "1.6", "detector": ..., "detector_metadata":
              {"typical_detection_threshold": 0.2, ...}},
     "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
     "classification_categories": {"0": "zebra", ...},          # optional (a classifier ran)
     "images": [{"file": "S9/B03/...JPG", "detections": [{"category": "1", "conf": 0.93,
                 "bbox": [x, y, w, h],                           # normalised to [0, 1], origin top-left
                 "classifications": [["0", 0.91], ...]}]},       # optional, highest first
                {"file": "...", "failure": "Failure image access"}]}

Versions 1.5 and 1.6 only add fields (video frames, detector metadata, string versions); fields
this reader does not know are ignored. An empty `images` list is a valid file: it reads as no
images (callers then say so).

Paths: `file` may be relative (to the folder MD ran on) or absolute, from Windows (`C:\\cams\\...`,
`\\\\server\\share\\...`) or POSIX. With an `image_root`, `strip_prefix` is removed first; then absolute
paths that do not lie under the root are rebased onto it: the prefix to drop is found by looking
for the longest tail of the path that exists under the root (one search per distinct folder prefix,
`rebase_foreign`). What is left goes through the readers' shared path helper
(`sources.relative_posix`).

These files reach GBs (one per LILA dataset), so the `images` array is streamed with ijson (through
the COCO reader's NaN-to-null filter) and only compact columns are kept: one row per image
(file, failure) and one row per detection (image row, category, conf, box, problem), plus one row
per classification already in the file (box row, rank, category name, conf). `info` and the
category mappings are read in their own short passes (they usually open the file).

Every detection is kept with a `problem` (`` = usable) so callers can count drop reasons:
`conf_nan` (missing / NaN confidence), `box_malformed` (not four numbers), `box_empty` (zero or
negative width or height), `box_outside_image` (no overlap with the image), `unknown_category`
(category not in `detection_categories`). Boxes partly outside the image are clipped to it and
marked `clipped`. Peak memory: benchmarks/results/crop_prepare.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import ijson
import numpy as np
import pandas as pd

from serengeti_tf import events
from serengeti_tf.data.sources import relative_posix
from serengeti_tf.data.sources.camtrap_dp import BOX_COLUMNS, _number, media_paths, read_package
from serengeti_tf.data.sources.coco_camera_traps import NonFiniteAsNull
from serengeti_tf.errors import UserError, setting
from serengeti_tf.io_utils import write_text

log = logging.getLogger(__name__)

# Versions read silently; a later minor version of major 1 is read with a warning.
KNOWN_FORMAT_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
NEWEST_KNOWN = 1.6
BOX_PROBLEMS = ("conf_nan", "box_malformed", "box_empty", "box_outside_image", "unknown_category")
# Detector confidence that makes a crop when neither the user nor the file says otherwise.
DEFAULT_THRESHOLD = 0.2
_BATCH = 20_000
# `C:/...`, `//server/share/...` (after backslashes became slashes) and `/...`.
_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:/|//|/)")
_WINDOWS_STYLE = re.compile(r"^(?:[A-Za-z]:/|//)")


@dataclass
class Detections:
    """What an MD file says: `images` (file, failure; one row per listed image, file order) and
    `boxes` (image = row in `images`, category name, conf, x, y, w, h clipped to [0, 1], clipped,
    problem), plus the file's `format_version` and `categories` (id -> name).

    `classifications`: (box = row in `boxes`, rank from 0 = the file's first, category name, conf)
    for classifications already in the file, with `classification_categories` (id -> name);
    `typical_threshold`: `info.detector_metadata.typical_detection_threshold` (None when absent);
    `notes`: one line per thing the reader assumed (version, rebased paths), for the summary."""

    images: pd.DataFrame
    boxes: pd.DataFrame
    format_version: str
    categories: dict[str, str]
    source: str
    classifications: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"box": pd.Series([], dtype="int64"), "rank": pd.Series([], dtype="int16"),
         "category": pd.Series([], dtype="str"), "conf": pd.Series([], dtype="float32")}))
    classification_categories: dict[str, str] = field(default_factory=dict)
    typical_threshold: Optional[float] = None
    notes: list[str] = field(default_factory=list)

    def problem_counts(self) -> dict[str, int]:
        counts = self.boxes["problem"].value_counts()
        return {p: int(counts.get(p, 0)) for p in BOX_PROBLEMS}

    def threshold(self, configured: Optional[float]) -> tuple[float, str]:
        """(threshold, where it came from): the configured one, else the file's typical one, else 0.2."""
        if configured is not None:
            return float(configured), "data.crops.threshold"
        if self.typical_threshold is not None:
            return self.typical_threshold, "info.detector_metadata.typical_detection_threshold of the MD file"
        return DEFAULT_THRESHOLD, "default"


def _stream(path: str, prefix: str) -> Iterator:
    with open(path, "rb") as raw:
        try:
            yield from ijson.items(NonFiniteAsNull(raw), prefix, use_float=True)
        except ijson.JSONError as err:
            raise UserError(f"{path} is not valid JSON near '{prefix}': {str(err).splitlines()[0]}") from None


def _first(path: str, prefix: str):
    for value in _stream(path, prefix):
        return value
    return None


def check_format_version(path: str, info) -> tuple[str, Optional[str]]:
    """(the file's `info.format_version` as text, a warning line or None).

    Compared as a number, as MegaDetector's own validator does (`float(format_version)`: "1.6",
    1.6 and "1.60" are the same, `1` is 1.0): 1.0-1.6 are read; a later 1.x is read with a warning
    (later versions only add fields); a missing version is read with a warning (PyTorch-Wildlife and
    Zamba write none); 2.0 or later, below 1.0, or a non-number is refused (one line).
    """
    version = info.get("format_version") if isinstance(info, dict) else None
    if version is None or (isinstance(version, str) and not version.strip()):
        return "", (f"{path} has no info.format_version (PyTorch-Wildlife and Zamba write none); "
                    f"read as MegaDetector batch output {KNOWN_FORMAT_VERSIONS[-1]}")
    text = str(version).strip()
    if isinstance(version, bool) or not re.fullmatch(r"\d+(?:\.\d+)?", text):
        raise UserError(f"{path}: MegaDetector format_version {version!r} is not a version number "
                        f"(known: {', '.join(KNOWN_FORMAT_VERSIONS)})")
    number = float(text)
    if not 1.0 <= number < 2.0:
        raise UserError(f"{path}: MegaDetector format_version {version!r} is not one this reader knows "
                        f"({', '.join(KNOWN_FORMAT_VERSIONS)})")
    text = text if "." in text else f"{text}.0"
    if number > NEWEST_KNOWN:
        return text, (f"{path}: MegaDetector format_version {text} is newer than this reader knows "
                      f"({KNOWN_FORMAT_VERSIONS[-1]}); read as {KNOWN_FORMAT_VERSIONS[-1]}, fields it does not "
                      f"know are ignored")
    return text, None


def _typical_threshold(path: str, info) -> Optional[float]:
    metadata = info.get("detector_metadata") if isinstance(info, dict) else None
    value = metadata.get("typical_detection_threshold") if isinstance(metadata, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"{path}: info.detector_metadata.typical_detection_threshold must be a number in "
                        f"[0, 1], got {value!r}")
    return float(value)


def _category_map(path: str, key: str, value, required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or (required and not value):
        raise UserError(f"{path} is not MegaDetector batch output: no {key} mapping")
    return {str(k): str(v) for k, v in value.items()}


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
                    progress: bool = False, strip_prefix: str = "",
                    on_event: events.EventSink = events.ignore) -> Detections:
    """Streams an MD batch-output file; `file` paths are made relative to `image_root` when given
    (after removing `strip_prefix`, and rebasing absolute paths from elsewhere: module doc).

    Raises UserError (one line) for a missing file, invalid JSON, an unknown major format_version,
    a missing `detection_categories` or `images` list. Warnings (no or a newer version) are logged
    once and kept in `notes`.
    A `datapackage.json` is read as a Camtrap DP package (`package_detections`:
    its media-level observation boxes). With `progress`, the images read are reported to `on_event`.
    """
    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"detections file not found ({setting('detections')} / data.detections): {path}")
    if Path(path).name.lower() == "datapackage.json":  # a Camtrap DP package: its observations' boxes
        return package_detections(path, image_root)
    info = _first(path, "info")
    version, warning = check_format_version(path, info)
    notes = []
    if warning:
        log.warning("%s", warning)
        notes.append(warning)
    typical = _typical_threshold(path, info)
    categories = _category_map(path, "detection_categories", _first(path, "detection_categories"), True)
    class_categories = _category_map(path, "classification_categories",
                                     _first(path, "classification_categories"), False)

    # Python objects for at most `_BATCH` images / detections are alive at a time; the rest is
    # compact columns (pandas string storage, float32, categorical).
    file_pieces: list[pd.Series] = []
    failure_pieces: list[pd.Series] = []
    box_pieces: list[pd.DataFrame] = []
    class_pieces: list[pd.DataFrame] = []
    files: list[str] = []
    failures: list[str] = []
    batch: list[tuple] = []
    owners: list[int] = []
    classes: list[tuple] = []
    count = boxes_seen = 0

    def flush_boxes() -> None:
        if batch:
            frame = pd.DataFrame(batch, columns=list(_BOX_COLUMNS))
            frame.insert(0, "image", np.asarray(owners, dtype=np.int32))
            box_pieces.append(frame.astype(_BOX_COLUMNS))
            batch.clear()
            owners.clear()
        if classes:
            class_pieces.append(pd.DataFrame(classes, columns=["box", "rank", "category", "conf"]).astype(
                {"box": "int64", "rank": "int16", "category": "str", "conf": "float32"}))
            classes.clear()

    def flush_images() -> None:
        if files:
            file_pieces.append(pd.Series(files, dtype="str"))
            failure_pieces.append(pd.Series(failures, dtype="str"))
            files.clear()
            failures.clear()

    sink = on_event if progress else events.ignore
    for item in events.track(_stream(path, "images.item"), sink, f"reading {Path(path).name}", unit="img",
                             transient=True):
        if not isinstance(item, dict):
            continue
        files.append("" if item.get("file") is None else str(item.get("file")))
        failure = item.get("failure")
        failures.append("" if failure is None else str(failure))
        for detection in item.get("detections") or ():
            batch.append(_box_row(detection, categories))
            owners.append(count)
            if class_categories and isinstance(detection, dict):
                classes.extend(_class_rows(detection.get("classifications"), boxes_seen, class_categories))
            boxes_seen += 1
        count += 1
        if len(batch) >= _BATCH:
            flush_boxes()
        if len(files) >= _BATCH:
            flush_images()
    flush_boxes()
    flush_images()
    if not count and not isinstance(_first(path, "images"), list):  # cheap: the list is empty or absent
        raise UserError(f"{path} is not MegaDetector batch output: no 'images' list")
    file_series = pd.concat(file_pieces, ignore_index=True) if file_pieces else pd.Series([], dtype="str")
    unnamed = int((file_series == "").sum())
    if unnamed:
        raise UserError(f"{path}: {unnamed} of {count} images have no 'file'")
    boxes = (pd.concat(box_pieces, ignore_index=True) if box_pieces else
             pd.DataFrame({"image": pd.Series([], dtype="int32"),
                           **{k: pd.Series([], dtype=v) for k, v in _BOX_COLUMNS.items()}}))
    boxes["problem"] = boxes["problem"].astype(str).astype(pd.CategoricalDtype(("",) + BOX_PROBLEMS))
    if image_root is not None:
        file_series, path_notes = file_paths(file_series, image_root, strip_prefix)
        notes += path_notes
    images = pd.DataFrame({"file": file_series, "failure": (pd.concat(failure_pieces, ignore_index=True)
                                                            if failure_pieces else pd.Series([], dtype="str"))})
    found = Detections(images=images, boxes=boxes, format_version=version or "none", categories=categories,
                       source=path, classification_categories=class_categories, typical_threshold=typical,
                       notes=notes)
    if class_pieces:
        found.classifications = pd.concat(class_pieces, ignore_index=True)
    return found


def _class_rows(value, box: int, names: dict[str, str]) -> list[tuple]:
    """(box, rank, category name, conf) of one detection's `classifications` ([[id, conf], ...]);
    entries that are not an (id known to classification_categories, finite number) pair are skipped."""
    rows = []
    for rank, entry in enumerate(value if isinstance(value, list) else ()):
        if (isinstance(entry, (list, tuple)) and len(entry) >= 2 and str(entry[0]) in names
                and isinstance(entry[1], (int, float)) and not isinstance(entry[1], bool) and math.isfinite(entry[1])):
            rows.append((box, rank, names[str(entry[0])], float(entry[1])))
    return rows


# ---- paths ---------------------------------------------------------------------------------------

def _normalise_prefix(prefix: str) -> str:
    text = prefix.strip().replace("\\", "/")
    return text if text.endswith("/") or not text else text + "/"


def _starts(paths: pd.Series, prefix: str) -> pd.Series:
    """Which paths start with `prefix`; ignoring case for a Windows prefix (its file systems do)."""
    if _WINDOWS_STYLE.match(prefix):
        return paths.str.lower().str.startswith(prefix.lower())
    return paths.str.startswith(prefix)


def file_paths(files: pd.Series, image_root: str | os.PathLike, strip_prefix: str = "") -> tuple[pd.Series, list[str]]:
    """MD `file` entries as paths relative to `image_root` (posix), and one note per rewrite made.

    `strip_prefix` (slashes either way; case-insensitive when it is a Windows path) is removed where
    it starts a path. Absolute paths (Windows drive or UNC, or POSIX outside the root) are rebased
    with `rebase_foreign`. The result goes through `sources.relative_posix`, the readers' shared helper.
    """
    text = files.astype(str)
    if text.str.contains("\\", regex=False).any():
        text = text.str.replace("\\", "/", regex=False)
    notes = []
    prefix = _normalise_prefix(strip_prefix)
    if prefix:
        starts = _starts(text, prefix)
        text = text.where(~starts, text.str.slice(len(prefix)))
        # Notes are written into the crop report and predict's summary JSON: their text is on-disk output.
        notes.append(f"--strip-prefix {strip_prefix!r} removed from {int(starts.sum())} of {len(text)} MD paths")
    absolute = text.str.match(_ABSOLUTE.pattern)
    if absolute.any():
        root = Path(image_root).resolve()
        # Under the root: made relative here (relative_posix knows POSIX roots only, not `C:/...`).
        inside = absolute & _starts(text, root.as_posix().rstrip("/") + "/")
        if inside.any():
            text = text.where(~inside, text.str.slice(len(root.as_posix().rstrip("/")) + 1))
        foreign = absolute & ~inside
        if foreign.any():
            rebased, prefixes = rebase_foreign(text[foreign], root)
            text = text.where(~foreign, rebased)
            left = int(rebased.str.match(_ABSOLUTE.pattern).sum())
            notes += [f"MD paths under {p!r} ({n}) rebased onto the image root" for p, n in prefixes.items()]
            if left:
                notes.append(f"{left} absolute MD paths match no file under the image root {root} "
                             f"(e.g. {rebased[rebased.str.match(_ABSOLUTE.pattern)].iloc[0]}); pass --strip-prefix")
    for note in notes:
        log.info("%s", note)
    return relative_posix(text, image_root), notes


def rebase_foreign(paths: pd.Series, root: Path, max_folders: int = 256) -> tuple[pd.Series, dict[str, int]]:
    """Absolute paths written on another machine (or another mount), made relative to `root`.

    One path of a folder not tried yet is looked up by its tails (`a/b/c.jpg`, then `b/c.jpg`, ...):
    the first tail that exists under `root` fixes the prefix to drop, and that prefix is dropped from
    every path it starts (vectorised). A folder whose path matched nothing is not tried again; at most
    `max_folders` folders are tried. Paths left unmatched stay as they are. Returns (paths,
    {prefix: paths rebased}).
    """
    paths = paths.copy()
    placed = pd.Series(False, index=paths.index)
    tried: set[str] = set()
    prefixes: dict[str, int] = {}
    for _ in range(max_folders):
        todo = paths[~placed]
        if todo.empty:
            break
        folders = todo.str.rpartition("/")[0]
        fresh = ~folders.isin(tried)
        if not fresh.any():
            break
        candidate, folder = todo[fresh].iloc[0], folders[fresh].iloc[0]
        tried.add(folder)
        parts = candidate.split("/")
        cut = next((c for c in range(1, len(parts)) if (root / "/".join(parts[c:])).is_file()), None)
        if cut is None:
            continue
        prefix = "/".join(parts[:cut]) + "/"
        hit = ~placed & _starts(paths, prefix)
        paths = paths.where(~hit, paths.str.slice(len(prefix)))
        placed |= hit
        prefixes[prefix] = int(hit.sum())
    return paths, prefixes


def write_md_file(path: str | os.PathLike, images: list[dict], categories: dict[str, str] | None = None,
                  format_version: str | None = "1.4", info: dict | None = None, **extra) -> None:
    """Writes an MD batch-output file (atomically): used by demo data, tests and benchmarks.
    `format_version=None` writes none (as PyTorch-Wildlife and Zamba); `extra` adds top-level keys."""
    head = {"format_version": format_version} if format_version is not None else {}
    content = {"info": {**head, **(info or {})},
               "detection_categories": categories or {"1": "animal", "2": "person", "3": "vehicle"},
               **extra, "images": images}
    write_text(path, json.dumps(content, indent=1) + "\n")


def package_detections(path: str | Path, image_root: str | Path | None = None):
    """A Camtrap DP package's boxes as `Detections` (one image row per media, one box per
    media-level observation with all four bbox values), so the crop code cuts them like MD boxes.

    Category: `animal` / `person` / `vehicle` by observationType; conf: classificationProbability,
    1.0 when empty (a human's box). Box problems are those of `detections` (empty, outside, ...).
    """
    _, tables = read_package(path)
    media, observations = tables["media"].reset_index(drop=True), tables["observations"]
    files = media_paths(media, image_root) if image_root is not None else media["filePath"]
    boxed = observations[(observations["observationLevel"].str.lower() == "media")
                         & (observations[list(BOX_COLUMNS)] != "").all(axis=1)]
    categories = {"1": "animal", "2": "person", "3": "vehicle"}
    category_id = boxed["observationType"].str.lower().map({"animal": "1", "human": "2", "vehicle": "3"}).fillna("")
    row_of = pd.Series(np.arange(len(media)), index=media["mediaID"].to_numpy())
    owners, rows = [], []
    for media_id, category, probability, *box in zip(boxed["mediaID"], category_id, boxed["classificationProbability"],
                                                     *(boxed[c] for c in BOX_COLUMNS)):
        if media_id not in row_of.index:
            continue
        owners.append(int(row_of[media_id]))
        rows.append(_box_row({"category": category, "conf": _number(probability, 1.0),
                              "bbox": [_number(v, float("nan")) for v in box]}, categories))
    boxes = pd.DataFrame(rows, columns=list(_BOX_COLUMNS)).astype(_BOX_COLUMNS)
    boxes.insert(0, "image", np.asarray(owners, dtype=np.int32))
    boxes["problem"] = boxes["problem"].astype(str).astype(pd.CategoricalDtype(("",) + BOX_PROBLEMS))
    images = pd.DataFrame({"file": files.reset_index(drop=True), "failure": ""})
    return Detections(images=images, boxes=boxes, format_version="camtrap-dp", categories=categories,
                      source=str(path))
