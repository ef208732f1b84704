"""Streaming reader for COCO Camera Traps JSON (LILA's Snapshot Serengeti file and other LILA sets).

The real Snapshot Serengeti S1-11 file is 5.2 GB, so it is never loaded whole: `ijson` streams the
`images`, `annotations` and `categories` arrays in separate passes (so their order in the file does
not matter), and each pass keeps only the few fields the manifest needs, flushed every
`BATCH_ROWS` items into compact columns: image ids become 64-bit hashes (the join key), category
ids, seasons, sites and locations become small integer codes, and the label join runs in numpy.
Peak memory: see benchmarks/results/coco_reader_memory.md.

LILA's files contain bare `NaN` (not valid JSON; ijson rejects it), so the byte stream goes through
`NonFiniteAsNull`, which rewrites bare `NaN` / `Infinity` / `-Infinity` values to `null` on the fly.

Labels: one annotation per species per image; an image with several species gets them `+`-joined.
capture_id = image `seq_id` (the image id when absent, e.g. ENA24); site = annotation `site` or image
`location`; season = annotation `season` (`SER_S9` -> `S9`) or the path; frame = `frame_num` (0 unknown).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import ijson
import numpy as np
import pandas as pd

from serengeti_tf import events
from serengeti_tf.data.sources import MAX_FRAME, fill_season, relative_posix
from serengeti_tf.errors import UserError
from serengeti_tf.species import canonical_species

log = logging.getLogger(__name__)

BATCH_ROWS = 20_000
_CHUNK_BYTES = 1 << 20

# A bare non-finite number in value position: after `:` `,` `[` and before `,` `}` `]`. Starting
# the pattern with the delimiter class (not a lookbehind) makes it ~7x faster on large pieces.
_NON_FINITE = re.compile(rb"([:,\[]\s*)(?:NaN|-?Infinity)(?=\s*[,}\]])")


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
            # Every piece but the first starts right after a comma: restore it as the left context.
            piece = _NON_FINITE.sub(rb"\1null", b"," + piece)[1:]
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


def _stream_items(path: str, prefix: str, bar: events.Tracker) -> Iterator[dict]:
    """Yields each object under `prefix` (e.g. `images.item`), NaN-safe, updating `bar` by bytes."""
    with open(path, "rb") as raw:
        stream = NonFiniteAsNull(raw, on_bytes=bar.advance)
        try:
            yield from ijson.items(stream, prefix, use_float=True)
        except ijson.JSONError as err:
            raise UserError(f"{path} is not valid JSON near '{prefix}': {str(err).splitlines()[0]}") from None
        except UnicodeDecodeError as err:
            raise UserError(f"{path} is not UTF-8 JSON (it holds the byte {err.object[err.start]:#04x}); "
                            f"convert it to UTF-8") from None


def _text(value) -> str:
    return "" if value is None else str(value)


def _frame_number(value) -> int:
    """`frame_num` as an int; missing, non-numeric, infinite or absurd (outside 0..MAX_FRAME, which
    would not fit the int32 column) is "unknown" (0), as `to_manifest` treats every reader's frames."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return 0
    return number if 0 <= number <= MAX_FRAME else 0


