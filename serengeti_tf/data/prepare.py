"""The `prepare` job: metadata + images -> manifest -> filters -> split -> class-sharded TFRecords.

Everything lands in one output folder (layout in `dataset.py`): shards, TFDS metadata, class map,
per-class counts, the full manifest with drop reasons, the split table, a class-distribution plot,
a summary and the resolved config. `summary.json` is written last, so its presence means finished.

Rerunning: the folder is claimed with a fingerprint of the inputs (metadata file hashes, image
root; for class-folder sources the file listing) and every data setting that changes the output.
Image files themselves are not hashed (reading every pixel twice would defeat the point). Same
fingerprint and finished: nothing to do. Same fingerprint, interrupted: finished shards are kept and
the rest written (same bytes as a clean run). Different fingerprint: refused unless `overwrite`.

Image decoding runs in spawned worker processes, so a script calling `prepare_dataset` must guard
its entry point with `if __name__ == "__main__":` (the CLI does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import events, io_utils, run_folder
from serengeti_tf.config import Config, DataConfig
from serengeti_tf.data import beam_runner, crops, detections, filters, remote_output, shards, sources, split, storage
from serengeti_tf.data.beam_runner import require_beam
from serengeti_tf.data.class_map import ClassMap
from serengeti_tf.data.crops import describe, mark_crop_failures, no_detection_per_species
from serengeti_tf.data.dataset import SPLITS
from serengeti_tf.data.sources.camtrap_dp import table_files
from serengeti_tf.errors import UserError, setting
from serengeti_tf.plots import class_distribution_figure
from serengeti_tf.run_folder import DatasetFolder, OutputJob
from serengeti_tf.species import paper_name

# Bump when the prepared layout or image processing changes, so old folders are not taken as current.
PREPARE_FORMAT_VERSION = 1
MANIFEST_COLUMNS = ("path", "species", "capture_id", "site", "datetime", "season", "frame", "source",
                    "drop_reason", "split")
# Data settings that do not change what is written (only how fast).
_NOT_FINGERPRINTED = ("workers", "runner", "beam_options")
MAX_PRINTED_WARNINGS = 5


def check_inputs(data: DataConfig) -> None:
    """Cheap up-front checks so bad paths fail before anything is read or written.

    `image_root` and the metadata files may be object-store URLs (`storage`)."""
    if not data.image_root:
        raise UserError(f"data.image_root is not set: give {setting('image_root')}, the folder image paths are "
                        "relative to")
    if not storage.is_dir(data.image_root):
        raise UserError(f"image root not found ({setting('image_root')} / data.image_root): {data.image_root}")
    for path in data.metadata:
        if not storage.is_file(path):
            raise UserError(f"metadata file not found ({setting('metadata')} / data.metadata): {path}")
    if data.detections and not Path(data.detections).is_file():
        raise UserError(f"detections file not found ({setting('detections')} / data.detections): {data.detections}")
    remote = [p for p in (data.image_root, data.detections) if storage.is_url(p)]
    if remote and (data.detections or not data.metadata):
        raise UserError(f"object-store paths ({remote[0]}) work with metadata files and whole frames; "
                        f"class-folder sources and {setting('detections')} need a local {setting('image_root')}")
    if data.beam_options and data.runner != "beam":
        raise UserError(f"{setting('beam_options')} / data.beam_options is set ({data.beam_options!r}) but the runner "
                        "is "
                        f"{data.runner!r}; add {setting('runner')} beam")
    if data.runner == "beam":
        require_beam()


def fingerprint(data: DataConfig) -> dict:
    """What identifies a prepared dataset: input contents and every output-changing data setting."""
    settings = {k: v for k, v in cfg.to_dict(Config(data=data))["data"].items() if k not in _NOT_FINGERPRINTED}
    settings.pop("metadata")
    settings["image_root"] = storage.resolved(data.image_root)
    if not settings["allow_outside_root"]:  # the default: fingerprints stay those of older folders
        settings.pop("allow_outside_root")
    if data.detections:
        settings["detections"] = {"path": str(Path(data.detections).resolve()),
                                  "sha256": io_utils.file_digest(data.detections)}
    else:  # whole frames: fingerprints stay those of folders prepared before crops existed
        settings.pop("detections")
        settings.pop("detections_strip_prefix")
        settings.pop("crops")
    # Flat, so a refusal names the setting that differs (`differs in: image_size`).
    result = {
        "prepare_format": PREPARE_FORMAT_VERSION,
        "metadata": [{"path": storage.resolved(p), "sha256": storage.file_digest(p)} for p in data.metadata],
        **settings,
    }
    if not data.metadata:
        # Folder-per-class sources: the file listing is the metadata.
        result["image_listing_sha256"] = _listing_digest(Path(data.image_root))
    packages = [p for p in data.metadata if Path(p).name.lower() == "datapackage.json"]
    if packages:  # a Camtrap DP descriptor names its tables: they are the metadata too
        result["metadata_tables"] = [{"path": str(t.resolve()), "sha256": io_utils.file_digest(t)}
                                     for p in packages for t in table_files(p) if t.is_file()]
    return result


def _listing_digest(root: Path) -> str:
    """Hash of every file's relative path and size under `root` (not the pixels: too slow to read)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                size = path.stat().st_size
            except OSError:  # a dangling symlink: listed, and dropped later as missing_file
                size = -1
            digest.update(f"{path.relative_to(root).as_posix()}\t{size}\n".encode("utf-8"))
    return digest.hexdigest()


