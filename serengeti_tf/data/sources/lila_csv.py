"""Reader for LILA's Snapshot Serengeti CSV pair (`*_images.csv` + `*_annotations.csv`).

The images file lists every frame (capture_id, image_rank_in_capture, image_path_rel); the
annotations file has one row per species per capture (capture_id, season, site, capture date and
time, question__species in camelCase). Labels belong to the capture, so every frame of a capture
gets the capture's `+`-joined species.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from serengeti_tf import events
from serengeti_tf.data.sources import (
    LILA_ANNOTATIONS_COLUMNS,
    LILA_IMAGES_COLUMNS,
    canonical_series,
    csv_header,
    fill_season,
    lookup,
    map_unique,
    normalise_season,
    read_metadata_csv,
    relative_posix,
    species_by_key,
)
from serengeti_tf.errors import UserError

_ANNOTATION_EXTRAS = ("season", "site", "capture_date_local", "capture_time_local")


def identify_pair(metadata: Sequence[str]) -> tuple[str, str]:
    """Returns (images_csv, annotations_csv) from the two paths in any order, by their columns."""
    if len(metadata) != 2:
        raise UserError(f"the LILA CSV format needs exactly two files (images + annotations), got {list(metadata)}")
    images = annotations = None
    for path in metadata:
        columns = set(csv_header(path))
        if columns >= LILA_IMAGES_COLUMNS:
            images = path
        elif columns >= LILA_ANNOTATIONS_COLUMNS:
            annotations = path
        else:
            raise UserError(f"{path} is neither a LILA images CSV (needs {sorted(LILA_IMAGES_COLUMNS)}) nor an "
                            f"annotations CSV (needs {sorted(LILA_ANNOTATIONS_COLUMNS)}); it has {sorted(columns)}")
    if images is None or annotations is None:
        raise UserError(f"the LILA CSV pair needs one images CSV and one annotations CSV, got {list(metadata)}")
    return images, annotations


def _site_season_from_capture(capture_ids: pd.Series) -> tuple[pd.Series, pd.Series]:
    """`SER_S9#B03#1#7` -> site `B03`, season `S9` (used when a capture has no annotation row)."""
    parts = capture_ids.str.split("#", expand=True)
    if parts.shape[1] < 2:
        empty = pd.Series("", index=capture_ids.index)
        return empty, empty
    return parts[1].fillna(""), map_unique(parts[0].fillna(""), normalise_season)


def read_lila_csv(metadata: Sequence[str], image_root: str,
                  on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Reads the CSV pair into manifest columns (one row per image in the images CSV)."""
    images_csv, annotations_csv = identify_pair(metadata)
    images = read_metadata_csv(images_csv, usecols=["capture_id", "image_rank_in_capture", "image_path_rel"],
                         dtype={"capture_id": str, "image_path_rel": str})
    header = set(csv_header(annotations_csv))
    extras = [c for c in _ANNOTATION_EXTRAS if c in header]
    annotations = read_metadata_csv(annotations_csv, usecols=["capture_id", "question__species", *extras], dtype=str)
    annotations["species"] = canonical_series(annotations["question__species"])

    per_capture = annotations.drop_duplicates("capture_id").set_index("capture_id")
    species = species_by_key(annotations["capture_id"], annotations["species"])
    capture_ids = images["capture_id"].fillna("").astype(str)
    parsed_site, parsed_season = _site_season_from_capture(capture_ids)

    def capture_column(name: str, fallback: pd.Series) -> pd.Series:
        if name not in per_capture:
            return fallback
        values = lookup(capture_ids, per_capture[name])
        return values.where(values != "", fallback)

    paths = relative_posix(images["image_path_rel"].fillna("").astype(str), image_root)
    seasons = fill_season(capture_column("season", parsed_season), paths)
    no_value = pd.Series("", index=images.index)
    stamp = (capture_column("capture_date_local", no_value) + " "
             + capture_column("capture_time_local", no_value)).str.strip()
    return pd.DataFrame({
        "path": paths,
        "species": lookup(capture_ids, species),
        "capture_id": capture_ids,
        "site": capture_column("site", parsed_site),
        "datetime": stamp,
        "season": seasons,
        "frame": images["image_rank_in_capture"],
    })