class _Codes:
    """Small integer codes for a low-cardinality text field (category ids, seasons, sites), so
    millions of rows store 4 bytes each instead of a string."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, value) -> int:
        text = _text(value)
        code = self.index.get(text)
        if code is None:
            code = self.index[text] = len(self.index)
        return code

    def names(self) -> list[str]:
        return list(self.index)  # insertion order is code order

    def decode(self, codes: np.ndarray) -> pd.Series:
        """Strings for `codes`; -1 (absent) -> ``."""
        table = np.array(self.names() + [""], dtype=object)
        return pd.Series(table[np.where(codes >= 0, codes, len(table) - 1)], dtype="str")


def _image_reader(location: _Codes) -> Callable[[dict], tuple]:
    def row(item: dict) -> tuple:
        # The join key is a 64-bit hash of the id, not the id string: 8 bytes per image instead of
        # ~80 (collision odds for the 7M-image Serengeti file: about 1 in a million).
        image_id = _text(item.get("id"))
        return (hash(image_id), _text(item.get("file_name")), _text(item.get("seq_id")) or image_id,
                _frame_number(item.get("frame_num")), location(item.get("location")), _text(item.get("datetime")))
    return row


def _annotation_reader(category: _Codes, season: _Codes, site: _Codes) -> Callable[[dict], tuple]:
    def row(item: dict) -> tuple:
        return (hash(_text(item.get("image_id"))), category(item.get("category_id")), season(item.get("season")),
                site(item.get("site")))
    return row


_IMAGE_COLUMNS = {"key": "int64", "file_name": "str", "capture_id": "str", "frame": "int32",
                  "location": "int32", "datetime": "str"}
_ANNOTATION_COLUMNS = {"key": "int64", "category": "int32", "season": "int32", "site": "int32"}


def _collect(items: Iterator[dict], row: Callable[[dict], tuple], columns: dict[str, str]) -> pd.DataFrame:
    """Keeps only the fields `row` extracts from each item, as typed columns built in batches
    (Python objects for at most `BATCH_ROWS` items are alive at a time)."""
    pieces: dict[str, list[pd.Series]] = {name: [] for name in columns}
    batch: list[tuple] = []

    def flush() -> None:
        if batch:
            for values, (name, dtype) in zip(zip(*batch), columns.items()):
                pieces[name].append(pd.Series(values, dtype=dtype))
            batch.clear()

    for item in items:
        if isinstance(item, dict):
            batch.append(row(item))
            if len(batch) >= BATCH_ROWS:
                flush()
    flush()
    out = {}
    for name, dtype in columns.items():
        # One column at a time, dropping its pieces as it goes: the copy made by concat never
        # exists for the whole table at once.
        parts, pieces[name] = pieces[name], []
        out[name] = pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype=dtype)
        del parts
    return pd.DataFrame(out, copy=False)


def _read_categories(path: str, bar: events.Tracker) -> dict[str, str] | None:
    """Category id (as str) -> canonical name; None when the file has no `categories` list."""
    for categories in _stream_items(path, "categories", bar):
        if not isinstance(categories, list):
            break
        return {str(c.get("id")): canonical_species(str(c.get("name", ""))) for c in categories
                if isinstance(c, dict)}
    return None


def _labels_per_image(annotations: pd.DataFrame, category_names: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per distinct image key (sorted): a species code into the returned names (`+`-joined
    combinations appended), and the first annotation's season and site codes.

    Pure numpy on integer codes (no per-row Python objects, no hash tables over strings), so
    millions of annotations stay cheap. Species codes follow the sorted names, so sorting codes
    sorts names.
    """
    names = sorted({n for n in category_names if n})
    code_of = {n: i for i, n in enumerate(names)}
    category_codes = np.array([code_of.get(n, -1) for n in category_names] + [-1], dtype=np.int32)
    keys = annotations["key"].to_numpy()
    codes = category_codes[annotations["category"].to_numpy()]
    unique_keys, first = np.unique(keys, return_index=True)
    table = {"key": unique_keys, "season": annotations["season"].to_numpy()[first],
             "site": annotations["site"].to_numpy()[first], "code": np.full(len(unique_keys), -1, np.int32)}

    labelled = codes >= 0
    pair_keys, pair_codes = keys[labelled], codes[labelled]
    order = np.lexsort((pair_codes, pair_keys))
    pair_keys, pair_codes = pair_keys[order], pair_codes[order]
    distinct = np.ones(len(pair_keys), dtype=bool)
    distinct[1:] = (pair_keys[1:] != pair_keys[:-1]) | (pair_codes[1:] != pair_codes[:-1])
    pair_keys, pair_codes = pair_keys[distinct], pair_codes[distinct]
    shared = np.zeros(len(pair_keys), dtype=bool)  # the key has more than one species
    same = pair_keys[1:] == pair_keys[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    slots = np.searchsorted(unique_keys, pair_keys)
    table["code"][slots[~shared]] = pair_codes[~shared]
    if shared.any():
        # The few multi-species images: each joined name becomes one more code.
        joined: dict[int, list[str]] = {}
        for slot, code in zip(slots[shared], pair_codes[shared]):
            joined.setdefault(int(slot), []).append(names[code])
        combos = sorted({"+".join(v) for v in joined.values()})
        combo_code = {combo: len(names) + i for i, combo in enumerate(combos)}
        for slot, species in joined.items():
            table["code"][slot] = combo_code["+".join(species)]
        names = names + combos
    return table, names


def _align(table: dict[str, np.ndarray], image_keys: np.ndarray) -> dict[str, np.ndarray]:
    """The label table's columns for each image (-1 where an image has no annotation)."""
    columns = ("code", "season", "site")
    if len(table["key"]) == 0:
        return {name: np.full(len(image_keys), -1, np.int32) for name in columns}
    slots = np.minimum(np.searchsorted(table["key"], image_keys), len(table["key"]) - 1)
    found = table["key"][slots] == image_keys
    return {name: np.where(found, table[name][slots], -1).astype(np.int32) for name in columns}


def _species_column(codes: np.ndarray, names: list[str]) -> pd.Series:
    """Species strings from codes (-1 -> ``) without one Python string per row."""
    table = np.array(names + [""], dtype=object)
    return pd.Series(table[np.where(codes >= 0, codes, len(names))], dtype="str")


def _warn_unknown_categories(path: str, annotations: pd.DataFrame, used_ids: list[str],
                             categories: dict[str, str]) -> int:
    """Warns (with the count) about annotations whose category id is not in `categories`.

    Their images end up `unlabelled`; when that leaves nothing, prepare's "no image left" error follows.
    """
    unknown_codes = [code for code, category_id in enumerate(used_ids) if category_id not in categories]
    count = int(annotations["category"].isin(unknown_codes).sum()) if unknown_codes else 0
    if count:
        unknown_ids = sorted(used_ids[code] or "<none>" for code in unknown_codes)
        log.warning("%s: %d annotations use category ids missing from 'categories' (%s%s); their images are "
                    "dropped as unlabelled", path, count, ", ".join(unknown_ids[:5]),
                    ", ..." if len(unknown_ids) > 5 else "")
    return count


def read_coco(metadata: Sequence[str], image_root: str, on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Streams one COCO Camera Traps JSON file into manifest columns (one row per image), reporting
    the bytes read (the file is read three times) to `on_event`."""
    if len(metadata) != 1:
        raise UserError(f"the COCO Camera Traps format takes one .json file, got {list(metadata)}")
    path = str(metadata[0])
    size = os.path.getsize(path)
    location, category, season, site = _Codes(), _Codes(), _Codes(), _Codes()
    with events.Tracker(on_event, f"reading {Path(path).name}", 3 * size, "B", transient=True) as bar:
        images = _collect(_stream_items(path, "images.item", bar), _image_reader(location), _IMAGE_COLUMNS)
        if images.empty:
            raise UserError(f"{path} is not a COCO Camera Traps file: no 'images' list with entries")
        unnamed = int((images["file_name"] == "").sum())
        if unnamed:
            raise UserError(f"{path} is not a COCO Camera Traps file: {unnamed} of {len(images)} images have "
                            "no 'file_name'")
        annotations = _collect(_stream_items(path, "annotations.item", bar),
                               _annotation_reader(category, season, site), _ANNOTATION_COLUMNS)
        categories = _read_categories(path, bar)
    if categories is None:
        raise UserError(f"{path} is not a COCO Camera Traps file: no 'categories' list "
                        "(MegaDetector batch output is not a labelled dataset)")

    _warn_unknown_categories(path, annotations, category.names(), categories)
    labels, species_names = _labels_per_image(annotations, [categories.get(c, "") for c in category.names()])
    del annotations
    # Label codes aligned to the images (the image columns themselves are not copied).
    aligned = _align(labels, images["key"].to_numpy())
    paths = relative_posix(images["file_name"], image_root)
    annotated_site = site.decode(aligned["site"]).set_axis(images.index)
    return pd.DataFrame({
        "path": paths,
        "species": _species_column(aligned["code"], species_names).set_axis(images.index),
        "capture_id": images["capture_id"],
        # Site: the annotation's site (LILA Serengeti) before the image's location.
        "site": annotated_site.where(annotated_site != "", location.decode(images["location"].to_numpy())),
        "datetime": images["datetime"],
        "season": fill_season(season.decode(aligned["season"]).set_axis(images.index), paths),
        "frame": images["frame"],
    }, copy=False)
