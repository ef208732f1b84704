"""Marks manifest rows that must not be trained on; every row stays, with its drop reason.

Order (the first reason that applies wins; a reason already set, e.g. by a reader, is never
overwritten): `empty`, `human`, `multi_species`, `missing_file`. `corrupt_image` is set later by
image preparation, which is the step that decodes the files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from serengeti_tf import events
from serengeti_tf.data import storage
from serengeti_tf.species import EMPTY, HUMAN

# Every reason in the order reports list them (`kept` first).
DROP_REASONS: tuple[str, ...] = ("outside_root", "season_excluded", "unlabelled", "duplicate", "empty", "human",
                                 "multi_species", "missing_file", "corrupt_image")


def _mark(manifest: pd.DataFrame, condition: pd.Series, reason: str) -> None:
    manifest.loc[(manifest["drop_reason"] == "") & condition, "drop_reason"] = reason


def missing_files(paths: pd.Series, image_root: str | Path, on_event: events.EventSink = events.ignore) -> pd.Series:
    """True for each path that is not a file under `image_root` (a local folder or an object-store URL).

    Lists each folder once (one `scandir` per folder instead of one `stat` per image), which is
    what makes this fast on millions of images. The folders checked are reported to `on_event`.
    """
    parents = paths.map(lambda p: p.rsplit("/", 1)[0] if "/" in p else "")
    present: set[str] = set()
    for parent in events.track(sorted(parents.unique()), on_event, "checking files", unit="folder", transient=True):
        folder = storage.join(image_root, parent) if parent else str(image_root)
        try:
            present.update(f"{parent}/{name}" if parent else name for name in storage.file_names(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return ~paths.isin(present)


def apply_filters(manifest: pd.DataFrame, data, on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Returns a copy of `manifest` with `drop_reason` set for empty, human, multi-species and
    missing images, honouring `data.drop_empty`, `data.drop_human`, `data.drop_multi_species`
    (`data` is a `config.DataConfig`; `data.image_root` is where paths are checked, reported to `on_event`).
    """
    manifest = manifest.copy()
    species = manifest["species"]
    if data.drop_empty:
        _mark(manifest, species == EMPTY, "empty")
    if data.drop_human:
        _mark(manifest, species == HUMAN, "human")
    if data.drop_multi_species:
        _mark(manifest, species.str.contains("+", regex=False), "multi_species")
    candidates = manifest["drop_reason"] == ""
    if candidates.any():
        missing = pd.Series(False, index=manifest.index)
        missing[candidates] = missing_files(manifest.loc[candidates, "path"], data.image_root, on_event)
        _mark(manifest, missing, "missing_file")
    return manifest


def drop_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Rows per outcome: `kept` first, then each drop reason present (known reasons in pipeline order)."""
    counts = Counter(manifest["drop_reason"])
    out = {"kept": int(counts.pop("", 0))}
    for reason in DROP_REASONS:
        if reason in counts:
            out[reason] = int(counts.pop(reason))
    for reason in sorted(counts):
        out[reason] = int(counts[reason])
    return out
