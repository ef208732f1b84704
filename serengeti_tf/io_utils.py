"""Atomic file writes and output-folder guards shared by every command.

Every output is written to a temporary name in the same folder and renamed into place, so an
interrupted command never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from serengeti_tf.errors import UserError, setting

# Marks a folder as a serengeti-tf output and says what it holds (`claim_output_dir`).
MARKER = "fingerprint.json"
# One relative path per line: the files serengeti-tf wrote into a claimed folder (`record_owned`).
OWNED_LOG = ".serengeti-tf-files"
# Lock file of the command writing a folder (`locks.output_lock`); never part of its content.
LOCK_FILE = ".serengeti-tf.lock"


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
        record_owned(path)
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


class CorruptFileError(UserError, ValueError):
    """A file serengeti-tf wrote that no longer parses (truncated by a crash or a full disk)."""


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file; a file that does not parse is a one-line CorruptFileError, not a traceback."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise CorruptFileError(f"{path} is not valid JSON (corrupt or truncated: {err})") from None


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
                     marker: str = MARKER, kind: Optional[str] = None) -> bool:
    """True when `path` already holds the work `fingerprint` describes; False when it is missing or
    empty, or holds other serengeti-tf work that `overwrite` may replace. Raises UserError for other
    work without `overwrite`, for output of another `kind` (see KINDS) whatever `overwrite` says,
    and for a non-empty folder serengeti-tf did not write. Changes nothing on disk."""
    path = Path(path)
    check_output_path(path)
    if not has_content(path):
        return False
    marker_path = path / marker
    if not marker_path.is_file():
        raise UserError(f"{path} is not empty and was not written by serengeti-tf; choose a new or "
                        f"empty folder ({setting('overwrite')} only ever deletes files serengeti-tf wrote)")
    existing = read_json(marker_path)
    if same_json(existing, fingerprint):
        return True
    if kind is not None:
        check_kind(path, kind)
    if not overwrite:
        changed = sorted(k for k in set(existing) | set(fingerprint)
                         if not same_json(existing.get(k), fingerprint.get(k)))
        raise UserError(f"{path} already holds different output (differs in: {', '.join(changed)}); "
                        f"choose another folder or pass {setting('overwrite')}")
    return False


def claim_output_dir(path: str | os.PathLike, fingerprint: dict, overwrite: bool = False,
                     marker: str = MARKER, kind: Optional[str] = None) -> bool:
    """Makes `path` this command's output folder, never silently taking over another one.

    `fingerprint` identifies what the folder holds (inputs and settings that change its content);
    `kind` (one of KINDS) what sort of output it is, recorded in the folder. Returns True when the
    folder already holds the same work (the caller resumes or skips), False when it is new. A folder
    holding different work of the same kind is refused unless `overwrite`, which then deletes only
    the files serengeti-tf wrote there (`remove_owned`). Output of another kind, and a non-empty
    folder serengeti-tf did not write, are refused, `overwrite` or not.
    """
    path = Path(path)
    if check_output_dir(path, fingerprint, overwrite, marker, kind):
        return True
    if has_content(path):
        return reclaim_output_dir(path, fingerprint, marker, kind)
    path.mkdir(parents=True, exist_ok=True)
    _start_claim(path, fingerprint, marker, kind)
    return False


def reclaim_output_dir(path: str | os.PathLike, fingerprint: dict, marker: str = MARKER,
                       kind: Optional[str] = None) -> bool:
    """`--overwrite`: deletes what serengeti-tf wrote in the claimed folder `path` (files the user
    added stay) and claims it afresh for `fingerprint`. Returns False (nothing to resume)."""
    path = Path(path)
    if kind is not None:
        check_kind(path, kind)
    remove_owned(path)
    path.mkdir(parents=True, exist_ok=True)
    _start_claim(path, fingerprint, marker, kind)
    return False


def _start_claim(path: Path, fingerprint: dict, marker: str, kind: Optional[str]) -> None:
    """Writes the owned-files list's kind line and the marker of a freshly claimed folder."""
    if kind is not None:
        with open(path / OWNED_LOG, "a", encoding="utf-8") as log:
            log.write(f"{KIND_PREFIX}{kind}\n")
    write_json(path / marker, fingerprint)