def is_finished(location: str, fp: dict) -> bool:
    """True when `location` (a local folder or a URL) holds this finished dataset with every shard intact."""
    marker, summary, index = (storage.join(location, name) for name in (run_folder.FINGERPRINT, run_folder.SUMMARY,
                                                                          run_folder.SHARD_INDEX))
    if not (storage.is_file(marker) and storage.is_file(summary) and storage.is_file(index)):
        return False
    if not io_utils.same_json(storage.read_json(marker), fp):
        return False
    # A shard deleted or truncated since makes the folder unfinished: the resume path rewrites it.
    for entries in storage.read_json(index).values():
        for entry in entries:
            size = storage.size(storage.join(location, entry["file"]))
            if size is None or size != entry.get("num_bytes", size):
                return False
    return True


def _refuse_other_dataset_early(out: Path, fp: dict, overwrite: bool) -> None:
    """Refuses a folder holding other work before the (possibly long) metadata read, not after it."""
    if overwrite or not io_utils.has_content(out):
        return
    marker = DatasetFolder(out).fingerprint
    if not marker.is_file() or not io_utils.same_json(io_utils.read_json(marker), fp):
        dataset_job(out).claim(fp, overwrite=False)  # raises the standard refusal message


def build_manifest(data: DataConfig, progress: events.EventSink = events.ignore) -> tuple[pd.DataFrame, list[str]]:
    """read_source -> apply_filters -> assign_splits; raises UserError when no image is left.

    Metadata files in an object store are read from a temporary local copy (the readers are unchanged).
    `progress` receives the readers' and the file check's `Progress` events."""
    with contextlib.ExitStack() as stack:
        local = [stack.enter_context(storage.local_copy(p)) for p in data.metadata]
        manifest = sources.read_source(dataclasses.replace(data, metadata=local), progress)
    # A fresh 0..n-1 index: shard plans refer to rows by index label.
    manifest = filters.apply_filters(manifest, data, progress).reset_index(drop=True)
    require_kept(manifest, data, "after filtering")
    manifest, warnings = split.assign_splits(manifest, data)
    return manifest.reset_index(drop=True), list(warnings)


def crop_examples(manifest: pd.DataFrame, data: DataConfig,
                  progress: events.EventSink = events.ignore) -> tuple[pd.DataFrame, pd.DataFrame, Optional[dict]]:
    """(image manifest, example table, detections report): with `data.detections` the examples are
    detector crops (`crops.join_detections`), otherwise the manifest's own rows and no report."""
    if not data.detections:
        return manifest, manifest, None
    found = detections.read_detections(data.detections, data.image_root, progress=True,
                                       strip_prefix=data.detections_strip_prefix, on_event=progress)
    manifest, table, report = crops.join_detections(manifest, found, data.crops)
    if table.empty:
        drops = manifest["drop_reason"].value_counts()
        threshold = report["settings"]["threshold"]
        raise UserError(f"no crop left: {data.detections} gives no {data.crops.category} box with conf >= "
                        f"{threshold} on a kept image (no_detection {int(drops.get('no_detection', 0))}, "
                        f"not_in_detections {int(drops.get('not_in_detections', 0))}, detector_failure "
                        f"{int(drops.get('detector_failure', 0))})")
    return manifest, table, report


