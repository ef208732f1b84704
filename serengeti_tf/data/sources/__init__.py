"""Metadata readers: each turns one input format into the manifest table (one row per image).

`read_source(data)` picks the reader for `data.source_format` (or detects it), checks the inputs,
and applies the reader-level decisions every format shares: species joined per image or capture
(`zebra+wildebeest`, marked `multi_species`), `unlabelled` rows, and season selection.
The manifest columns are `MANIFEST_COLUMNS`, described in docs/design.md.

Formats: `lila_csv` (the LILA Snapshot Serengeti CSV pair), `coco` (COCO Camera Traps JSON, streamed),
`folders` (`root/<Species>/` or camtrapR `root/<Station>/<Species>/`), `csv` (path + label columns),
`camtrap_dp` (a Camtrap DP 1.0 package's datapackage.json).
Each is a reader `(metadata paths, image root) -> rows` registered in `choices.SOURCE_FORMATS` at the
end of this module; a new format is its reader module plus one registration there.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from serengeti_tf import events
from serengeti_tf.choices import SOURCE_FORMATS
from serengeti_tf.data import storage
from serengeti_tf.data.sources.root import mark_outside_root
from serengeti_tf.errors import UserError
from serengeti_tf.registry import lazy_function
from serengeti_tf.species import canonical_species

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "species", "capture_id", "site", "datetime", "season",
                                     "frame", "source", "drop_reason", "split")

# Largest frame number (rank in capture) taken as given; others are unknown (0).
MAX_FRAME = 1_000_000
# Columns that identify each half of the LILA CSV pair.
LILA_IMAGES_COLUMNS = {"capture_id", "image_path_rel"}
LILA_ANNOTATIONS_COLUMNS = {"capture_id", "question__species"}

_SEASON_IN_TEXT = re.compile(r"(?:^|[^A-Za-z0-9])S(\d+)$", re.IGNORECASE)
_SEASON_IN_PATH = r"(?i)(?:^|/)S(\d+)(?:/|_)"


def _not_utf8(path, err: UnicodeDecodeError) -> UserError:
    return UserError(f"metadata file {path} is not UTF-8 text (it holds the byte {err.object[err.start]:#04x}; "
                     f"Latin-1 or a binary file?): convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT")


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV file (reads only its first line)."""
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"metadata file {path} is not a readable CSV: {str(err).splitlines()[0]}") from None


