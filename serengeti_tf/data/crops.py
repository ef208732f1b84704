"""Detector crops: which MD boxes become examples, their pixel geometry, and cutting them out.

Selection (`select_boxes`, pure): usable boxes (no `detections.BOX_PROBLEMS`) of category
`data.crops.category` with conf >= `data.crops.threshold`; then the `data.crops.select` rule
registered below (`choices.CROP_SELECTIONS`): `all` of them, or the `top1` per image.

Geometry (`crop_rectangle`, pure): the box grows by `padding` x its size on every side, then (with
`square`) its shorter side grows to the longer one around the same centre, shifted back inside the
image where it fits, then clipped to the image. `min_size` applies to the shorter side of that
rectangle in source pixels; smaller crops are dropped (`box_too_small`).

Cutting (`cut_crops`, run in prepare's spawned workers, which import this module but never
TensorFlow): one decode per image for all its
crops, with JPEG DCT draft only down to the scale the smallest crop needs to keep `short_side`
pixels (a small far-away animal gets the full-resolution decode, a frame-filling one a 1/8 decode),
then each crop is resized so its shorter side is `short_side` (the stored `data.image_size`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from serengeti_tf.choices import CROP_SELECTIONS
from serengeti_tf.data import images
from serengeti_tf.errors import UserError

# Crop-level columns a crop table adds to the manifest columns (`crop` = index within its image,
# by decreasing confidence; the box is the detector's, clipped to the image, normalised x, y, w, h).
CROP_COLUMNS = ("crop", "box_x", "box_y", "box_w", "box_h", "detection_conf")
# Image-level drop reasons the detections add (manifest.csv) and crop-level ones (crops.csv).
IMAGE_DROP_REASONS = ("not_in_detections", "detector_failure", "no_detection")
CROP_DROP_REASONS = ("box_too_small",)
TOO_SMALL = "box_too_small"


# ---- data.crops.select: (usable boxes sorted by image, then decreasing conf) -> the chosen ones ----

@CROP_SELECTIONS.register("all", help="every box above the threshold is one example")
def all_boxes(ordered: pd.DataFrame) -> pd.DataFrame:
    return ordered


@CROP_SELECTIONS.register("top1", help="the most confident box of each image")
def top_box(ordered: pd.DataFrame) -> pd.DataFrame:
    return ordered[~ordered["image"].duplicated(keep="first")]


def select_boxes(boxes: pd.DataFrame, category: str, threshold: float, select: str) -> pd.DataFrame:
    """The boxes that become crops: usable, of `category`, conf >= threshold; all or top-1 per image.

    Returns `boxes` rows (index kept) sorted by image then decreasing conf, with `crop` numbered per image.
    """
    usable = boxes[(boxes["problem"] == "") & (boxes["category"].astype(str) == category)
                   & (boxes["conf"] >= threshold)]
    # Ties in conf keep file order (stable sort), so the same file gives the same crops.
    ordered = usable.sort_values(["image", "conf"], ascending=[True, False], kind="stable")
    ordered = CROP_SELECTIONS.lookup(select)(ordered).copy()
    ordered["crop"] = ordered.groupby("image").cumcount().astype(np.int64)
    return ordered


def check_category(detections, category: str) -> None:
    """Refuses a `data.crops.category` the MD file does not define (a typo would drop every image)."""
    names = sorted(set(detections.categories.values()))
    if category not in names:
        raise UserError(f"data.crops.category {category!r} is not a category of {detections.source} "
                        f"(detection_categories: {', '.join(names)})")


def box_reason_counts(boxes: pd.DataFrame, chosen_index: pd.Index, category: str, threshold: float) -> dict:
    """Why each detection did or did not become a crop (every detection counted once)."""
    reasons = pd.Series("not_selected", index=boxes.index, dtype=object)  # lost to top1
    reasons[boxes["conf"] < threshold] = "below_threshold"
    reasons[boxes["category"].astype(str) != category] = "other_category"
    problem = boxes["problem"].astype(str)
    reasons[problem != ""] = problem[problem != ""]
    reasons[reasons.index.isin(chosen_index)] = "selected"
    counts = reasons.value_counts()
    return {str(k): int(v) for k, v in counts.items()} | {"clipped_to_image": int(boxes["clipped"].sum())}


def crop_rectangle(box: Sequence[float], width: int, height: int, padding: float,
                   square: bool) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) in source pixels of the crop for normalised box (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    bw, bh = w * width, h * height
    cx, cy = (x + w / 2) * width, (y + h / 2) * height
    bw, bh = bw * (1 + 2 * padding), bh * (1 + 2 * padding)
    if square:
        bw = bh = max(bw, bh)
    left, top = cx - bw / 2, cy - bh / 2
    # Shift a square back inside the image when it fits, so it stays square; clip what does not fit.
    left = min(max(left, 0.0), max(0.0, width - bw))
    top = min(max(top, 0.0), max(0.0, height - bh))
    return max(0.0, left), max(0.0, top), min(float(width), left + bw), min(float(height), top + bh)


def cut_crops(path: str, boxes: Sequence[Sequence[float]], short_side: int, padding: float, square: bool,
              min_size: int):
    """Decodes `path` once and returns one PIL image per box (shorter side `short_side`), or the
    string `box_too_small: ...` for a crop under `min_size` source pixels.

    Raises FileNotFoundError / images.CorruptImageError like `images.load_image`. Never writes.
    """
    file = Path(path)
    width, height = images.upright_size(file)
    rectangles = [crop_rectangle(box, width, height, padding, square) for box in boxes]
    sides = [min(r[2] - r[0], r[3] - r[1]) for r in rectangles]
    usable = [side >= max(1, min_size) for side in sides]
    if not any(usable):
        return [f"{TOO_SMALL}: crop {side:.0f} px < data.crops.min_size {min_size}" for side in sides]
    # The smallest crop decides the decode scale: its shorter side must keep `short_side` pixels.
    scale = min(1.0, max(short_side / side for side, ok in zip(sides, usable) if ok))
    decoded = images.decode_image(file, max(1, math.ceil(min(width, height) * scale)))
    fx, fy = decoded.width / width, decoded.height / height
    out = []
    for rect, side, ok in zip(rectangles, sides, usable):
        if not ok:
            out.append(f"{TOO_SMALL}: crop {side:.0f} px < data.crops.min_size {min_size}")
            continue
        left, top = int(round(rect[0] * fx)), int(round(rect[1] * fy))
        right = min(decoded.width, max(left + 1, int(round(rect[2] * fx))))
        bottom = min(decoded.height, max(top + 1, int(round(rect[3] * fy))))
        crop = decoded.crop((left, top, right, bottom))
        size = images.target_size(crop.size, short_side)
        if square and abs(crop.width - crop.height) <= 2:  # a square cut off by a pixel of rounding
            size = (short_side, short_side)
        out.append(crop.resize(size, Image.Resampling.BICUBIC) if crop.size != size else crop)
    return out


def prepare_crop_jpegs(tasks: list[tuple], short_side: int, quality: int, padding: float, square: bool,
                       min_size: int) -> list[bytes | str]:
    """Worker job of `prepare` for crops: tasks are (path, x, y, w, h) in shard order; crops of one
    image are adjacent, so each image is decoded once per chunk. Returns JPEG bytes or an error text."""
    out: list[bytes | str] = []
    start = 0
    while start < len(tasks):
        end = start
        while end < len(tasks) and tasks[end][0] == tasks[start][0]:
            end += 1
        group = tasks[start:end]
        try:
            cut = cut_crops(group[0][0], [t[1:5] for t in group], short_side, padding, square, min_size)
            out += [c if isinstance(c, str) else images.encode_image(c, quality) for c in cut]
        except (images.CorruptImageError, FileNotFoundError) as err:
            out += [f"{type(err).__name__}: {err}"] * len(group)
        start = end
    return out


def join_detections(manifest: pd.DataFrame, detections, crop_config) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Applies MD output to a split manifest: returns (manifest with image-level drops, crop table, report).

    Kept images get `not_in_detections` (absent from the MD file), `detector_failure` (MD `failure`
    entry) or `no_detection` (no box passes the selection) and lose their split. The crop table has
    one row per selected box of each still-kept image: the manifest columns plus `CROP_COLUMNS`.
    The report counts MD images absent from the metadata, repeated MD listings and every box's fate.
    """
    if detections.images.empty:  # a valid MD file, but nothing to crop
        raise UserError(f"{detections.source} lists no images (an empty 'images' list, e.g. the detector "
                        f"found no image files): no crop can be made; give the detector output for these images")
    check_category(detections, crop_config.category)
    threshold, threshold_source = detections.threshold(crop_config.threshold)
    images_md = detections.images
    first = ~images_md["file"].duplicated(keep="first")
    row_of = pd.Series(images_md.index[first], index=images_md.loc[first, "file"].to_numpy())
    manifest = manifest.copy()
    kept = manifest["drop_reason"] == ""
    md_row = manifest["path"].map(row_of)
    absent = kept & md_row.isna()
    manifest.loc[absent, "drop_reason"] = "not_in_detections"
    failed_rows = set(images_md.index[images_md["failure"] != ""])
    failed = (manifest["drop_reason"] == "") & md_row.isin(failed_rows)
    manifest.loc[failed, "drop_reason"] = "detector_failure"

    chosen = select_boxes(detections.boxes, crop_config.category, threshold, crop_config.select)
    has_box = set(chosen["image"].unique())
    no_box = (manifest["drop_reason"] == "") & ~md_row.isin(has_box)
    manifest.loc[no_box, "drop_reason"] = "no_detection"
    manifest.loc[manifest["drop_reason"] != "", "split"] = ""

    still = manifest[manifest["drop_reason"] == ""]
    pairs = pd.DataFrame({"row": still.index, "image": md_row[still.index].astype(np.int64).to_numpy()})
    joined = pairs.merge(chosen.rename(columns={"x": "box_x", "y": "box_y", "w": "box_w", "h": "box_h",
                                                "conf": "detection_conf"}),
                         on="image", how="inner", sort=False)
    crops = manifest.loc[joined["row"].to_numpy()].reset_index(drop=True)
    for column in CROP_COLUMNS:
        values = joined[column].to_numpy()
        crops[column] = values.astype(np.int64) if column == "crop" else np.round(values.astype(np.float64), 6)
    crops = crops.sort_values(["path", "crop"], kind="stable").reset_index(drop=True)

    listed = set(manifest["path"])
    unmatched = images_md.loc[first & ~images_md["file"].isin(listed), "file"]
    report = {
        "detections_file": detections.source,
        "format_version": detections.format_version,
        "md_images": int(len(images_md)),
        "md_images_not_in_metadata": int(len(unmatched)),
        "md_images_not_in_metadata_examples": unmatched.head(5).tolist(),
        "md_images_listed_twice": int((~first).sum()),
        "md_failures": int((images_md["failure"] != "").sum()),
        "boxes": box_reason_counts(detections.boxes, chosen.index, crop_config.category, threshold),
        "settings": {k: getattr(crop_config, k) for k in ("category", "select", "padding", "square", "min_size")}
        | {"threshold": threshold},
        "threshold_source": threshold_source,
        "md_classifications": int(detections.classifications["box"].nunique()),
        "notes": list(detections.notes),
    }
    return manifest, crops, report


