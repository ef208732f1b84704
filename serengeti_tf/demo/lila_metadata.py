"""The LILA metadata of a capture plan: the CSV pair and the COCO Camera Traps JSON, describing the same captures.

    SnapshotSerengeti_v2_1_images.csv        unnamed index, capture_id, image_rank_in_capture,
                                             image_path_rel
    SnapshotSerengeti_v2_1_annotations.csv   unnamed index, capture_id, season, site, roll, capture,
                                             capture_date_local, capture_time_local, subject_id,
                                             question__species (camelCase), question__count_max, ...
    SnapshotSerengeti_S9_demo.json           COCO Camera Traps: images, sequence-level annotations
                                             copied to each frame, categories (lowercase, empty=0,
                                             human=1)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from serengeti_tf.demo.capture_plan import SEASON, capture_id, frame_rows
from serengeti_tf.io_utils import atomic_path
from serengeti_tf.species import PAPER_SPECIES

IMAGES_CSV = "SnapshotSerengeti_v2_1_images.csv"
ANNOTATIONS_CSV = "SnapshotSerengeti_v2_1_annotations.csv"
COCO_JSON = "SnapshotSerengeti_S9_demo.json"

# LILA's COCO file spells two classes differently from its CSV (see ../shared/data/README.md).
_COCO_RENAMES = {"blank": "empty", "vervetMonkey": "monkeyvervet"}


def coco_name(species: str) -> str:
    """LILA's COCO category name for a CSV species name (`vervetMonkey` -> `monkeyvervet`)."""
    return _COCO_RENAMES.get(species, species.lower())


def images_table(plan: pd.DataFrame) -> pd.DataFrame:
    """`SnapshotSerengeti_v2_1_images.csv` (written with its unnamed index column)."""
    frames = frame_rows(plan)
    return pd.DataFrame({"capture_id": [f["capture_id"] for f in frames],
                         "image_rank_in_capture": [f["rank"] for f in frames],
                         "image_path_rel": [f["path"] for f in frames]})


def _behaviour(species: str, rng: np.random.Generator) -> dict:
    """Volunteer-vote fractions like LILA's (empty for blank captures, as in the real CSV)."""
    if species == "blank":
        return dict(standing=np.nan, resting=np.nan, moving=np.nan, interacting=np.nan, young_present=np.nan)
    votes = rng.dirichlet([2.0, 1.0, 1.5])
    return dict(standing=round(float(votes[0]), 2), resting=round(float(votes[1]), 2),
                moving=round(float(votes[2]), 2), interacting=round(float(rng.random() < 0.1), 2),
                young_present=round(float(rng.random() < 0.15), 2))


def annotation_rows(plan: pd.DataFrame, seed: int) -> list[dict]:
    """One row per species per capture (two for the two-species capture), with vote fractions."""
    rng = np.random.default_rng([seed, 3])
    rows = []
    for cap in plan.itertuples(index=False):
        per_species = max(1, cap.count // len(cap.species)) if cap.count else 0
        for species in cap.species:
            rows.append(dict(capture_id=capture_id(cap.site, cap.roll, cap.capture), site=cap.site,
                             roll=cap.roll, capture=cap.capture, start=cap.start, subject_id=int(cap.subject_id),
                             species=species, count=per_species if species != "blank" else None,
                             **_behaviour(species, rng)))
    return rows


def annotations_table(plan: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`SnapshotSerengeti_v2_1_annotations.csv`, same columns as LILA's (sample) file."""
    rows = annotation_rows(plan, seed)
    counts = pd.array([r["count"] for r in rows], dtype="Int64")
    return pd.DataFrame({
        "capture_id": [r["capture_id"] for r in rows],
        "season": SEASON,
        "site": [r["site"] for r in rows],
        "roll": [f"R{r['roll']}" for r in rows],
        "capture": [r["capture"] for r in rows],
        "capture_date_local": [r["start"].strftime("%Y-%m-%d") for r in rows],
        "capture_time_local": [r["start"].strftime("%H:%M:%S") for r in rows],
        "subject_id": [r["subject_id"] for r in rows],
        "question__species": [r["species"] for r in rows],
        "question__count_max": counts,
        "question__count_median": [float(c) if c is not None else np.nan for c in (r["count"] for r in rows)],
        "question__standing": [r["standing"] for r in rows],
        "question__resting": [r["resting"] for r in rows],
        "question__moving": [r["moving"] for r in rows],
        "question__young_present": [r["young_present"] for r in rows],
    })


def category_table() -> list[tuple[int, str, str]]:
    """(id, coco name, csv name): empty=0, human=1, then species by lowercase name, as LILA does.

    `bat` is listed (with count 0) like in LILA's category list although no demo capture shows one.
    """
    species = sorted(list(PAPER_SPECIES) + ["bat"], key=str.lower)
    names = ["blank", "human"] + species
    return [(i, coco_name(n), n) for i, n in enumerate(names)]


def _uuid(rng: np.random.Generator) -> str:
    h = rng.bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def coco_dataset(plan: pd.DataFrame, seed: int, image_size: tuple[int, int], info: dict) -> dict:
    """The COCO Camera Traps dict; sequence-level annotations are copied to every frame."""
    width, height = image_size
    cat_id = {csv: i for i, _, csv in category_table()}
    annotations_by_capture: dict[str, list[dict]] = {}
    for row in annotation_rows(plan, seed):
        annotations_by_capture.setdefault(row["capture_id"], []).append(row)
    rng = np.random.default_rng([seed, 4])
    images, annotations = [], []
    for frame in frame_rows(plan):
        image_id = frame["path"][: -len(".JPG")]
        stamp = frame["datetime"].strftime("%Y-%m-%d %H:%M:%S")
        images.append({"id": image_id, "file_name": frame["path"], "frame_num": frame["rank"],
                       "seq_id": frame["capture_id"], "width": width, "height": height, "corrupt": False,
                       "location": frame["site"], "seq_num_frames": frame["frames"], "datetime": stamp})
        for row in annotations_by_capture[frame["capture_id"]]:
            annotations.append({
                "sequence_level_annotation": True, "id": _uuid(rng), "category_id": cat_id[row["species"]],
                "seq_id": row["capture_id"], "season": SEASON, "site": row["site"],
                "datetime": row["start"].strftime("%Y-%m-%d %H:%M:%S"), "subject_id": row["subject_id"],
                # LILA writes a bare NaN where there is no count (strict JSON parsers reject it).
                "count": row["count"] if row["count"] is not None else float("nan"),
                "standing": row["standing"], "resting": row["resting"], "moving": row["moving"],
                "interacting": row["interacting"], "young_present": row["young_present"],
                "image_id": image_id})
    used = {}
    for ann in annotations:
        used[ann["category_id"]] = used.get(ann["category_id"], 0) + 1
    categories = [{"id": i, "name": name, "count": used.get(i, 0)} for i, name, _ in category_table()]
    return {"info": info, "images": images, "categories": categories, "annotations": annotations}


def write_indexed_csv(path: Path, frame: pd.DataFrame) -> None:
    """LILA's CSVs start with pandas' unnamed index column (header `,capture_id,...`)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=True, lineterminator="\n")
