"""Writes a SYNTHETIC Snapshot Serengeti-style dataset for demos, smoke runs and tests.

Nothing here is real camera-trap data. The output mirrors the LILA Snapshot Serengeti download
exactly, so every reader and filter is exercised as on a real download:

    OUT/
      README.txt                               says the data is synthetic and how it was made
      S9/<site>/<site>_R<roll>/S9_<site>_R<roll>_IMAG<nnnn>.JPG
      SnapshotSerengeti_v2_1_images.csv        the LILA CSV pair (camelCase species) and the COCO
      SnapshotSerengeti_v2_1_annotations.csv   Camera Traps JSON, describing the same captures
      SnapshotSerengeti_S9_demo.json           (lila_metadata.py); `info.synthetic` is true
      md_detections.json                       MegaDetector-format boxes around the drawn animals
      demo_summary.json, config.yaml, fingerprint.json

The parts live beside this module: class_counts.py (images per class), prototypes.py (how each
class is drawn), capture_plan.py (captures, sites, times), render.py (pixels and JPEG),
lila_metadata.py (the CSV pair and COCO JSON) and detector_boxes.py (md_detections.json).

Output is deterministic: the same arguments give byte-identical files on the same software stack
(per-capture random streams seeded from `seed`; JPEG encoding with fixed settings); only
`config.yaml` holds the output folder's absolute path.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from serengeti_tf import __version__, events
from serengeti_tf import config as cfg
from serengeti_tf.data.detections import write_md_file
from serengeti_tf.demo.capture_plan import SITES, image_path, plan_captures
from serengeti_tf.demo.class_counts import (
    DEFAULT_MIN_CAPTURES,
    DEFAULT_SCALE,
    check_min_captures,
    check_scale,
    class_image_counts,
    paper_train_counts,
)
from serengeti_tf.demo.detector_boxes import MD_JSON, MISSED_SHARE, md_images
from serengeti_tf.demo.lila_metadata import (
    ANNOTATIONS_CSV,
    COCO_JSON,
    IMAGES_CSV,
    annotations_table,
    coco_dataset,
    images_table,
    write_indexed_csv,
)
from serengeti_tf.demo.long_tail import LongTail, check_long_tail
from serengeti_tf.demo.render import DEFAULT_IMAGE_SIZE, Canvas, encode_jpeg, render_capture, site_background
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import write_bytes, write_json, write_text
from serengeti_tf.run_folder import OutputJob

GENERATOR_VERSION = 1
SUMMARY_JSON = "demo_summary.json"


def _check_arguments(scale, seed, image_size, min_captures_per_class) -> tuple[int, int]:
    check_scale(scale)
    check_min_captures(min_captures_per_class)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"demo-data: seed must be an int >= 0, got {seed!r}")
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise UserError(f"demo-data: image_size must be (width, height), got {image_size!r}") from None
    if not (32 <= width <= 2048 and 32 <= height <= 2048):
        raise UserError(f"demo-data: image_size must be between 32 and 2048 px per side, got {image_size!r}")
    return width, height


def _readme(summary: dict) -> str:
    size, missed_percent = summary["image_size"], round(MISSED_SHARE * 100)
    blank, human = summary["blank_captures"], summary["human_captures"]
    return f"""SYNTHETIC DATA -- NOT REAL CAMERA-TRAP IMAGES

Written by `serengeti-tf demo-data` (serengeti-tf {__version__}, generator v{GENERATOR_VERSION}).
Every image here was drawn by a program: coloured "animal" shapes on a drawn savanna background.
No real photograph and no real label is included. Use it to try the tool, never to judge a species
classifier or to report results about real animals.

Layout and metadata mirror the LILA Snapshot Serengeti download (season 9):
  S9/<site>/<site>_R<roll>/S9_<site>_R<roll>_IMAG<nnnn>.JPG
  {IMAGES_CSV} + {ANNOTATIONS_CSV}   (LILA CSV pair, camelCase species)
  {COCO_JSON}                       (COCO Camera Traps; info.synthetic = true)
Both metadata forms describe the same captures and labels.
  {MD_JSON}                        (MegaDetector batch-output format: a box around every drawn
                                    animal, about {missed_percent}% given a missed-detection confidence < 0.2;
                                    boxes come from the drawing, not from MegaDetector)

Settings: {_design_words(summary)}, seed {summary['seed']}, {size[0]}x{size[1]} px.
Contents: {summary['num_images']} images in {summary['num_captures']} captures at {len(summary['sites'])} sites;
{summary['num_labelled_images']} images of the {len(summary['classes'])} classes, plus {blank} blank, {human} human
and {summary['multi_species_captures']} two-species capture(s) for prepare's filters.
How the images are drawn (class prototypes, look-alike pairs, day/night): see the docstring of
serengeti_tf/demo/prototypes.py. Per-class image counts: {SUMMARY_JSON}.