def mark_crop_failures(manifest: pd.DataFrame, crops: pd.DataFrame,
                       failures: dict[tuple[str, int], str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Marks crops that could not be cut: (path, crop) -> error text from the shard writer.

    Crops get `box_too_small`, `missing_file` or `corrupt_image`; an image left without any crop gets
    the same reason in the manifest (`no_detection` when all its crops were too small).
    """
    crops = crops.copy()
    manifest = manifest.copy()
    if not failures:
        return manifest, crops
    keys = list(zip(crops["path"], crops["crop"]))
    errors = pd.Series([failures.get(k, "") for k in keys], index=crops.index)
    reason = errors.map(_failure_reason)
    hit = (errors != "") & (crops["drop_reason"] == "")
    crops.loc[hit, "drop_reason"] = reason[hit]
    crops.loc[hit, "split"] = ""
    left = crops[crops["drop_reason"] == ""]["path"].unique()
    lost = crops.loc[hit].drop_duplicates("path").set_index("path")["drop_reason"]
    lost = lost[~lost.index.isin(left)].replace({TOO_SMALL: "no_detection"})
    rows = manifest["path"].isin(lost.index) & (manifest["drop_reason"] == "")
    manifest.loc[rows, "drop_reason"] = manifest.loc[rows, "path"].map(lost)
    manifest.loc[rows, "split"] = ""
    return manifest, crops


def _failure_reason(error: str) -> str:
    if not error:
        return ""
    if error.startswith(TOO_SMALL):
        return TOO_SMALL
    return "missing_file" if error.startswith("FileNotFoundError") else "corrupt_image"


def no_detection_per_species(manifest: pd.DataFrame) -> dict[str, int]:
    """Labelled (single-species, non-empty) images dropped for `no_detection`, per species."""
    lost = manifest[manifest["drop_reason"] == "no_detection"]
    counts = lost["species"].value_counts().sort_index()
    return {str(k): int(v) for k, v in counts.items()}


def crop_settings(crop_config) -> tuple:
    """The worker arguments of `prepare_crop_jpegs` after short_side and quality."""
    return (float(crop_config.padding), bool(crop_config.square), int(crop_config.min_size))


def crop_tasks(rows: pd.DataFrame, root: Path) -> list[tuple]:
    """Worker tasks (absolute path, x, y, w, h) for crop-table rows, in their order."""
    return [(str(root / r.path), float(r.box_x), float(r.box_y), float(r.box_w), float(r.box_h))
            for r in rows.itertuples(index=False)]


def image_level_order(frame: pd.DataFrame, seed: int) -> list:
    """Crop-table index labels: images in a seeded permutation (of path order), crops of one image
    adjacent and in crop order, so a worker chunk decodes each image once."""
    ordered = frame.sort_values(["path", "crop"], kind="stable")
    paths = ordered["path"].drop_duplicates().to_list()
    permutation = np.random.default_rng(seed).permutation(len(paths))
    rank = {paths[i]: position for position, i in enumerate(permutation)}
    keyed = ordered.assign(_rank=ordered["path"].map(rank)).sort_values(["_rank", "crop"], kind="stable")
    return keyed.index.to_list()


def is_crop_table(frame: pd.DataFrame) -> bool:
    return "crop" in frame.columns and "box_x" in frame.columns


def describe(report: Optional[dict]) -> str:
    """One summary line about the detections (for `prepare`'s printed summary)."""
    if not report:
        return ""
    boxes = report["boxes"]
    threshold = report.get("settings", {}).get("threshold")
    lines = [f"  detections: {report['md_images']} MD images (format {report['format_version']}), "
             f"{boxes.get('selected', 0)} boxes selected; {report['md_images_not_in_metadata']} MD images not in the "
             f"metadata; boxes " + ", ".join(f"{k} {v}" for k, v in sorted(boxes.items()) if k != "selected")]
    if threshold is not None:
        source = report.get("threshold_source", "data.crops.threshold")
        lines.append(f"  detection threshold {threshold:g} (from {source})")
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)
