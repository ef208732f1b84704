"""`prepare` into an object-store URL (`gs://bucket/prepared`, `s3://...`, `memory://...`).

Shards and their done records are written straight to the URL (`shards.write_shard`, by the local
pool or by Beam workers), each as one complete object (`storage.staged_file`). The small outputs
(manifest, counts, class map, TFDS metadata, config, fingerprint) are written to a local staging
folder (`storage.staging_dir`) exactly as for a local output, then uploaded, `summary.json` last.

The guarantees, restated for an object store:
- claimed: the URL's `fingerprint.json` (uploaded before any shard) says what it holds; a location
  holding other serengeti-tf output is refused without `--overwrite`, one holding objects
  serengeti-tf did not write is refused always;
- `--overwrite` deletes only what serengeti-tf writes there: the objects its file list names
  (`.serengeti-tf-files`), the `.prepare_state/` records and the `camera_traps-*` shards;
- resume: finished shards are found by their done records at the URL, as locally;
- one writer: the lock is on the local staging folder, so it excludes a second `prepare` on the
  same machine only (object stores have no lock a crashed process would release).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from serengeti_tf import events, io_utils, run_folder
from serengeti_tf.config import Config, DataConfig
from serengeti_tf.data import storage
from serengeti_tf.data.dataset import TFDS_NAME
from serengeti_tf.data.shards import STATE_DIR
from serengeti_tf.errors import UserError, setting
from serengeti_tf.locks import output_lock


@dataclass(frozen=True)
class PrepareSteps:
    """The steps of a local `prepare` that a remote one reuses, handed in by `prepare.py` (which
    imports this module, so this module cannot import it)."""
    fingerprint: Callable[[DataConfig], dict]
    is_finished: Callable[[str, dict], bool]
    prepare_locked: Callable[..., dict]  # (config, local folder, shard location, overwrite, progress sink)


def prepare_remote(config: Config, url: str, overwrite: bool, progress: events.EventSink, steps: PrepareSteps) -> dict:
    """`prepare.prepare_dataset` for an output URL (see the module docstring)."""
    refuse_overlap(url, config.data)
    url = url.rstrip("/")
    fp = steps.fingerprint(config.data)
    staging = storage.staging_dir(url)
    with output_lock(staging):
        if steps.is_finished(url, fp):
            return {**storage.read_json(storage.join(url, run_folder.SUMMARY)), "up_to_date": True}
        resumed = claim(url, fp, overwrite)
        _reset_staging(staging, fp)
        summary = steps.prepare_locked(config, staging, url, overwrite=False, progress=progress)
        if resumed and not summary["resumed"]:  # the URL held this dataset's shards; staging was new
            summary["resumed"] = True
            io_utils.write_json(staging / run_folder.SUMMARY, summary)
        storage.upload_tree(staging, url, skip=(io_utils.LOCK_FILE,), last=(run_folder.SUMMARY,))
        _clear(staging)  # all of it is at the URL now (a 7.1M-row manifest is ~1 GB of local disk)
    return summary


def refuse_overlap(url: str, data: DataConfig) -> None:
    """Refuses an output URL that is, contains or lies inside the image root or a metadata file."""
    out = url.rstrip("/") + "/"
    for name, values in ((setting("image_root"), [data.image_root]), (setting("metadata"), list(data.metadata))):
        for value in values:
            source = str(value).rstrip("/") + "/"
            if storage.is_url(value) and (out.startswith(source) or source.startswith(out)):
                raise UserError(f"output folder {url} overlaps the input {name} {value}; inputs are only read, "
                                f"so choose an output outside every input")


def claim(url: str, fp: dict, overwrite: bool) -> bool:
    """Makes `url` this dataset's location (refusing other work, see the module docstring); True
    when it already was (an interrupted run's shards are there to resume)."""
    marker = storage.join(url, io_utils.MARKER)
    if storage.is_dir(url):
        if not storage.is_file(marker):
            raise UserError(f"{url} is not empty and was not written by serengeti-tf; choose a new or empty "
                            f"location ({setting('overwrite')} only ever deletes files serengeti-tf wrote)")
        existing = storage.read_json(marker)
        if io_utils.same_json(existing, fp):
            return True
        if not overwrite:
            changed = sorted(k for k in set(existing) | set(fp) if not io_utils.same_json(existing.get(k), fp.get(k)))
            raise UserError(f"{url} already holds different output (differs in: {', '.join(changed)}); "
                            f"choose another location or pass {setting('overwrite')}")
        remove_owned(url)
    storage.write_json(marker, fp)
    return False


def remove_owned(url: str) -> list[str]:
    """Deletes the objects serengeti-tf wrote under `url`; returns what it deleted."""
    fs, inner = storage.filesystem(url)
    log = storage.join(url, io_utils.OWNED_LOG)
    listed = set()
    if storage.is_file(log):
        listed = {line.rstrip("/") for line in storage.read_bytes(log).decode("utf-8").splitlines() if line}
    removed = []
    for path in fs.find(inner):
        relative = path[len(inner.rstrip("/")) + 1:]
        if (relative in listed or relative.startswith(f"{STATE_DIR}/") or relative.startswith(f"{TFDS_NAME}-")
                or relative in (io_utils.MARKER, io_utils.OWNED_LOG)):
            fs.rm_file(path)
            removed.append(relative)
    return removed


def _reset_staging(staging: Path, fp: dict) -> None:
    """Empties the staging cache when it belongs to another dataset (it is only ever a copy)."""
    marker = staging / io_utils.MARKER
    if not (marker.is_file() and io_utils.same_json(io_utils.read_json(marker), fp)):
        _clear(staging)


def _clear(staging: Path) -> None:
    """Deletes everything in the staging folder but its lock."""
    for item in staging.iterdir():
        if item.name == io_utils.LOCK_FILE:
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