Next step:  serengeti-tf prepare PREPARED_DIR --config <this folder>/config.yaml
Crops:      the same with --detections <this folder>/{MD_JSON}
(add --preset demo for small CPU-sized images if demo-data was run without it)
"""


def write_demo_dataset(out_dir: str | Path, scale: float = DEFAULT_SCALE, seed: int = 0,
                       image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                       min_captures_per_class: int = DEFAULT_MIN_CAPTURES, overwrite: bool = False,
                       config: Optional[cfg.Config] = None, progress: bool = True,
                       long_tail: Optional[LongTail] = None, on_event: events.EventSink = events.ignore) -> dict:
    """Writes the synthetic LILA-layout dataset into `out_dir`; returns a summary dict.

    Default: the paper's 52 classes at `scale` of Table 4. `long_tail` (the `demo` command's design,
    long_tail.py): its K species and counts instead, one close-up frame per capture.

    A folder already holding this exact dataset (same arguments) is resumed: finished images are
    kept and the rest written. A folder holding anything else is refused unless `overwrite`.
    `config` (e.g. resolved from the demo preset) is saved as `out_dir/config.yaml` with
    `data.metadata` and `data.image_root` pointing at the written files. With `progress`, the
    images drawn are reported to `on_event`.
    """
    width, height = _check_arguments(scale, seed, image_size, min_captures_per_class)
    out = Path(out_dir)
    fingerprint = {"command": "demo-data", "generator_version": GENERATOR_VERSION, "scale": float(scale),
                   "seed": seed, "image_size": [width, height], "min_captures_per_class": min_captures_per_class}
    if long_tail is not None:
        check_long_tail(long_tail)
        fingerprint["long_tail"] = asdict(long_tail)
    with OutputJob(out, "demo dataset") as job:  # one process per output folder
        resumed = job.claim(fingerprint, overwrite=overwrite)
        started = time.monotonic()
        plan = plan_captures(scale, seed, min_captures_per_class, long_tail)
        canvas = Canvas.of(width, height)
        scenes = {site: site_background(i, seed, canvas) for i, site in enumerate(SITES)}
        written, skipped = _draw_images(out, plan, seed, canvas, scenes,
                                        on_event if progress else events.ignore)
        summary = _summary(plan, scale, seed, (width, height), min_captures_per_class, long_tail)
        # Metadata last: a folder without it is visibly unfinished, and a rerun completes it.
        _write_metadata(out, plan, scale, seed, (width, height), {site: scene[1] for site, scene in scenes.items()})
        write_json(out / SUMMARY_JSON, summary)
        write_text(out / "README.txt", _readme(summary))
        _save_config(config, out)
        # Timing and resume counts are returned but not written, so reruns leave byte-identical files.
        return {**summary, "out_dir": str(out), "resumed": resumed, "images_written": written,
                "images_skipped": skipped,
                "seconds": round(time.monotonic() - started, 2)}


def _draw_images(out: Path, plan: pd.DataFrame, seed: int, canvas: Canvas,
                 scenes: dict[str, tuple[np.ndarray, float]], progress: events.EventSink) -> tuple[int, int]:
    """Draws and writes every image not already on disk; returns (written, skipped)."""
    written = skipped = 0
    bar = events.Tracker(progress, "demo-data images", int(plan["frames"].sum()), "img")
    for index, cap in enumerate(plan.itertuples(index=False)):
        paths = [out / image_path(cap.site, cap.roll, cap.first_image + k) for k in range(cap.frames)]
        if all(p.exists() for p in paths):
            skipped += cap.frames
            bar.advance(cap.frames)
            continue
        # One random stream per capture: a resumed run draws exactly what a fresh run would.
        rng = np.random.default_rng([seed, 1, index])
        scene, horizon = scenes[cap.site]
        frames = render_capture(list(cap.species), int(cap.count), int(cap.frames), cap.start, scene, horizon,
                                canvas, rng, bool(cap.closeup))
        for k, (path, image) in enumerate(zip(paths, frames)):
            if not path.exists():
                write_bytes(path, encode_jpeg(image, cap.start + timedelta(seconds=k)))
                written += 1
            else:
                skipped += 1
        bar.advance(cap.frames)
    bar.finish()
    return written, skipped


def _summary(plan: pd.DataFrame, scale: float, seed: int, image_size: tuple[int, int],
             min_captures_per_class: int, long_tail: Optional[LongTail] = None) -> dict:
    """demo_summary.json: the arguments, what the plan holds and each class's Table 4 and demo counts."""
    counts = (long_tail.image_counts() if long_tail is not None
              else class_image_counts(scale, min_captures_per_class))
    paper = paper_train_counts()
    labelled = plan[plan["species"].map(len) == 1].copy()
    labelled["name"] = labelled["species"].map(lambda s: s[0])
    per_class_captures = labelled.groupby("name").size().to_dict()
    return {
        "synthetic": True,
        "note": "SYNTHETIC demo data drawn by a program; not real camera-trap images",
        "scale": float(scale), "seed": seed, "image_size": list(image_size),
        "min_captures_per_class": min_captures_per_class, "generator_version": GENERATOR_VERSION,
        "num_images": int(plan["frames"].sum()), "num_captures": len(plan),
        "num_labelled_images": int(sum(counts.values())),
        "blank_captures": int((labelled["name"] == "blank").sum()),
        "human_captures": int((labelled["name"] == "human").sum()),
        "multi_species_captures": int((plan["species"].map(len) > 1).sum()),
        "night_captures": int(sum(1 for t in plan["start"] if t.hour >= 19 or t.hour < 6)),
        "sites": sorted(plan["site"].unique().tolist()),
        "rolls": int(plan.groupby("site")["roll"].max().sum()),
        "long_tail": asdict(long_tail) if long_tail is not None else None,
        "classes": [{"species": name, "paper_train": paper[name], "images": n,
                     "captures": int(per_class_captures.get(name, 0))}
                    for name, n in counts.items()],
        "files": {"images_csv": IMAGES_CSV, "annotations_csv": ANNOTATIONS_CSV, "coco_json": COCO_JSON,
                  "md_detections": MD_JSON},
    }


