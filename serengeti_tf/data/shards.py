"""Writing the prepared images as TFRecord shards: planned, parallel, resumable, plus TFDS metadata.

Plan: the train split is sharded per class (each train shard holds one class only, at most
`data.shard_size` images) so a sampler can read any one class alone; val and test are sharded on
their own. Row order inside a split is a seeded permutation, so a rerun writes the same bytes.

Writing: worker processes (spawned, importing only `images`, never TensorFlow) decode and encode
the images in small chunks; the parent serialises the examples in plan order and streams them into
one shard at a time, with a bounded number of chunks in flight (memory does not grow with the
dataset). Each shard is written to a temporary name and renamed, then a small "done" record is
written to `.prepare_state/`; a rerun skips shards whose done record matches the plan, and the done
record remembers which images were corrupt so their drops are reported without decoding again.
Workers end with the parent (`exit_with_parent`), so killing `prepare` leaves no orphan behind.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from serengeti_tf import events
from serengeti_tf.config import DataConfig
from serengeti_tf.data import crops, images, storage
from serengeti_tf.data.dataset import SPLITS, TFDS_NAME
from serengeti_tf.io_utils import record_owned, text_digest

STATE_DIR = ".prepare_state"
# Images per worker task: large enough to amortise inter-process traffic, small enough to balance.
CHUNK_SIZE = 8
# Chunks in flight per worker: keeps every core busy while bounding memory in the parent.
CHUNKS_IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class ShardSpec:
    """One planned shard: which manifest rows (index labels) go into which file, in order."""

    split: str
    shard_no: int
    num_shards: int
    rows: tuple
    class_name: Optional[str] = None  # train shards hold one class only

    @property
    def file(self) -> str:
        return shard_file_name(self.split, self.shard_no, self.num_shards)


def shard_file_name(split: str, shard_no: int, num_shards: int) -> str:
    """TFDS naming: `camera_traps-train.tfrecord-00000-of-00012`."""
    return f"{TFDS_NAME}-{split}.tfrecord-{shard_no:05d}-of-{num_shards:05d}"


def resolve_workers(workers: int) -> int:
    """`data.workers`, with 0 meaning every core this process may run on."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _seeded_order(frame: pd.DataFrame, seed: int) -> list:
    """Index labels sorted by path, then permuted with `seed`: independent of the input row order.

    Crop tables permute images and keep each image's crops adjacent (one decode per image)."""
    if crops.is_crop_table(frame):
        return crops.image_level_order(frame, seed)
    ordered = frame.sort_values(["path", "capture_id"], kind="stable").index.to_list()
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    return [ordered[i] for i in permutation]


def _split_evenly(rows: list, shard_size: int) -> list[list]:
    count = max(1, math.ceil(len(rows) / shard_size))
    bounds = np.linspace(0, len(rows), count + 1).round().astype(int)
    return [rows[bounds[i]:bounds[i + 1]] for i in range(count)]


def plan_shards(manifest: pd.DataFrame, class_names: Sequence[str], shard_size: int,
                seed: int) -> list[ShardSpec]:
    """Plans every shard of every split from a manifest with `split` set (kept rows only are used)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    kept = manifest[(manifest["drop_reason"] == "") & manifest["split"].isin(SPLITS)]
    unknown = sorted(set(kept["species"]) - set(class_names))
    if unknown:
        raise ValueError(f"kept rows have species missing from the class map: {unknown[:5]}")
    plans: list[ShardSpec] = []
    for split in SPLITS:
        part = kept[kept["split"] == split]
        if split == "train":
            groups = []
            for name in class_names:
                rows = _seeded_order(part[part["species"] == name], seed)
                groups += [(name, chunk) for chunk in _split_evenly(rows, shard_size)] if rows else []
        else:
            rows = _seeded_order(part, seed)
            groups = [(None, chunk) for chunk in _split_evenly(rows, shard_size)] if rows else []
        plans += [ShardSpec(split, i, len(groups), tuple(rows), name) for i, (name, rows) in enumerate(groups)]
    return plans


def _plan_digest(spec: ShardSpec, manifest: pd.DataFrame, labels: dict[str, int], data: DataConfig) -> str:
    """Hash of everything that determines a shard's bytes; a done record must match it to be trusted."""
    crop_columns = list(crops.CROP_COLUMNS) if crops.is_crop_table(manifest) else []
    rows = manifest.loc[list(spec.rows), ["path", "species", "capture_id", "site", "frame"] + crop_columns]
    payload = {"file": spec.file, "image_size": data.image_size, "quality": data.jpeg_quality,
               "rows": [[r[0], labels[r[1]], str(r[2]), str(r[3]), int(r[4])] + [float(v) for v in r[5:]]
                        for r in rows.itertuples(index=False)]}
    if crop_columns:
        payload["crops"] = list(crops.crop_settings(data.crops))
    return text_digest(json.dumps(payload, sort_keys=True))