def require_kept(manifest: pd.DataFrame, data: DataConfig, stage: str) -> None:
    """Raises the "no image left" UserError when every row is dropped (all missing, corrupt, ...)."""
    if (manifest["drop_reason"] == "").any():
        return
    counts = filters.drop_counts(manifest)
    drops = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    hint = (f"; paths outside the image root are read only with {setting('allow_outside_root')}"
            if counts.get("outside_root") else "")
    raise UserError(f"no image left {stage}: {len(manifest)} rows read from "
                    f"{', '.join(data.metadata) or data.image_root} and all dropped ({drops or 'no reason recorded'})"
                    f"{hint}")


def class_names_of(manifest: pd.DataFrame) -> list[str]:
    """Sorted canonical names of the species kept in any split: the label index order."""
    kept = manifest[(manifest["drop_reason"] == "") & manifest["split"].isin(SPLITS)]
    return sorted(set(kept["species"]))


def _claim_class_map(out: Path, names: list[str], fp: dict, overwrite: bool) -> None:
    """Writes class_map.json, or refuses when the folder's existing shards use another class map.

    With `overwrite` the folder is emptied and rebuilt instead (its shards carry the old labels).
    """
    path = DatasetFolder(out).class_map
    if path.is_file() and overwrite:
        existing = ClassMap.read(path).names
        if existing != names:
            dataset_job(out).restart(fp)
    if path.is_file():
        existing = ClassMap.read(path).names
        if existing != names:
            added = sorted(set(names) - set(existing))
            removed = sorted(set(existing) - set(names))
            raise UserError(f"class map disagrees with the existing shards in {out} (existing {len(existing)} "
                            f"classes, now {len(names)}; added {added[:5]}, removed {removed[:5]}); "
                            f"pass {setting('overwrite')} to rebuild the dataset")
        return
    ClassMap.from_names(names).write(path)


def mark_corrupt(manifest: pd.DataFrame, corrupt: dict[str, str]) -> pd.DataFrame:
    """Marks images that failed to decode while sharding (`corrupt_image`, or `missing_file` if gone)."""
    manifest = manifest.copy()
    missing = {p for p, error in corrupt.items() if error.startswith("FileNotFoundError")}
    for reason, paths in (("missing_file", missing), ("corrupt_image", set(corrupt) - missing)):
        rows = manifest["path"].isin(paths) & (manifest["drop_reason"] == "")
        manifest.loc[rows, "drop_reason"] = reason
        manifest.loc[rows, "split"] = ""
    return manifest