def claim_folder_kind(path: str | os.PathLike, kind: str) -> None:
    """Claims `path` for a command that adds to its folder over several runs (experiment, demo)
    and has no `--overwrite`: an empty or missing folder, or one already of this `kind` (also one
    written before kinds were recorded, recognised by its files), is fine; a non-empty folder of
    another kind or one serengeti-tf did not write is refused."""
    path = Path(path)
    check_output_path(path)
    if has_content(path):
        check_kind(path, kind)
        if (path / MARKER).is_file():
            return
    path.mkdir(parents=True, exist_ok=True)
    _start_claim(path, {"kind": f"serengeti-tf {kind}"}, MARKER, kind)


# ---------------------------------------------------------------------------------------------
# Kinds: what sort of output a folder holds; --overwrite never replaces one kind with another
# ---------------------------------------------------------------------------------------------

# The kinds of output folder, by the command that writes them.
KINDS = {"dataset": "prepare", "run": "train", "evaluation": "evaluate", "report": "compare",
         "export": "export", "demo dataset": "demo-data", "plan": "plan", "experiment": "experiment",
         "demo": "demo", "camtrap dp package": f"predict {setting('camtrap_dp_out')}",
         "detection scores": "score-detections", "predictions": "predict"}
# The kind line in OWNED_LOG (file names serengeti-tf writes never start with "#").
KIND_PREFIX = "#kind "


def _legacy_kind(path: Path) -> Optional[str]:
    """The kind of a folder written before kinds were recorded, from its marker's content (every
    command's fingerprint has its own keys) or, for folders without one, its signature files."""
    marker = path / MARKER
    if marker.is_file():
        try:
            fp = read_json(marker)
        except (UserError, OSError, UnicodeDecodeError):
            return None
        if not isinstance(fp, dict):
            return None
        by_tag = {"serengeti-tf train run": "run", "serengeti-tf compare": "report",
                  "serengeti-tf export": "export", "demo-data": "demo dataset", "plan": "plan"}
        tag = fp.get("kind") or fp.get("command")
        if tag in by_tag:
            return by_tag[tag]
        if isinstance(tag, str) and tag.startswith("serengeti-tf ") and tag[13:] in KINDS:
            return tag[13:]
        if "prepare_format" in fp:
            return "dataset"
        if "model_sha256" in fp and "split" in fp:
            return "evaluation"
        return None
    if (path / "runs.csv").is_file() or ((path / "runs").is_dir() and (path / "config.yaml").is_file()):
        return "experiment"
    if (path / "demo.json").is_file():
        return "demo"
    return None


def folder_kind(path: str | os.PathLike) -> Optional[str]:
    """The kind (a key of KINDS) of the serengeti-tf output folder `path`: the kind line of its
    OWNED_LOG, else inferred as `_legacy_kind` does; None when it cannot be told."""
    path = Path(path)
    log = path / OWNED_LOG
    if log.is_file():
        with open(log, encoding="utf-8", errors="replace") as f:
            kinds = [line[len(KIND_PREFIX):].rstrip("\n") for line in f if line.startswith(KIND_PREFIX)]
        if kinds:
            return kinds[-1]
    return _legacy_kind(path)