def _write_metadata(out: Path, plan: pd.DataFrame, scale: float, seed: int, image_size: tuple[int, int],
                    horizons: dict[str, float]) -> None:
    """The LILA CSV pair, the COCO Camera Traps JSON (its `info` says synthetic) and the MegaDetector file."""
    info = {"version": f"demo-{GENERATOR_VERSION}", "synthetic": True,
            "description": "SYNTHETIC Snapshot Serengeti S9-style demo data in the LILA COCO Camera Traps "
                           "schema, drawn by serengeti-tf demo-data; not real camera-trap images",
            "generator": f"serengeti-tf {__version__} demo-data", "scale": float(scale), "seed": seed}
    write_indexed_csv(out / IMAGES_CSV, images_table(plan))
    write_indexed_csv(out / ANNOTATIONS_CSV, annotations_table(plan, seed))
    write_text(out / COCO_JSON, json.dumps(coco_dataset(plan, seed, image_size, info), indent=1) + "\n")
    write_md_file(out / MD_JSON, md_images(plan, seed, image_size, horizons),
                  info={"detector": "SYNTHETIC: boxes drawn by serengeti-tf demo-data, not MegaDetector"})


def format_summary(summary: dict) -> str:
    """A few lines for the terminal."""
    classes = summary["classes"]
    head, tail = classes[0], classes[-1]
    state = ("resumed: " if summary.get("resumed") else "") + (
        f"{summary.get('images_written', 0)} images written, {summary.get('images_skipped', 0)} already there")
    return "\n".join([
        f"SYNTHETIC demo data (not real camera-trap images) in {summary.get('out_dir', '')}",
        f"  {summary['num_images']} images in {summary['num_captures']} captures, {len(summary['sites'])} sites, "
        f"{summary['rolls']} rolls, {summary['image_size'][0]}x{summary['image_size'][1]} px, "
        f"{summary['night_captures']} night captures",
        f"  {len(classes)} classes: {head['species']} {head['images']} images ... {tail['species']} "
        f"{tail['images']} ({_design_words(summary)}); plus {summary['blank_captures']} blank, "
        f"{summary['human_captures']} human, {summary['multi_species_captures']} two-species capture(s)",
        f"  metadata: {IMAGES_CSV}, {ANNOTATIONS_CSV}, {COCO_JSON}; prepare with --config config.yaml",
        f"  detector boxes: {MD_JSON} (MegaDetector format; prepare --detections for crops)",
        f"  {state} in {summary.get('seconds', 0)} s",
    ])


def _design_words(summary: dict) -> str:
    """Where the per-class counts came from, in words."""
    tail = summary.get("long_tail")
    if tail:
        return (f"the demo's long tail: {tail['species']} species, {tail['largest']} down to {tail['smallest']} "
                f"images each, one close-up frame per capture")
    return (f"scale {summary['scale']} of the paper's Table 4 training counts, at least "
            f"{summary['min_captures_per_class']} capture(s) per class")


def _save_config(config: Optional[cfg.Config], out: Path) -> None:
    config = cfg.from_dict(cfg.to_dict(config)) if config is not None else cfg.Config()
    config.data.source_format = "lila_csv"
    config.data.metadata = [str((out / IMAGES_CSV).resolve()), str((out / ANNOTATIONS_CSV).resolve())]
    config.data.image_root = str(out.resolve())
    cfg.save_config(config, out)
