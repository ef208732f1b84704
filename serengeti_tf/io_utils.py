"""Atomic file writes and output-folder guards shared by every command.

Every output is written to a temporary name in the same folder and renamed into place, so an
interrupted command never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from serengeti_tf.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Writes a pandas DataFrame as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(path: str | os.PathLike, figure) -> None:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def check_output_dir(path: str | os.PathLike, fingerprint: dict, overwrite: bool = False,
                     marker: str = "fingerprint.json") -> bool:
    """True when `path` already holds the work `fingerprint` describes; False when it is missing, empty
    or may be replaced (`overwrite`). Raises UserError for a folder holding other work or unrelated
    files without `overwrite`. Changes nothing on disk."""
    path = Path(path)
    marker_path = path / marker
    if not (path.exists() and any(path.iterdir())):
        return False
    if marker_path.exists():
        existing = read_json(marker_path)
        if existing == json.loads(json.dumps(fingerprint, default=str)):
            return True
        if not overwrite:
            changed = sorted(k for k in set(existing) | set(fingerprint)
                             if existing.get(k) != json.loads(json.dumps(fingerprint.get(k), default=str)))
            raise UserError(f"{path} already holds different output (differs in: {', '.join(changed)}); "
                            f"choose another folder or pass --overwrite")
    elif not overwrite:
        raise UserError(f"{path} is not empty and was not written by serengeti-tf; "
                        f"choose another folder or pass --overwrite")
    return False


def claim_output_dir(path: str | os.PathLike, fingerprint: dict, overwrite: bool = False,
                     marker: str = "fingerprint.json") -> bool:
    """Makes `path` this command's output folder, never silently taking over another one.

    `fingerprint` identifies what the folder holds (inputs and settings that change its content).
    Returns True when the folder already holds the same work (the caller resumes or skips),
    False when it is new. A folder holding different work, or unrelated files, is refused
    unless `overwrite` is set.
    """
    path = Path(path)
    if check_output_dir(path, fingerprint, overwrite, marker):
        return True
    if path.exists() and any(path.iterdir()):
        import shutil

        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / marker, fingerprint)
    return False


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary folder beside `path`; only if the block succeeds does it replace `path`
    (whose old content is removed first), so `path` never holds a half-written output."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.partial"):  # left by a killed earlier attempt
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 folders
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
