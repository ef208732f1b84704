"""Reader for a plain CSV: a path column and a label column, optional capture and site columns.

Accepted column names (case-insensitive): path | filepath | file | image | file_name | filename;
label | species | class | category; capture | capture_id | seq_id | sequence; site | location |
station; optional datetime and frame | frame_num. ENA24's `labels.csv` (filepath,label) is one.
Several rows for one path (one per species) become one image with `+`-joined species. Without a
capture column each image is its own capture.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from serengeti_tf import events
from serengeti_tf.data.sources import (
    canonical_series,
    csv_header,
    fill_season,
    lookup,
    read_metadata_csv,
    relative_posix,
    species_by_key,
)
from serengeti_tf.errors import UserError

COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "path": ("path", "filepath", "file", "image", "file_name", "filename", "image_path"),
    "label": ("label", "species", "class", "category"),
    "capture_id": ("capture", "capture_id", "seq_id", "sequence", "sequence_id"),
    "site": ("site", "location", "station"),
    "datetime": ("datetime", "date_time", "timestamp"),
    "frame": ("frame", "frame_num", "frame_number"),
    "season": ("season",),
}


def find_columns(header: Sequence[str], source: str) -> dict[str, str]:
    """Maps each manifest role (path, label, ...) to the CSV column that holds it."""
    by_lower = {c.strip().lower(): c for c in header}
    found = {}
    for role, names in COLUMN_NAMES.items():
        for name in names:
            if name in by_lower:
                found[role] = by_lower[name]
                break
    missing = [r for r in ("path", "label") if r not in found]
    if missing:
        raise UserError(f"{source}: unknown CSV schema, no {' or '.join(missing)} column "
                        f"(accepted: {', '.join(COLUMN_NAMES[missing[0]])}); columns are {list(header)}")
    return found


def read_plain_csv(metadata: Sequence[str], image_root: str,
                   on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Reads one path,label CSV into manifest columns (one row per distinct path)."""
    if len(metadata) != 1:
        raise UserError(f"the plain CSV format takes one .csv file, got {list(metadata)}")
    source = str(metadata[0])
    columns = find_columns(csv_header(source), source)
    table = read_metadata_csv(source, usecols=list(columns.values()), dtype=str, keep_default_na=False)
    table = table.rename(columns={v: k for k, v in columns.items()})
    table["path"] = relative_posix(table["path"], image_root)
    table = table[table["path"] != ""]
    table["species"] = canonical_series(table["label"])
    union = species_by_key(table["path"], table["species"])
    table = table.drop_duplicates("path").reset_index(drop=True)
    table["species"] = lookup(table["path"], union)
    if "capture_id" not in table:
        table["capture_id"] = table["path"]
    table["capture_id"] = table["capture_id"].where(table["capture_id"] != "", table["path"])
    season = table["season"] if "season" in table else pd.Series("", index=table.index)
    table["season"] = fill_season(season, table["path"])
    return table.drop(columns=["label"])
