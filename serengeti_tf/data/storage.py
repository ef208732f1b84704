"""Where `prepare` reads and writes: local paths, or object-store URLs (`gs://`, `s3://`, `memory://`, ...).

The one place that knows the difference. A URL is anything with a scheme (`scheme://...`) and goes
through fsspec (`gs://` needs `gcsfs`, `s3://` needs `s3fs`; `memory://` is built in and is what the
tests use); everything else is a local path and goes through the standard library as before.

`image_location(root, relative)` is the single join of an image root and a metadata path: a root
containment check (a metadata path escaping the root) belongs there, for local roots and URLs alike.

Object stores have no rename, so nothing is "written to a temporary name and renamed" there. Instead
each file is produced completely on local disk first and then uploaded as one object (`publish`):
an object store makes an object visible only when its upload completes, so a reader never sees a
half-written shard; an interrupted upload leaves either the old object or none. What marks a finished
shard (its done record) and a finished dataset (`summary.json`) is uploaded after what it vouches for.

This module imports no TensorFlow (image worker processes use it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import fsspec

from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import CorruptFileError, atomic_path
from serengeti_tf.io_utils import file_digest as local_digest
from serengeti_tf.io_utils import write_bytes as write_local

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Which pip package gives fsspec a protocol, for the "cannot open" message.
_PROTOCOL_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs", "az": "adlfs", "abfs": "adlfs"}


def is_url(path: str | os.PathLike) -> bool:
    """True for `scheme://...` (an fsspec URL), False for a local path."""
    return bool(_URL.match(str(path)))


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL; a UserError naming the package a protocol needs."""
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        protocol = str(url).split("://", 1)[0]
        package = _PROTOCOL_PACKAGES.get(protocol)
        hint = f" (pip install {package})" if package else ""
        raise UserError(f"cannot open {url}: no filesystem for {protocol}://{hint}: {str(err).splitlines()[0]}") \
            from None


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base/part/...` as a string; URLs are joined with "/" (never through pathlib, which eats `//`)."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def image_location(image_root: str | os.PathLike, relative: str) -> str:
    """Where the image with manifest path `relative` is read from: the one root + path join."""
    return join(image_root, relative)


def is_file(path: str | os.PathLike) -> bool:
    if not is_url(path):
        return Path(path).is_file()
    fs, inner = filesystem(str(path))
    return fs.isfile(inner)


def is_dir(path: str | os.PathLike) -> bool:
    """A local folder, or a URL prefix holding at least one object (object stores have no empty folders)."""
    if not is_url(path):
        return Path(path).is_dir()
    fs, inner = filesystem(str(path))
    try:
        return fs.isdir(inner) and bool(fs.ls(inner, detail=False))
    except FileNotFoundError:
        return False


def size(path: str | os.PathLike) -> int | None:
    """Size in bytes, or None when `path` is not a file."""
    if not is_url(path):
        try:
            return Path(path).stat().st_size if Path(path).is_file() else None
        except OSError:
            return None
    fs, inner = filesystem(str(path))
    try:
        return int(fs.size(inner)) if fs.isfile(inner) else None
    except FileNotFoundError:
        return None


def file_names(folder: str | os.PathLike) -> list[str]:
    """Names of the files directly in `folder` (no sub-folders); FileNotFoundError when it is missing."""
    if not is_url(folder):
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.is_file()]
    fs, inner = filesystem(str(folder))
    if not fs.isdir(inner):
        raise FileNotFoundError(str(folder))
    return [entry["name"].rstrip("/").rsplit("/", 1)[-1]
            for entry in fs.ls(inner, detail=True) if entry.get("type") == "file"]


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file; FileNotFoundError when it does not exist."""
    if not is_url(path):
        return Path(path).read_bytes()
    fs, inner = filesystem(str(path))
    return fs.cat_file(inner)


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not valid JSON (corrupt or truncated: {err})") from None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes a whole file: atomically (temp + rename) locally, as one object upload on a store."""
    if not is_url(path):
        write_local(path, data)
        return
    fs, inner = filesystem(str(path))
    fs.pipe_file(inner, data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode("utf-8"))


def remove(path: str | os.PathLike) -> None:
    """Deletes a file if it exists."""
    if not is_url(path):
        Path(path).unlink(missing_ok=True)
        return
    fs, inner = filesystem(str(path))
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(inner)


@contextlib.contextmanager
def staged_file(dest: str | os.PathLike) -> Iterator[Path]:
    """Yields a local temporary path; when the block succeeds its file becomes `dest` (`publish`)."""
    if not is_url(dest):
        with atomic_path(dest) as tmp:
            yield tmp
        return
    fd, tmp = tempfile.mkstemp(prefix=".serengeti-tf-upload.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        fs, inner = filesystem(str(dest))
        fs.put_file(tmp, inner)  # one object: visible only once complete
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local path holding `path`'s bytes: `path` itself when local, a temporary download of a URL.

    Lets the metadata readers (pandas, ijson) read object-store metadata unchanged.
    """
    if not is_url(path):
        yield str(path)
        return
    folder = tempfile.mkdtemp(prefix="serengeti-tf-metadata.")
    try:
        local = Path(folder) / str(path).rstrip("/").rsplit("/", 1)[-1]
        fs, inner = filesystem(str(path))
        fs.get_file(inner, str(local))
        yield str(local)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, streamed (local or URL)."""
    if not is_url(path):
        return local_digest(path)
    digest = hashlib.sha256()
    fs, inner = filesystem(str(path))
    with fs.open(inner, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolved(path: str | os.PathLike) -> str:
    """Absolute form for fingerprints: resolved local paths, URLs as given (without a trailing /)."""
    return str(path).rstrip("/") if is_url(path) else str(Path(path).resolve())


def staging_dir(url: str) -> Path:
    """The local folder holding a remote output's small files and lock while `prepare` runs.

    One per output URL (so a rerun on this machine finds it), under `$SERENGETI_TF_CACHE` or
    `~/.cache/serengeti-tf`. Only a cache: everything in it is uploaded to the URL at the end.
    """
    base = Path(os.environ.get("SERENGETI_TF_CACHE") or Path.home() / ".cache" / "serengeti-tf")
    return base / "remote-outputs" / hashlib.sha256(resolved(url).encode("utf-8")).hexdigest()[:20]


def upload_tree(local: Path, url: str, skip: tuple[str, ...] = (), last: tuple[str, ...] = ()) -> None:
    """Uploads every file under `local` to `url` (same relative paths), `last` files after the others."""
    fs, inner = filesystem(url)
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name not in skip)
    files = [p for p in files if p.name not in last] + [p for name in last for p in files if p.name == name]
    for item in files:
        fs.put_file(str(item), inner.rstrip("/") + "/" + item.relative_to(local).as_posix())
