"""Metadata paths stay inside their root: the one containment check every reader's paths go through.

Metadata is untrusted input: a shared CSV, COCO or MegaDetector file may list `/etc/passwd`,
`../../home/me/photo.jpg`, or (in a folder-per-class tree) a symlink pointing anywhere. Reading
such a file would copy data from outside the dataset into its shards. So a path counts as inside
only when it is relative, does not climb out with `..`, and neither its folder nor the file
itself is a symlink resolving outside the root. Everything else is `outside_root`: dropped with
that reason (`read_source`) or refused (`predict`'s lists), unless the user passes
`--allow-outside-root` (`data.allow_outside_root`).

`outside_root` is vectorised for manifests of millions of rows (string tests on the column, then
one `scandir` per distinct folder for symlinks); `is_inside` is the per-path check.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pandas as pd

from serengeti_tf.data import storage

OUTSIDE_ROOT = "outside_root"

# Absolute (posix or a Windows drive / UNC path) or climbing out of the root with `..`.
_ABSOLUTE = r"^(?:/|[A-Za-z]:|\\\\|//)"
_DOTDOT = r"(?:^|/)\.\.(?:/|$)"


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when `path` (relative to `root`, or absolute) resolves, symlinks followed, to a
    location inside `root`."""
    root = Path(root).resolve()
    target = Path(root, path)  # an absolute `path` replaces `root`
    try:
        return target.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop: not a file we will read
        return False


def lexically_outside(paths: pd.Series) -> pd.Series:
    """True for paths that leave the root by their text alone: absolute, drive letters, `..` climbing out."""
    text = paths.astype(str)
    outside = text.str.contains(_ABSOLUTE, regex=True)
    climbing = ~outside & text.str.contains(_DOTDOT, regex=True)
    if climbing.any():
        normal = text[climbing].map(posixpath.normpath)
        outside[climbing] = (normal == "..") | normal.str.startswith("../")
    return outside


def _symlinked_outside(paths: pd.Series, root: Path) -> pd.Series:
    """True for relative paths whose folder resolves outside `root`, or which are themselves a
    symlink resolving outside it: one resolve per distinct folder, one scandir per folder."""
    parents = paths.map(lambda p: p.rsplit("/", 1)[0] if "/" in p else "")
    bad: set[str] = set()
    for parent in parents.unique():
        folder = root / parent
        if not is_inside(folder, root):
            bad.update(paths[parents == parent])
            continue
        try:
            with os.scandir(folder) as entries:
                links = [e.name for e in entries if e.is_symlink()]
        except OSError:  # missing folder: its files are dropped as missing_file later
            continue
        for name in links:
            relative = f"{parent}/{name}" if parent else name
            if not is_inside(relative, root):
                bad.add(relative)
    return paths.isin(bad)


def outside_root(paths: pd.Series, image_root: str | os.PathLike) -> pd.Series:
    """True for each manifest path (posix, as `relative_posix` leaves it) that is not inside
    `image_root`: absolute or `..` paths out of it, or reached through a symlink leaving it."""
    outside = lexically_outside(paths)
    rest = ~outside & (paths.astype(str) != "")
    if rest.any() and not storage.is_url(image_root):  # object stores have no symlinks: the text test is all
        outside[rest] = _symlinked_outside(paths[rest].astype(str), Path(image_root).resolve())
    return outside


def mark_outside_root(frame: pd.DataFrame, image_root: str | os.PathLike, allow: bool = False) -> pd.DataFrame:
    """Sets drop_reason `outside_root` on rows whose path leaves `image_root` (unless `allow`); the
    reason replaces any other, so such a row is never opened. Changes `frame` in place, returns it."""
    if not allow and len(frame):
        frame.loc[outside_root(frame["path"], image_root).to_numpy(), "drop_reason"] = OUTSIDE_ROOT
    return frame