def check_not_truncated(path: str | Path, columns: int) -> None:
    """Refuses a CSV cut off mid-row (a partial download or copy): no final newline and a last line
    with fewer than `columns` fields. pandas reads such a row with empty fields, silently."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - (1 << 16)))
        tail = f.read()
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    fields = next(csv.reader(io.StringIO(last)), [])
    if len(fields) < columns:
        raise UserError(f"metadata file {path} looks truncated: its last line has {len(fields)} of {columns} "
                        f"fields and no final newline (an interrupted download or copy?); fetch it again")


def read_metadata_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """`pd.read_csv` for a metadata CSV: a non-UTF-8 (e.g. Latin-1) file, a malformed one and one cut
    off mid-row are one-line UserErrors. Readers of CSV formats read through this."""
    check_not_truncated(path, len(csv_header(path)))
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"metadata file {path} is not a readable CSV: {str(err).splitlines()[0]}") from None


def _check_inputs(metadata: Sequence[str], image_root: str) -> None:
    if not image_root:
        raise UserError("data.image_root is not set: give the folder the image paths are relative to")
    if not storage.is_dir(image_root):  # a local folder or an object-store URL
        raise UserError(f"image root not found (data.image_root): {image_root}")
    for path in metadata:
        if not storage.is_file(path):
            raise UserError(f"metadata file not found (data.metadata): {path}")


def detect_format(metadata: Sequence[str], image_root: str) -> str:
    """Infers the source format from the metadata files: a name of `choices.SOURCE_FORMATS`.

    No metadata -> `folders`; one `datapackage.json` -> `camtrap_dp`; one other `.json` -> `coco`;
    two CSVs -> `lila_csv`; one CSV -> `csv`.
    """
    metadata = [str(m) for m in metadata]
    _check_inputs(metadata, image_root)
    if not metadata:
        return "folders"
    if len(metadata) == 1 and Path(metadata[0]).name.lower() == "datapackage.json":
        return "camtrap_dp"
    suffixes = [Path(m).suffix.lower() for m in metadata]
    if len(metadata) == 1 and suffixes[0] == ".json":
        return "coco"
    if all(s == ".csv" for s in suffixes) and len(metadata) == 2:
        return "lila_csv"
    if len(metadata) == 1 and suffixes[0] == ".csv":
        columns = set(csv_header(metadata[0]))
        if columns >= LILA_IMAGES_COLUMNS or columns >= LILA_ANNOTATIONS_COLUMNS:
            raise UserError(f"{metadata[0]} is one half of the LILA CSV pair; give both "
                            "SnapshotSerengeti_*_images.csv and SnapshotSerengeti_*_annotations.csv")
        return "csv"
    raise UserError(f"cannot infer the metadata format from {metadata}: expected one COCO .json, "
                    "the two LILA .csv files, one plain .csv, or none (class folders)")


def read_source(data, on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Reads `data.metadata` / `data.image_root` (a `config.DataConfig`) into the manifest table.

    Marks rows whose path leaves the image root (`outside_root`, unless `data.allow_outside_root`),
    `unlabelled` rows, `multi_species` rows (when `data.drop_multi_species`), repeated
    listings of one image (`duplicate`) and rows outside `data.seasons` (`season_excluded`);
    every input row keeps its row in the manifest.
    """
    metadata = [str(m) for m in data.metadata]
    _check_inputs(metadata, data.image_root)
    name = detect_format(metadata, data.image_root) if data.source_format == "auto" else data.source_format
    reader = SOURCE_FORMATS.lookup(name)
    if name == "folders" and metadata:
        raise UserError(f"source_format 'folders' reads class folders under data.image_root and takes no "
                        f"metadata files, got {metadata}")
    if name != "folders" and not metadata:
        raise UserError(f"source_format '{name}' needs data.metadata (metadata file paths), got none")
    frame = reader(metadata, data.image_root, on_event=on_event)  # a reader may report its progress
    frame = finish_manifest(frame, name)
    # Every reader's paths pass the one containment check (root.py) before anything opens them.
    frame = mark_outside_root(frame, data.image_root, allow=getattr(data, "allow_outside_root", False))
    frame = merge_duplicate_paths(frame)
    frame = mark_reader_drops(frame, drop_multi_species=data.drop_multi_species)
    return select_seasons(frame, data.seasons)


# ---- helpers shared by the readers --------------------------------------------------------------