def _done_record_path(out_dir: str | os.PathLike, spec: ShardSpec) -> str:
    return storage.join(out_dir, STATE_DIR, f"{spec.file}.json")


def read_done_record(out_dir: str | os.PathLike, spec: ShardSpec, digest: str) -> Optional[dict]:
    """The done record of a finished shard, or None when the shard must be (re)written.

    `out_dir` is a local folder or an object-store URL (`storage`)."""
    record_path = _done_record_path(out_dir, spec)
    shard_size = storage.size(storage.join(out_dir, spec.file))
    if shard_size is None or not storage.is_file(record_path):
        return None
    try:
        record = storage.read_json(record_path)
    except (OSError, ValueError):
        return None
    if record.get("digest") != digest or record.get("num_bytes") != shard_size:
        return None
    return record


def pending_shards(manifest: pd.DataFrame, plans: Sequence[ShardSpec], labels: dict[str, int],
                   data: DataConfig, out_dir: str | os.PathLike) -> tuple[dict[str, dict], list[tuple[ShardSpec, str]]]:
    """(done records of the shards already finished, [(spec, digest)] of those still to write)."""
    records: dict[str, dict] = {}
    todo: list[tuple[ShardSpec, str]] = []
    for spec in plans:
        digest = _plan_digest(spec, manifest, labels, data)
        record = read_done_record(out_dir, spec, digest)
        if record is None:
            todo.append((spec, digest))
        else:
            records[spec.file] = record
    return records, todo


def _ordered_results(executor, tasks: Iterable[list], job: Callable, args: tuple,
                     window: int) -> Iterator[list[bytes | str]]:
    """Runs `job(task, *args)` (`images.prepare_jpegs` or `crops.prepare_crop_jpegs`) over `tasks` in
    the pool, yielding results in task order, <= window pending."""
    tasks = iter(tasks)
    pending: collections.deque = collections.deque()

    def submit_next() -> None:
        task = next(tasks, None)
        if task is not None:
            if executor is None:
                pending.append(job(task, *args))
            else:
                pending.append(executor.submit(job, task, *args))

    for _ in range(window):
        submit_next()
    while pending:
        head = pending.popleft()
        submit_next()
        yield head if executor is None else head.result()


def _chunks(spec: ShardSpec, abs_paths: dict) -> list[list]:
    rows = list(spec.rows)
    return [[abs_paths[r] for r in rows[i:i + CHUNK_SIZE]] for i in range(0, len(rows), CHUNK_SIZE)]


def worker_job(manifest: pd.DataFrame, data: DataConfig) -> tuple[Callable, tuple, dict]:
    """The worker function, its arguments after the task, and each row's task (path or crop tuple)."""
    if crops.is_crop_table(manifest):
        tasks = dict(zip(manifest.index, crops.crop_tasks(manifest, Path(data.image_root))))
        return (crops.prepare_crop_jpegs, (data.image_size, data.jpeg_quality, *crops.crop_settings(data.crops)),
                tasks)
    return (images.prepare_jpegs, (data.image_size, data.jpeg_quality),
            {idx: storage.image_location(data.image_root, path) for idx, path in manifest["path"].items()})


def shard_rows(manifest: pd.DataFrame, spec: ShardSpec) -> list[dict]:
    """What each record of a shard carries besides the image, in plan order (plain values: picklable)."""
    crop_rows = "crop" in manifest.columns
    rows = []
    for row in manifest.loc[list(spec.rows)].itertuples(index=False):
        rows.append({"path": row.path, "species": row.species, "capture_id": str(row.capture_id),
                     "site": str(row.site), "frame": int(row.frame),
                     "crop": row._asdict() if crop_rows else None})
    return rows