def check_kind(path: str | os.PathLike, kind: str) -> None:
    """Refuses the non-empty output folder `path` unless it holds output of `kind`."""
    path = Path(path)
    existing = folder_kind(path)
    if existing == kind:
        return
    if existing is None:
        if not (path / MARKER).is_file():
            raise UserError(f"{path} is not empty and was not written by serengeti-tf; choose a new or empty "
                            f"folder ({setting('overwrite')} only ever deletes files serengeti-tf wrote)")
        raise UserError(f"{path} holds serengeti-tf output of a kind this version cannot tell (written before "
                        f"kinds were recorded); it is not replaced with {_a(kind)}: choose another folder or "
                        f"delete it yourself")
    raise UserError(f"{path} holds {_a(existing)} ({KINDS.get(existing, '?')} output), not {_a(kind)}; "
                    f"{setting('overwrite')} only replaces output of the same kind: choose another folder")


def refuse_foreign_files(outputs: Sequence[Path], records: Sequence[Path], kinds: Sequence[str],
                         what: str) -> None:
    """Output FILES (predict's CSVs) replace existing files only when serengeti-tf wrote them: one of
    `records` (JSON written beside them: the final meta, or the work file's) holds a fingerprint whose
    `kind` is one of `kinds`. A file the user wrote (or another command's, e.g. a dataset's
    manifest.csv) is never replaced, `--overwrite` or not."""
    existing = [Path(p) for p in outputs if os.path.lexists(p)]
    if not existing:
        return
    for record in records:
        try:
            content = read_json(record) if Path(record).is_file() else None
        except (UserError, OSError, UnicodeDecodeError):
            content = None
        if isinstance(content, dict):
            fingerprint = content.get("fingerprint", content)
            if isinstance(fingerprint, dict) and fingerprint.get("kind") in kinds:
                return
    raise UserError(f"{existing[0]} exists and was not written by {what}; it is never replaced ({setting('overwrite')} "
                    f"only replaces {what} output): choose another output name")


def refuse_other_kind(path: str | os.PathLike, kind: str) -> None:
    """The kind check of `claim_output_dir`, early: a command that reads a lot before claiming its
    output (compare) refuses a folder of another kind before that work."""
    if has_content(Path(path)):
        check_kind(path, kind)


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _json_round_trip(value: Any) -> Any:
    """What `value` reads back as from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def same_json(stored: Any, current: Any) -> bool:
    """True when `stored` (read from a JSON file) equals `current` written and read back: compares a
    fingerprint on disk with a freshly computed one."""
    return stored == _json_round_trip(current)


# ---------------------------------------------------------------------------------------------
# Digests: what identifies a model, an input file or a listing
# ---------------------------------------------------------------------------------------------

def update_digest(digest, path: str | os.PathLike) -> None:
    """Feeds a file's bytes into a hashlib digest in 1 MiB blocks (never the whole file in memory)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (identifies a model, a metadata or detections file)."""
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()