def count_table(manifest: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """counts.csv: species, paper_name, train, val, test, total (label-index order)."""
    kept = manifest[manifest["drop_reason"] == ""]
    table = pd.crosstab(kept["species"], kept["split"]).reindex(index=names, columns=list(SPLITS), fill_value=0)
    table = table.fillna(0).astype(int)
    table["total"] = table[list(SPLITS)].sum(axis=1)
    table.insert(0, "paper_name", [paper_name(n) for n in names])
    table.insert(0, "species", names)
    return table.reset_index(drop=True)


def split_totals(manifest: pd.DataFrame) -> dict:
    kept = manifest[manifest["drop_reason"] == ""]
    return {s: {"images": int((kept["split"] == s).sum()),
                "captures": int(kept.loc[kept["split"] == s, "capture_id"].nunique()),
                "classes": int(kept.loc[kept["split"] == s, "species"].nunique())} for s in SPLITS}


def _empty_class_warnings(counts: pd.DataFrame) -> list[str]:
    return [f"class {row.species} has no training image left after dropping corrupt images"
            for row in counts.itertuples() if row.train == 0 and row.total > 0] + \
           [f"class {row.species} has no image left after dropping corrupt images"
            for row in counts.itertuples() if row.total == 0]


def prepare_dataset(config: Config, out_dir: str | os.PathLike, overwrite: bool = False,
                    progress: bool = True,
                    after_shard: Optional[Callable[[shards.ShardSpec], None]] = None,
                    on_event: events.EventSink = events.ignore) -> dict:
    """Runs the whole prepare job into `out_dir`; returns the summary (also saved as summary.json).

    The returned dict has `up_to_date: True` when the folder already held this finished dataset and
    nothing was done. `after_shard` is called after each newly written shard (used by tests; local
    runner only). An output folder that is, contains or lies inside the image root or a metadata file
    is refused (`--overwrite` or not), and only one process at a time may write `out_dir` (`locks`).
    `out_dir` may be an object-store URL (`remote_output`). With `progress`, the job's progress
    (`events.Progress`, and the Beam runner's `Step`) goes to `on_event`.
    """
    check_inputs(config.data)
    sink = on_event if progress else events.ignore
    if storage.is_url(out_dir):
        steps = remote_output.PrepareSteps(fingerprint, is_finished, prepare_locked)
        return remote_output.prepare_remote(config, str(out_dir), overwrite, sink, steps)
    with dataset_job(out_dir, input_paths(config.data)):
        return prepare_locked(config, Path(out_dir), str(out_dir), overwrite, sink, after_shard)


def input_paths(data: DataConfig) -> dict:
    """The inputs of a prepare run, as `io_utils.refuse_overlap` takes them."""
    return {setting("image_root"): data.image_root, setting("metadata"): list(data.metadata),
            setting("detections"): data.detections}


def dataset_job(out: str | os.PathLike, inputs: Optional[dict] = None) -> OutputJob:
    """The output job of a local prepared dataset folder (`summary.json` marks it finished)."""
    return OutputJob(out, "dataset", inputs=inputs or {}, done=run_folder.SUMMARY)


def prepare_locked(config: Config, out: Path, shard_dir: str, overwrite: bool, progress: events.EventSink,
                   after_shard: Optional[Callable[[shards.ShardSpec], None]] = None) -> dict:
    """The prepare job with `out` locked: small outputs in the local folder `out`, shards and their
    done records in `shard_dir` (the same folder, or the output URL when the output is remote);
    `progress` is the sink of its progress events (`events.ignore` for none)."""
    data = config.data
    started = time.perf_counter()
    fp = fingerprint(data)
    if shard_dir == str(out) and is_finished(str(out), fp):
        summary = io_utils.read_json(DatasetFolder(out).summary)
        return {**summary, "up_to_date": True}
    _refuse_other_dataset_early(out, fp, overwrite)

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    manifest, warnings = build_manifest(data, progress)
    manifest, examples, detections_report = crop_examples(manifest, data, progress)
    timings["read_filter_split_s"] = time.perf_counter() - tick

    resumed = dataset_job(out).claim(fp, overwrite=overwrite)
    names = class_names_of(examples)
    _claim_class_map(out, names, fp, overwrite)
    cfg.save_config(config, out)

    tick = time.perf_counter()
    import tensorflow  # noqa: F401  - seconds on a busy machine; timed apart from the image work
    timings["import_tensorflow_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    plans = shards.plan_shards(examples, names, data.shard_size, data.seed)
    if data.runner == "beam":
        records = beam_runner.write_shards(examples, plans, names, data, shard_dir, data.beam_options,
                                           on_event=progress)
    else:
        records = shards.write_shards(examples, plans, names, data, shard_dir, after_shard=after_shard,
                                      on_event=progress)
    timings["shards_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    if detections_report is None:
        manifest = examples = mark_corrupt(manifest, shards.corrupt_paths(records))
    else:
        failures = {(c["path"], int(c["crop"])): c["error"] for r in records.values() for c in r["corrupt"]}
        manifest, examples = mark_crop_failures(manifest, examples, failures)
    require_kept(manifest, data, "after decoding the images")
    summary = _write_outputs(out, manifest, names, plans, records, warnings, data, examples, detections_report)
    timings["outputs_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started
    summary.update(dataset_dir=shard_dir, runner=data.runner, resumed=resumed, timings=timings, up_to_date=False)
    io_utils.write_json(DatasetFolder(out).summary, summary)  # last: its presence marks a finished prepare
    return summary


def _write_outputs(out: Path, manifest: pd.DataFrame, names: list[str], plans, records: dict,
                   warnings: list[str], data: DataConfig, examples: pd.DataFrame,
                   detections_report: Optional[dict]) -> dict:
    counts = count_table(examples, names)
    if detections_report is not None:
        counts["unit"] = "crops"  # sampling counts crops: say so where the counts are read
    warnings = warnings + _empty_class_warnings(counts)
    columns = [c for c in MANIFEST_COLUMNS if c in manifest.columns]
    columns += [c for c in manifest.columns if c not in columns]
    folder = DatasetFolder(out)
    io_utils.write_csv(folder.manifest, manifest[columns])
    io_utils.write_csv(folder.counts, counts)
    if detections_report is not None:
        io_utils.write_csv(folder.crops, examples)
    io_utils.write_csv(folder.splits, split.split_table(manifest))
    unit = "crops" if detections_report is not None else "images"
    io_utils.save_figure(folder.class_distribution, class_distribution_figure(counts, unit))
    index = shards.shard_index(plans, records)
    io_utils.write_json(folder.shard_index, index)
    shards.write_tfds_metadata(out, index, names,
                               description=f"Camera-trap images prepared by serengeti-tf from "
                                           f"{', '.join(data.metadata) or data.image_root}"
                                           + (f" (detector crops from {data.detections})" if data.detections else ""),
                               crops=detections_report is not None)
    drops = {str(k): int(v) for k, v in filters.drop_counts(manifest).items()}
    crop_part = {}
    splits = split_totals(manifest)
    if detections_report is not None:
        kept_crops = examples[examples["drop_reason"] == ""]
        for name in SPLITS:
            splits[name]["crops"] = int((kept_crops["split"] == name).sum())
        dropped_crops = examples.loc[examples["drop_reason"] != "", "drop_reason"].value_counts()
        crop_part = {"unit": "crops", "crops_kept": int(len(kept_crops)),
                     "crops_dropped": {str(k): int(v) for k, v in dropped_crops.items()},
                     "no_detection_per_species": no_detection_per_species(manifest),
                     "detections": detections_report}
    return {
        "dataset_dir": str(out),
        "num_classes": len(names),
        "images_read": int(len(manifest)),
        "images_kept": int((manifest["drop_reason"] == "").sum()),
        "drops": drops,
        "splits": splits,
        "shards": {s: sum(1 for p in plans if p.split == s) for s in SPLITS},
        "image_size": data.image_size,
        "workers": shards.resolve_workers(data.workers),
        "warnings": warnings,
        **crop_part,
    }


def format_summary(summary: dict) -> str:
    """The summary printed at the end of `serengeti-tf prepare`."""
    if summary.get("up_to_date"):
        head = f"{summary['dataset_dir']} is up to date (nothing to do)."
    else:
        head = f"Prepared {summary['dataset_dir']}" + (" (resumed)" if summary.get("resumed") else "")
    lines = [head,
             f"  images read {summary['images_read']}, kept {summary['images_kept']}, "
             f"classes {summary['num_classes']}, stored short side {summary['image_size']} px"]
    drops = ", ".join(f"{k} {v}" for k, v in summary["drops"].items() if v and k and k != "kept")
    lines.append(f"  dropped: {drops or 'none'}")
    if summary.get("unit") == "crops":
        dropped = ", ".join(f"{k} {v}" for k, v in summary["crops_dropped"].items())
        lines.append(f"  crops kept {summary['crops_kept']} (one example per detection); crops dropped: "
                     f"{dropped or 'none'}")
        lines.append(describe(summary.get("detections")))
    for name, part in summary["splits"].items():
        crops_text = f"{part['crops']} crops, " if "crops" in part else ""
        lines.append(f"  {name:5s}: {crops_text}{part['images']} images, {part['captures']} captures, "
                     f"{part['classes']} classes, {summary['shards'][name]} shards")
    timings = summary.get("timings", {})
    if timings and not summary.get("up_to_date"):
        lines.append(f"  time: {timings.get('total_s', 0):.1f} s (images {timings.get('shards_s', 0):.1f} s, "
                     f"{summary['workers']} workers)")
    warnings = summary.get("warnings", [])
    lines += [f"  warning: {w}" for w in warnings[:MAX_PRINTED_WARNINGS]]
    if len(warnings) > MAX_PRINTED_WARNINGS:
        lines.append(f"  ... and {len(warnings) - MAX_PRINTED_WARNINGS} more warnings "
                     f"(all in {storage.join(summary['dataset_dir'], run_folder.SUMMARY)})")
    return "\n".join(lines)
