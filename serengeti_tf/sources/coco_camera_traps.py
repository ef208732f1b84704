"""Streaming reader for COCO Camera Traps JSON (LILA's Snapshot Serengeti file and other LILA sets).

The real Snapshot Serengeti S1-11 file is 5.2 GB, so it is never loaded whole: `ijson` streams the
`images`, `annotations` and `categories` arrays in separate passes (so their order in the file does
not matter), and each pass keeps only the few fields the manifest needs, flushed every
`BATCH_ROWS` items into compact pandas columns.

LILA's files contain bare `NaN` (not valid JSON; ijson rejects it), so the byte stream goes through
`NonFiniteAsNull`, which rewrites bare `NaN` / `Infinity` / `-Infinity` values to `null` on the fly.

Labels: one annotation per species per image; an image with several species gets them `+`-joined.
capture_id = image `seq_id` (the image id when absent, e.g. ENA24); site = annotation `site` or image
`location`; season = annotation `season` (`SER_S9` -> `S9`) or the path; frame = `frame_num` (0 unknown).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import ijson
import pandas as pd
from tqdm import tqdm

from serengeti_tf.errors import UserError
from serengeti_tf.sources import lookup, normalise_season, relative_posix, season_from_path, species_by_key

BATCH_ROWS = 200_000
_CHUNK_BYTES = 1 << 20

# A bare non-finite number in value position: after `:` `,` `[` (or at the start of a piece, which
# always begins right after a comma) and before `,` `}` `]`.
_NON_FINITE = re.compile(rb"(?:(?<=[:,\[])|^)(\s*)(?:NaN|-?Infinity)(?=\s*[,}\]])")

_IMAGE_FIELDS = ("id", "file_name", "seq_id", "frame_num", "location", "datetime")
_ANNOTATION_FIELDS = ("image_id", "category_id", "season", "site", "datetime")


class NonFiniteAsNull:
    """A binary file wrapper whose `read` rewrites bare `NaN`/`Infinity` JSON values to `null`.

    Works piecewise: each piece ends right after a comma so that no token is cut in half. Only
    values in value position are touched; a string that itself contained e.g. `": NaN,"` would be
    rewritten too (no LILA metadata has such text).
    """

    def __init__(self, raw, chunk_bytes: int = _CHUNK_BYTES, on_bytes: Callable[[int], None] | None = None):
        self._raw = raw
        self._chunk_bytes = chunk_bytes
        self._on_bytes = on_bytes
        self._carry = b""
        self._out = b""
        self._pos = 0
        self._eof = False

    def _fill(self) -> None:
        chunk = self._raw.read(self._chunk_bytes)
        if self._on_bytes is not None and chunk:
            self._on_bytes(len(chunk))
        buffer = self._carry + chunk
        if not chunk:
            self._eof, piece, self._carry = True, buffer, b""
        else:
            cut = buffer.rfind(b",") + 1
            piece, self._carry = buffer[:cut], buffer[cut:]
        if b"NaN" in piece or b"Infinity" in piece:
            piece = _NON_FINITE.sub(rb"\1null", piece)
        self._out = self._out[self._pos:] + piece
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        while not self._eof and (size < 0 or len(self._out) - self._pos < size):
            self._fill()
        end = len(self._out) if size < 0 else min(len(self._out), self._pos + size)
        data = self._out[self._pos:end]
        self._pos = end
        return data


def _stream_items(path: str, prefix: str, bar: tqdm) -> Iterator[dict]:
    """Yields each object under `prefix` (e.g. `images.item`), NaN-safe, updating `bar` by bytes."""
    with open(path, "rb") as raw:
        stream = NonFiniteAsNull(raw, on_bytes=bar.update)
        try:
            yield from ijson.items(stream, prefix, use_float=True)
        except ijson.JSONError as err:
            raise UserError(f"{path} is not valid JSON near '{prefix}': {str(err).splitlines()[0]}") from None


def _collect(items: Iterator[dict], fields: Sequence[str]) -> pd.DataFrame:
    """Keeps only `fields` of each item as string columns, flushed in batches to stay compact."""
    frames: list[pd.DataFrame] = []
    columns: dict[str, list] = {f: [] for f in fields}

    def flush() -> None:
        if columns[fields[0]]:
            frames.append(pd.DataFrame({f: pd.Series(v, dtype="str") for f, v in columns.items()}))
            for values in columns.values():
                values.clear()

    for item in items:
        if not isinstance(item, dict):
            continue
        for f in fields:
            value = item.get(f)
            columns[f].append("" if value is None else str(value))
        if len(columns[fields[0]]) >= BATCH_ROWS:
            flush()
    flush()
    if not frames:
        return pd.DataFrame({f: pd.Series([], dtype="str") for f in fields})
    return pd.concat(frames, ignore_index=True)


def _read_categories(path: str, bar: tqdm) -> dict[str, str] | None:
    """Category id (as str) -> canonical name; None when the file has no `categories` list."""
    from serengeti_tf.species import canonical_species

    for categories in _stream_items(path, "categories", bar):
        if not isinstance(categories, list):
            break
        return {str(c.get("id")): canonical_species(str(c.get("name", ""))) for c in categories
                if isinstance(c, dict)}
    return None


def _first_per_image(annotations: pd.DataFrame, column: str) -> pd.Series:
    values = annotations.loc[annotations[column] != "", ["image_id", column]]
    return values.drop_duplicates("image_id").set_index("image_id")[column]


def read_coco(metadata: Sequence[str], image_root: str) -> pd.DataFrame:
    """Streams one COCO Camera Traps JSON file into manifest columns (one row per image)."""
    if len(metadata) != 1:
        raise UserError(f"the COCO Camera Traps format takes one .json file, got {list(metadata)}")
    path = str(metadata[0])
    size = os.path.getsize(path)
    with tqdm(total=3 * size, unit="B", unit_scale=True, desc=f"reading {Path(path).name}",
              mininterval=1.0, leave=False) as bar:
        images = _collect(_stream_items(path, "images.item", bar), _IMAGE_FIELDS)
        if images.empty:
            raise UserError(f"{path} is not a COCO Camera Traps file: no 'images' list with entries")
        unnamed = int((images["file_name"] == "").sum())
        if unnamed:
            raise UserError(f"{path} is not a COCO Camera Traps file: {unnamed} of {len(images)} images have "
                            "no 'file_name'")
        annotations = _collect(_stream_items(path, "annotations.item", bar), _ANNOTATION_FIELDS)
        categories = _read_categories(path, bar)
    if categories is None:
        raise UserError(f"{path} is not a COCO Camera Traps file: no 'categories' list "
                        "(MegaDetector batch output is not a labelled dataset)")

    annotations["species"] = lookup(annotations["category_id"], categories)
    species = species_by_key(annotations["image_id"], annotations["species"])
    image_ids = images["id"]
    paths = relative_posix(images["file_name"], image_root)

    def image_or_annotation(image_column: str, annotation_column: str) -> pd.Series:
        from_annotation = lookup(image_ids, _first_per_image(annotations, annotation_column))
        if image_column:
            own = images[image_column]
            return own.where(own != "", from_annotation)
        return from_annotation

    seasons = image_or_annotation("", "season").map(normalise_season)
    seasons = seasons.where(seasons != "", paths.map(season_from_path))
    # Site: the annotation's site (LILA Serengeti) before the image's location.
    site = lookup(image_ids, _first_per_image(annotations, "site"))
    site = site.where(site != "", images["location"])
    return pd.DataFrame({
        "path": paths,
        "species": lookup(image_ids, species),
        "capture_id": images["seq_id"].where(images["seq_id"] != "", image_ids),
        "site": site,
        "datetime": image_or_annotation("datetime", "datetime"),
        "season": seasons,
        "frame": pd.to_numeric(images["frame_num"], errors="coerce").fillna(0).astype("int64"),
    })