def text_digest(text: str) -> str:
    """sha256 of a text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def has_content(path: Path) -> bool:
    """True when `path` holds anything besides the lock file of a running command."""
    return path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())


# ---------------------------------------------------------------------------------------------
# Which files serengeti-tf wrote: `--overwrite` deletes these and nothing else
# ---------------------------------------------------------------------------------------------

def _owner_folder(path: Path) -> Optional[Path]:
    """The nearest claimed output folder (one holding MARKER) that `path` lies in, if any."""
    for folder in path.parents:
        if (folder / MARKER).is_file():
            return folder
    return None


def record_owned(path: str | os.PathLike, folder: Optional[bool] = None) -> None:
    """Notes in the owning output folder's OWNED_LOG that serengeti-tf wrote `path`.

    A folder entry (path ending in "/") means the whole subtree is ours (e.g. `tensorboard/`).
    Every `atomic_path` write is recorded; code writing files another way calls this itself.
    """
    path = Path(path).absolute()
    owner = _owner_folder(path)
    if owner is None:
        return
    folder = path.is_dir() if folder is None else folder
    entry = path.relative_to(owner).as_posix() + ("/" if folder else "")
    with open(owner / OWNED_LOG, "a", encoding="utf-8") as log:
        log.write(entry + "\n")


def owned_entries(folder: str | os.PathLike) -> set[str]:
    """Relative paths serengeti-tf recorded as written into `folder` (see `record_owned`), as the
    list says: untrusted text (a copied folder may carry any list), checked by `_deletion_plan`."""
    log = Path(folder) / OWNED_LOG
    if not log.is_file():
        return set()
    text = log.read_text(encoding="utf-8", errors="replace")
    return {line for line in text.splitlines() if line and not line.startswith(KIND_PREFIX)}


def _entry_target(folder: Path, claimed: Path, entry: str) -> Optional[Path]:
    """The path the OWNED_LOG `entry` of `claimed` names, checked to lie inside `folder` without
    passing through a symlink; None when it no longer exists. Raises UserError otherwise."""
    text = entry.rstrip("/")
    parts = text.split("/")
    where = f"{claimed / OWNED_LOG} lists {entry!r}"
    if not text or text.startswith("/") or "\\" in text or ".." in parts or (len(parts[0]) > 1 and parts[0][1] == ":"):
        raise UserError(f"{where}, which lies outside {folder}; refusing {setting('overwrite')}, nothing was deleted")
    current = claimed
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        current = current / part
        if not os.path.lexists(current):
            return None
        if i < len(parts) - 1 and current.is_symlink():
            raise UserError(f"{where}, which is reached through the symlink {current}; refusing "
                            f"{setting('overwrite')}, "
                            f"nothing was deleted")
    if current == claimed:
        raise UserError(f"{where}, which is the folder itself; refusing {setting('overwrite')}, nothing was deleted")
    return current


def _deletion_plan(folder: Path) -> tuple[list[Path], list[Path]]:
    """(files and links to unlink, folders to delete whole) for `remove_owned`, every one checked
    to lie inside `folder` and not to be reached through a symlink, before anything is deleted."""
    files: list[Path] = []
    trees: list[Path] = []
    # os.walk never enters a symlinked folder (followlinks=False): a linked claimed folder is not ours.
    claimed = [Path(d) for d, _, names in os.walk(folder) if MARKER in names]
    for owner in sorted(claimed, key=lambda p: len(p.parts), reverse=True):
        for entry in sorted(owned_entries(owner)):
            target = _entry_target(folder, owner, entry)
            if target is None:
                continue
            if entry.endswith("/") and target.is_dir() and not target.is_symlink():
                trees.append(target)
            elif target.is_symlink() or target.is_file():  # a link is removed, never followed
                files.append(target)
        files += [owner / MARKER, owner / OWNED_LOG]
    temps = (".*.tmp", ".*.keras.*.keras")  # atomic_path temp names (`model.save_model`'s too)
    for dirpath, _, names in os.walk(folder):
        files += [Path(dirpath) / n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in temps)]
    return files, trees


def remove_owned(folder: str | os.PathLike) -> list[Path]:
    """Deletes what serengeti-tf wrote in `folder` (and in claimed folders inside it), nothing else.

    The owned-files lists are untrusted: every path they name must lie inside `folder`, not be
    reached through a symlink (a symlink itself is removed, never followed), else the whole
    overwrite is refused before anything is deleted. Our own temporary files (`.<name>.*.tmp`,
    `.<name>.keras.*.keras`, left by a kill) go too. Folders left empty are removed. Returns the
    paths kept because serengeti-tf did not write them.
    """
    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise UserError(f"{folder} was not written by serengeti-tf ({MARKER} missing); "
                        f"refusing to delete anything in it")
    if not (folder / OWNED_LOG).is_file():
        # Written by a version that did not list its files: what is ours is unknown, so nothing goes.
        raise UserError(f"{folder} was written by an older serengeti-tf that did not list the files it wrote, "
                        f"so {setting('overwrite')} cannot tell them from yours; choose a new folder or empty it "
                        "yourself")
    files, trees = _deletion_plan(folder)
    for tree in trees:
        shutil.rmtree(tree, ignore_errors=True)  # rmtree removes links inside, never follows them
    for file in files:
        if os.path.lexists(file) and not (file.is_dir() and not file.is_symlink()):
            file.unlink()
    for dirpath, _, _ in os.walk(folder, topdown=False):
        current = Path(dirpath)
        if current != folder and not current.is_symlink() and not any(current.iterdir()):
            current.rmdir()
    return [p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE]


# ---------------------------------------------------------------------------------------------
# Inputs are only read: an output may never be, contain or lie inside one
# ---------------------------------------------------------------------------------------------

def check_output_path(path: str | os.PathLike) -> None:
    """Refuses an output folder that is a file or lies below a file (`OUT/file.txt/sub`)."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"lies inside {candidate}, which is a file"
                raise UserError(f"output folder {path} {where}; choose a folder path")
            return