def write_shard(out_dir: str | os.PathLike, spec: ShardSpec, digest: str, rows: Sequence[dict],
                encoded: Iterable[bytes | str], labels: dict[str, int],
                on_image: Optional[Callable[[], None]] = None) -> dict:
    """Writes one shard from its rows (`shard_rows`) and their worker results in the same order,
    then its done record; returns the record. Used by the local pool and by the Beam runner, so both
    write the same bytes. The shard appears complete or not at all (`storage.staged_file`)."""
    import tensorflow as tf

    from serengeti_tf.data.records import encode_example

    written, corrupt = 0, []
    with storage.staged_file(storage.join(out_dir, spec.file)) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for row, result in zip(rows, encoded, strict=True):
                if on_image is not None:
                    on_image()
                if isinstance(result, str):
                    corrupt.append({"path": row["path"], "error": result,
                                    **({"crop": int(row["crop"]["crop"])} if row["crop"] else {})})
                    continue
                writer.write(encode_example(result, labels[row["species"]], row["capture_id"], row["path"],
                                            row["site"], row["frame"], crop=row["crop"]))
                written += 1
        num_bytes = tmp.stat().st_size
    record = {"file": spec.file, "split": spec.split, "class": spec.class_name,
              "num_examples": written, "num_bytes": num_bytes, "digest": digest, "corrupt": corrupt}
    storage.write_json(_done_record_path(out_dir, spec), record)
    return record


def write_shards(manifest: pd.DataFrame, plans: Sequence[ShardSpec], class_names: Sequence[str],
                 data: DataConfig, out_dir: str | os.PathLike, progress: bool = True,
                 after_shard: Optional[Callable[[ShardSpec], None]] = None,
                 on_event: events.EventSink = events.ignore) -> dict[str, dict]:
    """Writes every planned shard not already finished; returns file -> done record.

    A done record is `{"file", "split", "class", "num_examples", "num_bytes", "digest", "corrupt":
    [{"path", "error"}]}`. `after_shard` is called after each newly written shard (tests use it to
    simulate an interruption). `out_dir` is a local folder or an object-store URL. With `progress`,
    the images written are reported to `on_event` ("preparing images").
    """
    if not storage.is_url(out_dir):
        (Path(out_dir) / STATE_DIR).mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(Path(out_dir))
    labels = {name: i for i, name in enumerate(class_names)}
    job, job_args, abs_paths = worker_job(manifest, data)
    records, todo = pending_shards(manifest, plans, labels, data, out_dir)
    total = sum(len(s.rows) for s in plans)
    remaining = sum(len(s.rows) for s, _ in todo)
    workers = min(resolve_workers(data.workers), max(1, math.ceil(remaining / CHUNK_SIZE)))
    bar = events.Tracker(on_event if progress else events.ignore, "preparing images", total, "img",
                         initial=total - remaining)
    executor = None
    if workers > 1 and todo:
        # spawn: workers import `images` only, never the parent's TensorFlow state.
        executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                          initializer=exit_with_parent, initargs=(os.getpid(),))
    try:
        tasks = (chunk for spec, _ in todo for chunk in _chunks(spec, abs_paths))
        results = _ordered_results(executor, tasks, job, job_args, max(1, workers) * CHUNKS_IN_FLIGHT_PER_WORKER)
        flat = (result for chunk in results for result in chunk)
        for spec, digest in todo:
            # islice: exactly this shard's results, so the next shard starts at its own first image.
            encoded = itertools.islice(flat, len(spec.rows))
            records[spec.file] = write_shard(out_dir, spec, digest, shard_rows(manifest, spec), encoded, labels,
                                             on_image=bar.advance)
            if after_shard is not None:
                after_shard(spec)
    finally:
        bar.finish()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return {spec.file: records[spec.file] for spec in plans}


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: the worker ends when the prepare process dies, even by SIGKILL.

    Linux: the kernel sends SIGTERM on the parent's death (prctl PR_SET_PDEATHSIG). Elsewhere, or
    if the parent is already gone, a watchdog thread polls the parent pid.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # died before the prctl call took effect
        os._exit(1)
    if not sys.platform.startswith("linux"):
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


def _remove_stale_temp_files(out: Path) -> None:
    """Deletes temporary shard files a killed run left behind (ours only: `.camera_traps-*.tmp`)."""
    for stale in out.glob(f".{TFDS_NAME}-*.tmp"):
        stale.unlink(missing_ok=True)