def normalise_season(value) -> str:
    """`SER_S9`, `S9`, `s09`, 9 -> `S9`; anything else unchanged; missing -> ``."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (int, float)):
        return f"S{int(value)}"
    text = str(value).strip()
    match = _SEASON_IN_TEXT.search(text)
    return f"S{int(match.group(1))}" if match else text


def season_from_path(paths: pd.Series) -> pd.Series:
    """The season folder of LILA Snapshot Serengeti paths (`S9/B03/...` -> `S9`), else ``."""
    digits = paths.astype(str).str.extract(_SEASON_IN_PATH, expand=False)
    return ("S" + digits.fillna("-1").astype(int).astype(str)).where(digits.notna(), "")


def fill_season(seasons: pd.Series, paths: pd.Series) -> pd.Series:
    """Normalised seasons, taken from the paths where the metadata has none."""
    seasons = map_unique(seasons.astype(str), normalise_season)
    missing = seasons == ""
    if missing.any():
        seasons = seasons.where(~missing, season_from_path(paths[missing]))
    return seasons


def species_by_key(keys: pd.Series, species: pd.Series) -> pd.Series:
    """Maps each key to the `+`-joined set of its species (one annotation row per species)."""
    pairs = pd.DataFrame({"key": keys.to_numpy(), "species": species.fillna("").astype(str).to_numpy()})
    pairs = pairs[pairs["species"] != ""].drop_duplicates().sort_values(["key", "species"])
    # Most keys have one species: only the few with several go through the (slow) Python join.
    several = pairs["key"].duplicated(keep=False)
    single = pairs.loc[~several].set_index("key")["species"]
    joined = pairs.loc[several].groupby("key", sort=False)["species"].agg("+".join)
    return pd.concat([single, joined]) if len(joined) else single


def map_unique(values: pd.Series, function) -> pd.Series:
    """`values.map(function)`, calling `function` once per distinct value (columns with few values)."""
    table = {v: function(v) for v in values.unique()}
    return values.map(table)


def lookup(keys: pd.Series, table) -> pd.Series:
    """`keys.map(table)` as strings, `` where a key is absent (whatever the table's dtype)."""
    values = keys.map(table)
    return values.astype(object).where(values.notna(), "").astype(str)


def canonical_series(names: pd.Series) -> pd.Series:
    """Canonical species for a column of raw labels (each distinct label converted once)."""
    names = names.fillna("").astype(str)
    table = {raw: (canonical_species(raw) if raw.strip() else "") for raw in names.unique()}
    return names.map(table)


def finish_manifest(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Puts a reader's output into the manifest layout: every column, in order, with clean types.

    String columns stay in pandas' string storage (no round trip through Python objects), which
    keeps the peak memory of reading millions of rows low.
    """
    size = len(frame)
    columns = {}
    for column in MANIFEST_COLUMNS:
        if column == "frame":
            values = frame["frame"].reset_index(drop=True) if "frame" in frame else pd.Series(0, index=range(size))
            numbers = pd.to_numeric(values, errors="coerce")
            # NaN, inf and absurd ranks (1e30) are "unknown" (0), never an overflowed int64.
            numbers = numbers.where(numbers.between(0, MAX_FRAME), 0)
            columns[column] = numbers.fillna(0).astype("int64")
        elif column in frame and column not in ("source", "split"):
            values = frame[column].reset_index(drop=True)
            columns[column] = values.fillna("").astype(str) if values.hasnans or values.dtype != "str" else values
        else:
            columns[column] = pd.Series(source if column == "source" else "", index=range(size), dtype="str")
    return pd.DataFrame(columns, copy=False)


def _duplicated_paths(paths: pd.Series) -> pd.Series:
    """True for every row whose path occurs more than once (hashes first: cheap on millions of rows)."""
    hashes = pd.Series(np.fromiter((hash(p) for p in paths), dtype=np.int64, count=len(paths)), index=paths.index)
    candidates = hashes.duplicated(keep=False)
    if not candidates.any():
        return candidates
    return paths[candidates].duplicated(keep=False).reindex(paths.index, fill_value=False)


def merge_duplicate_paths(frame: pd.DataFrame) -> pd.DataFrame:
    """One kept row per image: an image listed several times (e.g. in two captures) gets the union
    of its labels on all its listings, and its later listings are marked `duplicate`.

    Without this the same file could be trained on with two labels, or land in train and test.
    Changes `frame` in place (read_source owns it) and returns it.
    """
    repeated = _duplicated_paths(frame["path"])
    if not repeated.any():
        return frame
    labels = frame.loc[repeated, ["path", "species"]]
    labels = labels.assign(species=labels["species"].str.split("+")).explode("species")
    union = species_by_key(labels["path"], labels["species"])
    frame.loc[repeated, "species"] = lookup(frame.loc[repeated, "path"], union)
    repeated_rows = frame.loc[repeated]
    later = repeated_rows.index[repeated_rows["path"].duplicated(keep="first") & (repeated_rows["drop_reason"] == "")]
    frame.loc[later, "drop_reason"] = "duplicate"
    return frame


def mark_reader_drops(frame: pd.DataFrame, drop_multi_species: bool = True) -> pd.DataFrame:
    """Marks `unlabelled` rows and (optionally) `multi_species` rows; keeps existing reasons.

    Changes `frame` in place (read_source owns it) and returns it.
    """
    free = frame["drop_reason"] == ""
    frame.loc[free & (frame["species"] == ""), "drop_reason"] = "unlabelled"
    if drop_multi_species:
        free = frame["drop_reason"] == ""
        frame.loc[free & frame["species"].str.contains("+", regex=False), "drop_reason"] = "multi_species"
    return frame


def select_seasons(frame: pd.DataFrame, seasons: Sequence[int]) -> pd.DataFrame:
    """Marks rows outside `seasons` as `season_excluded` (the reason wins over reader reasons but
    `outside_root`).

    Changes `frame` in place (read_source owns it) and returns it. Raises UserError when a requested
    season is not in the data at all.
    """
    if not seasons:
        return frame
    wanted = [f"S{int(s)}" for s in seasons]
    present = sorted({s for s in frame["season"].unique() if s}, key=_season_sort_key)
    unknown = [w for w in wanted if w not in present]
    if unknown:
        raise UserError(f"unknown season {', '.join(u[1:] for u in unknown)} (data.seasons): the data holds "
                        f"{'seasons ' + ', '.join(present) if present else 'no season information'}")
    other_season = ~frame["season"].isin(wanted) & (frame["drop_reason"] != "outside_root")
    frame.loc[other_season, "drop_reason"] = "season_excluded"
    return frame


def _season_sort_key(season: str):
    digits = season[1:]
    return (0, int(digits)) if digits.isdigit() else (1, season)


def relative_posix(paths: pd.Series, image_root: str | Path) -> pd.Series:
    """Paths relative to `image_root` in posix form; absolute paths under the root are rebased.

    Vectorised (the real metadata lists millions of paths); only absolute paths take the slow route.
    """
    text = paths.astype(str)
    # Each rewrite only when some path needs it (each one copies the whole column).
    if text.str.contains(r"^\s|\s$", regex=True).any():
        text = text.str.strip()
    if text.str.contains("\\", regex=False).any():
        text = text.str.replace("\\", "/", regex=False)
    if text.str.startswith("./").any():
        text = text.str.replace(r"^(?:\./)+", "", regex=True)
    absolute = text.str.startswith("/")
    if absolute.any():
        root = Path(image_root).resolve()

        def rebase(value: str) -> str:
            try:
                return Path(value).resolve().relative_to(root).as_posix()
            except ValueError:
                return Path(value).as_posix()

        text = text.where(~absolute, text[absolute].map(rebase))
    return text


# ---- the readers, by `data.source_format` name ---------------------------------------------------
# Imported when first called: the reader modules import the helpers above, and listing the names
# (config validation, `prepare --help`) should not import them.
SOURCE_FORMATS.register("lila_csv", lazy_function("serengeti_tf.data.sources.lila_csv:read_lila_csv"),
                        help="the LILA Snapshot Serengeti CSV pair")
SOURCE_FORMATS.register("coco", lazy_function("serengeti_tf.data.sources.coco_camera_traps:read_coco"),
                        help="COCO Camera Traps JSON (streamed)")
SOURCE_FORMATS.register("folders", lazy_function("serengeti_tf.data.sources.folders:read_folders"),
                        help="class folders: root/SPECIES/ or camtrapR root/STATION/SPECIES/")
SOURCE_FORMATS.register("csv", lazy_function("serengeti_tf.data.sources.plain_csv:read_plain_csv"),
                        help="a plain CSV of path and label columns")
SOURCE_FORMATS.register("camtrap_dp", lazy_function("serengeti_tf.data.sources.camtrap_dp:read_camtrap_dp"),
                        help="a Camtrap DP 1.0 package (its datapackage.json)")
