"""`predict --detections MD.json`: classify the detector's crops of new images, per crop and per image.

Outputs, for `-o OUT.csv` (the whole-frame `predict` files, plus the crops):

    OUT.csv            one row per input image: path, [capture_id], status (`classified` or `empty`),
                       num_crops, max_detection_conf, predicted, confidence, top-k. `empty`: no box of
                       data.crops.category reached data.crops.threshold (or every box was under
                       data.crops.min_size); predicted is `empty` and max_detection_conf is the
                       detector's highest confidence for that category on the image (0 when none).
    OUT.crops.csv      one row per crop: path, crop, box_x, box_y, box_w, box_h, detection_conf,
                       predicted, confidence, top-k
    OUT.captures.csv   with capture ids: the classified images' probabilities averaged per capture
                       (`empty` when all its images are)
    OUT.skipped.csv    path, error: unreadable images, images absent from the MD file, MD failures
    MD_OUT.json        with `md_out`: the MD file with these classifications added (`md_output`)

Image probabilities combine the crops like `evaluate` does (`levels.IMAGE_COMBINATION`). Crops are
cut like `prepare` cuts them (`crops.cut_crops`, the run's stored size) and take the evaluation view.
Memory is bounded (a batch of images at a time, rows appended to hidden work files) and an
interrupted run continues when rerun with the same model, inputs, detections and settings.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

import serengeti_tf
from serengeti_tf import config as cfg
from serengeti_tf import events, io_utils, species
from serengeti_tf.data import crops, detections, images
from serengeti_tf.data.sources import relative_posix
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate import md_output
from serengeti_tf.evaluate.evaluation import softmax, top_k_frame
from serengeti_tf.evaluate.exif_captures import describe
from serengeti_tf.evaluate.levels import combine
from serengeti_tf.evaluate.predict import (
    DECODE_THREADS,
    _append,
    _input_digest,
    _start_or_resume,
    check_request,
    input_frame,
    input_paths,
    load_classifier,
    output_job,
    output_paths,
    refuse_foreign_outputs,
    resolve_model,
)
from serengeti_tf.evaluate.run_reader import read_lineage
from serengeti_tf.run_folder import DatasetFolder, PredictOutputs

EMPTY = "empty"


def run_crop_config(model_or_run: str | Path) -> Optional[cfg.CropConfig]:
    """The data.crops settings of the dataset a run folder was trained on (None if unknown)."""
    source = Path(model_or_run)
    if not source.is_dir():
        return None
    try:
        dataset_dir = read_lineage(source).dataset_dir
    except UserError:
        return None
    config_path = DatasetFolder(Path(dataset_dir or "")).config
    return cfg.load_saved(config_path).data.crops if dataset_dir and config_path.is_file() else None


def chosen_boxes(detections, crop_config: cfg.CropConfig) -> tuple[pd.DataFrame, float, str]:
    """(the boxes that become crops, with `ordinal` = index in their image's MD list; the threshold
    used; where it came from: the config, the MD file's typical threshold, or the default)."""
    threshold, source = detections.threshold(crop_config.threshold)
    boxes = detections.boxes.assign(ordinal=detections.boxes.groupby("image").cumcount())
    return crops.select_boxes(boxes, crop_config.category, threshold, crop_config.select), threshold, source


def md_rows(paths: pd.Series, detections, root: Path) -> pd.Series:
    """The MD image row of each input path (NaN when the MD file does not list it)."""
    md = detections.images
    first = ~md["file"].duplicated(keep="first")
    row_of = pd.Series(md.index[first], index=md.loc[first, "file"].to_numpy())
    return relative_posix(paths.astype(str), root).map(row_of)


def plan_images(frame: pd.DataFrame, detections, crop_config: cfg.CropConfig, root: Path) -> pd.DataFrame:
    """Per input image: status (classify / empty / skip), error, max_detection_conf and its boxes."""
    crops.check_category(detections, crop_config.category)
    md = detections.images
    md_row = md_rows(frame["path"], detections, root)
    boxes = detections.boxes
    usable = boxes[(boxes["problem"] == "") & (boxes["category"].astype(str) == crop_config.category)]
    max_conf = usable.groupby("image")["conf"].max()
    chosen = chosen_boxes(detections, crop_config)[0]
    by_image = {image: part[["x", "y", "w", "h", "conf"]].to_numpy(dtype=np.float64)
                for image, part in chosen.groupby("image")}
    plan = frame.copy()
    plan["md_row"] = md_row
    plan["max_detection_conf"] = [round(float(max_conf.get(r, 0.0)), 6) if r == r else 0.0 for r in md_row]
    plan["boxes"] = [by_image.get(r) if r == r else None for r in md_row]
    failures = md["failure"]
    plan["error"] = ["not in the detections file" if r != r else
                     (f"detector failure: {failures[int(r)]}" if failures[int(r)] else "") for r in md_row]
    plan["status"] = np.where(plan["error"] != "", "skip",
                              np.where(plan["boxes"].map(lambda b: b is not None), "classify", EMPTY))
    return plan


def _cut(row, stored_size: int, input_size: int, crop_config: cfg.CropConfig):
    """(eval views of the usable crops, their box rows, error text) for one image."""
    from serengeti_tf.data import pipeline

    try:
        cut = crops.cut_crops(str(row.file), row.boxes[:, :4], stored_size, crop_config.padding,
                              crop_config.square, crop_config.min_size)
    except FileNotFoundError:
        return [], [], "file not found"
    except images.CorruptImageError as err:
        return [], [], "unreadable image: " + str(err).replace(f"{row.file}: ", "")
    views, kept = [], []
    for index, (crop, box) in enumerate(zip(cut, row.boxes)):
        if not isinstance(crop, str):
            views.append(np.asarray(pipeline.eval_transform(np.asarray(crop), input_size)))
            kept.append((index, *box))
    return views, kept, ""


def _image_rows(chunk: pd.DataFrame, probs_per_image: list, class_names: Sequence[str], top_k: int) -> pd.DataFrame:
    names = np.asarray(class_names, dtype=object)
    classified = [p is not None for p in probs_per_image]
    probs = np.stack([p if p is not None else np.zeros(len(class_names)) for p in probs_per_image])
    top = top_k_frame(probs, class_names, top_k)
    top.loc[~np.asarray(classified)] = np.nan
    head = pd.DataFrame({
        "path": chunk["path"].to_numpy(), "capture_id": chunk["capture_id"].to_numpy(),
        "status": np.where(classified, "classified", EMPTY),
        "num_crops": chunk["num_crops"].to_numpy(), "max_detection_conf": chunk["max_detection_conf"].to_numpy(),
        "predicted": np.where(classified, names[probs.argmax(axis=1)], EMPTY),
        "confidence": np.where(classified, np.round(probs.max(axis=1), 6), np.nan)})
    out = pd.concat([head, top], axis=1)
    out["probs"] = [" ".join(f"{v:.6g}" for v in p) if p is not None else "" for p in probs_per_image]
    return out


def classify_crop_batches(model, plan: pd.DataFrame, class_names: Sequence[str], stored_size: int, input_size: int,
                          crop_config: cfg.CropConfig, top_k: int, batch_size: int, on_batch,
                          on_event: events.EventSink = events.ignore) -> None:
    """A batch of images at a time: cut their crops (threads), classify, combine per image, hand the
    image rows, crop rows and skipped rows to `on_batch`; the images done go to `on_event`."""
    names = np.asarray(class_names, dtype=object)
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool, \
            events.Tracker(on_event, "predict crops", len(plan), "img") as bar:
        for start in range(0, len(plan), batch_size):
            chunk = plan.iloc[start:start + batch_size].copy()
            skipped = chunk[chunk["status"] == "skip"][["path", "error"]]
            todo = chunk[chunk["status"] != "skip"]
            cut = list(pool.map(lambda r: _cut(r, stored_size, input_size, crop_config) if r.status == "classify"
                                else ([], [], ""), todo.itertuples(index=False)))
            unreadable = [(p, c[2]) for p, c in zip(todo["path"], cut) if c[2]]
            skipped = pd.concat([skipped, pd.DataFrame(unreadable, columns=["path", "error"])], ignore_index=True)
            readable = np.array([not c[2] for c in cut], dtype=bool)
            todo, cut = todo.loc[readable].copy(), [c for c, ok in zip(cut, readable) if ok]
            views = [v for c in cut for v in c[0]]
            crop_probs = (softmax(np.asarray(model(np.stack(views), training=False))) if views
                          else np.zeros((0, len(names))))
            owners = np.repeat(np.arange(len(cut)), [len(c[0]) for c in cut])
            crop_meta = pd.DataFrame([(path, *box) for path, c in zip(todo["path"], cut) for box in c[1]],
                                     columns=["path", "crop", "box_x", "box_y", "box_w", "box_h", "detection_conf"])
            crop_rows = pd.DataFrame()
            per_image: list = [None] * len(todo)
            if len(views):
                crop_meta["crop"] = crop_meta["crop"].astype(int)
                crop_rows = pd.concat([crop_meta.round(6), pd.DataFrame({
                    "predicted": names[crop_probs.argmax(axis=1)],
                    "confidence": np.round(crop_probs.max(axis=1), 6)}), top_k_frame(crop_probs, class_names, top_k)],
                    axis=1)
                combined = combine(owners.astype(str), crop_probs, np.clip(crop_meta["detection_conf"], 1e-6, None))
                for key, p in zip(combined["keys"], combined["probs"]):
                    per_image[int(key)] = p
            todo["num_crops"] = [len(c[0]) for c in cut]
            image_rows = _image_rows(todo, per_image, class_names, top_k) if len(todo) else pd.DataFrame()
            on_batch(image_rows, crop_rows, skipped)
            bar.advance(len(chunk))


def _finish(paths: dict[str, Path], class_names: Sequence[str], top_k: int, has_captures: bool) -> dict[str, int]:
    def read(key: str, dtype=None) -> pd.DataFrame:
        path = paths[key]
        if path.is_file() and path.stat().st_size:
            return pd.read_csv(path, dtype=dtype, keep_default_na=False)
        return pd.DataFrame()

    images = read("partial", {"path": str, "capture_id": str, "probs": str})
    crop_rows = read("partial_crops", {"path": str})
    skipped = read("partial_skipped", str)
    if len(images):
        images = images.drop_duplicates("path", keep="last")
    if len(crop_rows):
        # A run stopped between the two appends leaves crops of an image without its image row.
        crop_rows = crop_rows[crop_rows["path"].isin(set(images.get("path", [])))]
        crop_rows = crop_rows.drop_duplicates(["path", "crop"], keep="last")
    captures = None
    if has_captures and len(images):
        rows = []
        for capture, part in images[images["capture_id"] != ""].groupby("capture_id", sort=False):
            done = part[part["status"] == "classified"]
            probs = (np.mean([np.array(t.split(), dtype=np.float64) for t in done["probs"]], axis=0)
                     if len(done) else None)
            rows.append((capture, len(part), len(done), probs))
        probs = np.stack([r[3] if r[3] is not None else np.zeros(len(class_names)) for r in rows]) \
            if rows else np.zeros((0, len(class_names)))
        known = np.array([r[3] is not None for r in rows], dtype=bool)
        names = np.asarray(class_names, dtype=object)
        top = top_k_frame(probs, class_names, top_k)
        top.loc[~known] = np.nan
        captures = pd.concat([pd.DataFrame({
            "capture_id": [r[0] for r in rows], "num_images": [r[1] for r in rows],
            "num_classified": [r[2] for r in rows],
            "predicted": np.where(known, names[probs.argmax(axis=1)] if rows else [], EMPTY),
            "confidence": np.where(known, np.round(probs.max(axis=1), 6) if rows else [], np.nan)}), top], axis=1)
    out_images = images.drop(columns=["probs"] + ([] if has_captures else ["capture_id"])) if len(images) else images
    io_utils.write_csv(paths["predictions"], out_images)
    io_utils.write_csv(paths["crops"], crop_rows)
    io_utils.write_csv(paths["skipped"], skipped if len(skipped) else pd.DataFrame(columns=["path", "error"]))
    if captures is not None:
        io_utils.write_csv(paths["captures"], captures)
    for key in ("partial", "partial_crops", "partial_skipped", "partial_meta"):
        paths[key].unlink(missing_ok=True)
    status = images["status"].value_counts() if len(images) else {}
    return {"classified": int(status.get("classified", 0)), "empty": int(status.get(EMPTY, 0)),
            "crops": int(len(crop_rows)), "skipped": int(len(skipped)),
            "captures": 0 if captures is None else int(len(captures))}


def predict_detections(model_or_run: str | Path, inputs: str | Path | Sequence[str | Path], detections_path: str | Path,
                       out_csv: str | Path, crop_config: Optional[cfg.CropConfig] = None, top_k: int = 5,
                       batch_size: int = 32, capture_ids: Mapping[str, str] | str | Path | None = None,
                       classes: Optional[str | Path] = None, image_size: Optional[int] = None,
                       config: Optional[cfg.Config] = None, overwrite: bool = False, strip_prefix: str = "",
                       md_out: Optional[str | Path] = None, group_by_time: Optional[float] = None,
                       describe: Optional[Callable[[str], str]] = None,
                       allow_outside_root: bool = False,
                       on_event: events.EventSink = events.ignore) -> dict[str, Any]:
    """Classifies the detector crops of `inputs` (see the module doc), progress to `on_event`.
    `crop_config` defaults to the run's dataset settings, else `data.crops` defaults. Returns counts
    and the output paths.

    `strip_prefix`: removed from the MD file's paths; `md_out`: also write the MD file with the
    classifications added; `describe(class name)`: its description there (a scientific name; None
    leaves the class name; default: `species.scientific_names`); `group_by_time`: captures from EXIF
    times (`exif_captures`)."""
    check_request(top_k, batch_size, image_size)
    reads = input_paths(model_or_run, inputs, classes, capture_ids, **{setting("detections"): detections_path})
    job = output_job(out_csv, reads)
    job.check_inputs()
    if md_out is not None:
        md_out = md_output.output_path(md_out)
        io_utils.refuse_overlap(md_out, reads, what=setting("md_out"))
    crop_config = crop_config or run_crop_config(model_or_run) or cfg.CropConfig()
    paths = output_paths(out_csv)
    outputs = PredictOutputs(Path(out_csv))
    paths.update(crops=outputs.crops, partial_crops=outputs.partial_crops)
    refuse_foreign_outputs(paths)
    with job.lock():
        resolved = resolve_model(model_or_run, classes, image_size)
        frame, exif_counts = input_frame(inputs, capture_ids, group_by_time, allow_outside_root)
        root = Path(inputs).parent if not isinstance(inputs, (list, tuple)) and Path(inputs).is_file() else \
            Path(inputs) if not isinstance(inputs, (list, tuple)) else Path(".")
        found = detections.read_detections(detections_path, root, strip_prefix=strip_prefix)
        threshold, threshold_source = chosen_boxes(found, crop_config)[1:]
        notes = list(found.notes) + ([f"{detections_path} lists no images (an empty 'images' list): every input "
                                      f"is skipped as not in the detections file"] if found.images.empty else [])
        extra = {"threshold": threshold, "threshold_source": threshold_source, "notes": notes,
                 "exif_captures": exif_counts}

        def finish(result: dict) -> dict:
            if md_out is not None:
                # MD descriptions default to scientific names (the shipped table, or eval.scientific_names).
                names = describe or species.scientific_names(
                    resolved["class_names"], config.eval.scientific_names if config else None).get
                result["md_out"] = _write_md_out(found, frame, root, crop_config, resolved,
                                                 Path(result["outputs"]["crops"]), md_out, names,
                                                 io_utils.text_digest(json.dumps(fingerprint, sort_keys=True)))
                result["outputs"] = {**result["outputs"], "md_out": str(md_out)}
            return result

        has_captures = bool((frame["capture_id"] != "").any())
        fingerprint = {"kind": "serengeti-tf predict --detections",
                       "model_sha256": io_utils.file_digest(resolved["model_path"]),
                       "classes": resolved["class_names"], "stored_size": resolved["stored_size"], "top_k": top_k,
                       "inputs": _input_digest(frame), "num_inputs": len(frame),
                       "detections_sha256": io_utils.file_digest(detections_path), "crops": cfg.to_dict(cfg.Config(
                           data=cfg.DataConfig(crops=crop_config)))["data"]["crops"]}
        if md_out is not None and md_out.exists() and not overwrite:
            md_output.check_replaceable(md_out, io_utils.text_digest(json.dumps(fingerprint, sort_keys=True)))
        if paths["predictions"].exists():
            meta = io_utils.read_json(paths["meta"]) if paths["meta"].is_file() else {}
            if io_utils.same_json(meta.get("fingerprint"), fingerprint) and not overwrite:
                return finish({**meta, **extra, "already_done": True})
            if not overwrite:
                raise UserError(f"{paths['predictions']} already exists (other model, inputs, detections or settings); "
                                f"choose another output or pass {setting('overwrite')}")
        model = load_classifier(resolved["model_path"])
        input_size = int(model.input_shape[1])
        if int(model.output_shape[-1]) != len(resolved["class_names"]):
            raise UserError(f"{resolved['class_map']} lists {len(resolved['class_names'])} classes but the model "
                            f"outputs {int(model.output_shape[-1])}; pass the class map of the run that trained it")
        stored_size = resolved["stored_size"] or input_size
        done = _start_or_resume(paths, fingerprint, overwrite)
        if not done:
            paths["partial_crops"].unlink(missing_ok=True)
        plan = plan_images(frame, found, crop_config, root)
        todo = plan[~plan["path"].isin(done)] if done else plan

        def on_batch(image_rows: pd.DataFrame, crop_rows: pd.DataFrame, skipped: pd.DataFrame) -> None:
            if len(crop_rows):  # crops first: an image row marks the image done
                _append(paths["partial_crops"], crop_rows)
            if len(image_rows):
                _append(paths["partial"], image_rows)
            if len(skipped):
                _append(paths["partial_skipped"], skipped)

        classify_crop_batches(model, todo, resolved["class_names"], stored_size, input_size, crop_config, top_k,
                              batch_size, on_batch, on_event)
        counts = _finish(paths, resolved["class_names"], top_k, has_captures)
        if config is not None:
            cfg.save_config(config, paths["config"].parent, name=paths["config"].name)
        outputs = {k: str(paths[k]) for k in ("predictions", "crops", "skipped", "meta")}
        if has_captures:
            outputs["captures"] = str(paths["captures"])
        meta = {"model": str(resolved["model_path"]), "classes": resolved["class_names"],
                "detections": str(detections_path),
                "image_combination": "detector-confidence-weighted mean of the crops' class probabilities",
                "stored_image_size": stored_size, "input_size": input_size, "images": len(frame), **counts,
                "outputs": outputs, "fingerprint": fingerprint}
        io_utils.write_json(paths["meta"], meta)
        return finish({**meta, **extra, "already_done": False, "resumed": bool(done)})


def _write_md_out(found, frame: pd.DataFrame, root: Path, crop_config: cfg.CropConfig, resolved: dict,
                  crops_csv: Path, md_out: Path, describe, digest: str) -> dict[str, int]:
    """Writes `md_out` from the finished OUT.crops.csv (so a rerun that finds the CSVs done writes it too)."""
    chosen, threshold, _ = chosen_boxes(found, crop_config)
    rows = md_rows(frame["path"], found, root)
    row_of_path = {p: int(r) for p, r in zip(frame["path"].astype(str), rows) if r == r}
    crop_rows = pd.read_csv(crops_csv, dtype={"path": str}, keep_default_na=False) \
        if crops_csv.is_file() and crops_csv.stat().st_size else pd.DataFrame()
    added = md_output.classifications_by_detection(crop_rows, chosen, row_of_path, resolved["class_names"])
    metadata = {"model": str(resolved["model_path"]), "detection_category": crop_config.category,
                "detection_threshold": threshold, "select": crop_config.select,
                "image_combination": "detector-confidence-weighted mean of the crops' class probabilities",
                md_output.DIGEST_KEY: digest}
    return md_output.write_md_output(found.source, md_out, added, resolved["class_names"],
                                     classifier=f"serengeti-tf {serengeti_tf.__version__} "
                                                f"({Path(resolved['model_path']).name})",
                                     classifier_metadata=metadata, describe=describe,
                                     files=found.images["file"].tolist())


def summary_text(result: Mapping[str, Any]) -> str:
    lines = [f"{result['images']} images: {result['classified']} classified from {result['crops']} crops, "
             f"{result['empty']} empty (no detection), {result['skipped']} skipped"
             + (f", {result['captures']} captures" if result.get("captures") else "")
             + (" (already done)" if result.get("already_done") else "")]
    if result.get("threshold") is not None:
        lines.append(f"detection threshold {result['threshold']:g} (from {result['threshold_source']})")
    lines += [f"note: {note}" for note in result.get("notes", [])]
    if result.get("exif_captures"):
        lines.append(describe(result["exif_captures"]))
    if result.get("md_out"):
        md = result["md_out"]
        lines.append(f"MegaDetector file: {md['classified_detections']} of {md['detections']} detections on "
                     f"{md['images']} images classified")
    lines += [f"{name}: {path}" for name, path in result["outputs"].items()]
    return "\n".join(lines)