def refuse_overlap(output: str | os.PathLike, inputs: Mapping[str, Any], what: str = "output folder") -> None:
    """Refuses an output that is, contains or lies inside any input, `--overwrite` or not.

    `inputs` maps a description (e.g. "--image-root") to one path or a list of paths; None and ""
    are skipped. Paths are compared resolved (symlinks followed), so `victim` and `./victim/../victim`
    are the same folder. This is the one guard every command with an output calls first: without
    it `--overwrite` could delete source images.
    """
    out = Path(output).resolve()
    for name, value in inputs.items():
        values = value if isinstance(value, (list, tuple, set)) else [value]
        for item in values:
            if item is None or item == "":
                continue
            source = Path(item).resolve()
            if out == source:
                relation = "is"
            elif source.is_relative_to(out):
                relation = "contains"
            elif out.is_relative_to(source):
                relation = "lies inside"
            else:
                continue
            raise UserError(f"{what} {output} {relation} the input {name} {item}; inputs are only read, "
                            f"so choose an output outside every input")


# ---------------------------------------------------------------------------------------------
# Disk full
# ---------------------------------------------------------------------------------------------

def disk_full_message(err: BaseException) -> Optional[str]:
    """The one-line message for an out-of-space error (Python's or TensorFlow's), else None."""
    text = str(err)
    if (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in text:
        where = getattr(err, "filename", None)
        return (f"the disk is full{f' (writing {where})' if where else ''}; free some space and rerun the same "
                f"command: it continues where it stopped")
    return None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: Optional[str] = None) -> Iterator[Path]:
    """Yields a temporary folder beside `path`; only if the block succeeds does it replace `path`,
    so `path` never holds a half-written output. Everything the block wrote is listed as ours
    (OWNED_LOG). An existing `path` is replaced only when serengeti-tf wrote all of it: that is
    checked before the block runs, so a refusal costs no work. `kind` is recorded as
    `claim_output_dir` does, and an existing `path` of another kind is refused."""
    path = Path(path)
    if has_content(path) and kind is not None:
        check_kind(path, kind)
    if has_content(path):
        owned = {entry.rstrip("/") for entry in owned_entries(path)} | {MARKER, OWNED_LOG, LOCK_FILE}
        foreign = sorted(p.name for p in path.iterdir() if p.name not in owned)
        if foreign:
            raise UserError(f"{path} holds files serengeti-tf did not write ({', '.join(foreign[:3])}); "
                            f"choose a new or empty folder ({setting('overwrite')} only ever deletes files "
                            "serengeti-tf wrote)")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.partial"):  # left by a killed earlier attempt
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        with open(tmp / OWNED_LOG, "a", encoding="utf-8") as log:
            if kind is not None:
                log.write(f"{KIND_PREFIX}{kind}\n")
            log.writelines(p.name + ("/" if p.is_dir() else "") + "\n"
                           for p in sorted(tmp.iterdir()) if p.name != OWNED_LOG)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 folders
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