def corrupt_paths(records: dict[str, dict]) -> dict[str, str]:
    """path -> error text of every image found corrupt (or missing) while writing shards."""
    return {c["path"]: c["error"] for r in records.values() for c in r["corrupt"]}


def shard_index(plans: Sequence[ShardSpec], records: dict[str, dict]) -> dict:
    """The `shards.json` content documented in `dataset.py`."""
    index: dict[str, list] = {split: [] for split in SPLITS}
    for spec in plans:
        record = records[spec.file]
        entry = {"file": spec.file, "num_examples": record["num_examples"], "num_bytes": record["num_bytes"]}
        if spec.split == "train":
            entry = {"file": spec.file, "class": spec.class_name, **{k: v for k, v in entry.items() if k != "file"}}
        index[spec.split].append(entry)
    return index


def tfds_features(class_names: Sequence[str], crops: bool = False):
    """The TFDS view of `records.FEATURE_SPEC` (the one schema): the image as JPEG, the label as a
    ClassLabel, strings as Text, numbers as Scalars; the crop features only for crop datasets
    (whole-frame records do not carry them)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from serengeti_tf.data.records import CROP_FEATURES, FEATURE_SPEC

    special = {"image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
               "label": tfds.features.ClassLabel(names=list(class_names))}
    features = {}
    for key, spec in FEATURE_SPEC.items():
        if key in CROP_FEATURES and not crops:
            continue
        if key in special:
            features[key] = special[key]
        elif spec.dtype == tf.string:
            features[key] = tfds.features.Text()
        else:
            features[key] = tfds.features.Scalar(dtype=spec.dtype)
    return tfds.features.FeaturesDict(features)


def _shard_bytes(out: Path, entry: dict) -> int:
    """A shard's size from its shards.json entry (the file itself may be in an object store)."""
    return int(entry["num_bytes"]) if "num_bytes" in entry else (out / entry["file"]).stat().st_size


def write_tfds_metadata(out_dir: str | os.PathLike, index: dict, class_names: Sequence[str],
                        description: str = "", crops: bool = False) -> None:
    """Writes `dataset_info.json`, `features.json` and `label.labels.txt` through TFDS's documented
    route for externally written TFRecords (`tfds.folder_dataset.write_metadata`), so
    `tfds.builder_from_directory` loads every split.

    `index` is the `shards.json` content (split -> [{"file", "num_examples", "num_bytes", ...}] in
    shard order); sizes come from it (shards may be in an object store), else from the files. Every split
    with a shard file is declared (TFDS requires it), so a split whose only shard is empty is listed
    with 0 examples. The files are written in place: `summary.json`, written after them, is what
    marks a finished prepare, so a killed prepare's partial metadata is rewritten by the rerun.
    """
    import tensorflow_datasets as tfds

    out = Path(out_dir)
    split_infos = [tfds.core.SplitInfo(name=split, shard_lengths=[int(e["num_examples"]) for e in index[split]],
                                       num_bytes=sum(_shard_bytes(out, e) for e in index[split]),
                                       filename_template=None)
                   for split in SPLITS if index.get(split)]
    before = {item.name: item.stat().st_mtime_ns for item in out.iterdir()}
    # write_metadata lists the folder for shard names; a remote output's shards are not in it (its
    # local staging folder), so empty stand-ins are there while it runs.
    stand_ins = [out / e["file"] for split in SPLITS for e in index.get(split, []) if not (out / e["file"]).exists()]
    try:
        for stand_in in stand_ins:
            stand_in.touch()
        tfds.folder_dataset.write_metadata(
            data_dir=out, features=tfds_features(class_names, crops), split_infos=split_infos,
            version="1.0.0",  # not inferred: write_metadata would take a folder named like "2.0.0" as the version
            check_data=False,  # as before, no example is read back here (the tests load every split)
            description=description or None, supervised_keys=("image", "label"))
    finally:
        for stand_in in stand_ins:
            stand_in.unlink(missing_ok=True)
    for item in sorted(out.iterdir()):  # whatever TFDS wrote is ours (its file names are its own)
        if item.is_file() and before.get(item.name) != item.stat().st_mtime_ns:
            record_owned(item)
