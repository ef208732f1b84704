"""`predict`: classify a folder or a list of images with a trained model, in bounded memory.

Outputs, for `-o OUT.csv` (`OUT` = the path without `.csv`):

    OUT.csv            path, [capture_id], predicted, confidence, top1_species, top1_prob, ... topK
    OUT.skipped.csv    path, error  - every input that could not be read, with the reason
    OUT.captures.csv   capture_id, num_images, predicted, confidence, top-k  (when capture ids are known:
                       the capture's images' probabilities are averaged, as in `evaluate`)
    OUT.config.yaml    the resolved config;  OUT.meta.json  model, classes, image sizes, counts

Images are decoded like `prepare` stores them (`images.load_image` to the dataset's stored size:
DCT-scaled decode, EXIF orientation, RGB) and then take the evaluation view
(`pipeline.eval_transform`), so a model sees the same pixels it was evaluated on.

Memory stays bounded: one batch of images at a time; rows go to a hidden work file
(`.OUT.csv.partial`) as they are classified. An interrupted run continues from that file when
rerun with the same model and inputs; the final files appear (renamed into place) only at the end.

Capture ids come from a `capture_id` (or `seq_id`) column of a CSV input, from `capture_ids`
(a mapping or a CSV with path and capture_id), or from EXIF times (`group_by_time` seconds,
`exif_captures`; not together with `capture_ids`). They are not guessed from file names: LILA names
(`S9_<site>_R<roll>_IMAG<nnnn>.JPG`) number images, not captures.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import events, io_utils
from serengeti_tf.data import dataset as ds
from serengeti_tf.data import images
from serengeti_tf.data.class_map import ClassMap, require_same_classes
from serengeti_tf.data.images import CorruptImageError
from serengeti_tf.data.sources.camtrap_dp import media_table
from serengeti_tf.data.sources.root import is_inside
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate.evaluation import softmax, top_k_frame
from serengeti_tf.evaluate.exif_captures import attach_time_captures, check_seconds, describe
from serengeti_tf.evaluate.run_reader import read_lineage
from serengeti_tf.io_utils import file_digest
from serengeti_tf.run_folder import CLASS_MAP, MODEL, DatasetFolder, OutputJob, PredictOutputs, RunFolder

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PATH_COLUMNS = ("path", "filepath", "file_path", "file_name", "image_path_rel", "image_path")
CAPTURE_COLUMNS = ("capture_id", "seq_id")
DECODE_THREADS = 4


# ----------------------------------------------------------------------------------------------
# Model and inputs
# ----------------------------------------------------------------------------------------------

def load_classifier(model_path: Path):
    """The Keras model of a run or a bare `.keras` file, also one written by `export --format keras`."""
    import serengeti_tf.models.export  # noqa: F401  (registers the EvalPreprocessing layer it may contain)
    from serengeti_tf.models.resnet import load_model

    return load_model(model_path)


def resolve_model(model_or_run: str | Path, classes: Optional[str | Path] = None,
                  image_size: Optional[int] = None) -> dict[str, Any]:
    """Model file, class names and stored image size for a run folder or a bare `.keras` file.

    A run folder supplies model.keras, class_map.json and the stored size of its dataset
    (lineage.json -> dataset config.yaml, else the run's data.image_size). A bare `.keras` file
    needs `classes` (a class_map.json); its stored size defaults to the model's input size.
    """
    source = Path(model_or_run)
    if source.is_dir():
        model_path = RunFolder(source).model
        if not model_path.is_file():
            raise UserError(f"{source} is a folder without {MODEL}; give a training run folder or a .keras file")
        class_map = Path(classes) if classes else RunFolder(source).class_map
        if not class_map.is_file():
            raise UserError(f"{source}: {CLASS_MAP} missing; pass {setting('classes')} {CLASS_MAP}")
        if classes:  # a run's own map is the truth: another one would name every prediction wrongly
            require_same_classes(ClassMap.read(source).names, f"the run {source}", ClassMap.read(classes).names,
                                 f"{setting('classes')} {classes}")
        size = image_size or _run_stored_size(source)
    elif source.is_file():
        if source.suffix != ".keras":
            raise UserError(f"model must be a training run folder or a .keras file, got {source}")
        if classes is None:
            raise UserError(f"{source} is a bare .keras file: pass {setting('classes')} class_map.json "
                            f"(from its run or prepared dataset) so predictions have species names")
        model_path, class_map, size = source, Path(classes), image_size
        if not class_map.is_file():
            raise UserError(f"{setting('classes')} file not found: {class_map}")
    else:
        raise UserError(f"model not found: {source} (expected a training run folder or a .keras file)")
    if size is not None and size < 1:
        raise UserError(f"image size must be >= 1 pixel, got {size}")
    return {"model_path": model_path, "class_names": ClassMap.read(class_map).names,
            "class_map": class_map, "stored_size": size}


def _run_stored_size(run_dir: Path) -> Optional[int]:
    """Shorter side of the images the run was trained on (its prepared dataset's data.image_size)."""
    try:
        dataset_dir = read_lineage(run_dir).dataset_dir
    except UserError:
        dataset_dir = None
    if dataset_dir and DatasetFolder(Path(dataset_dir)).config.is_file():
        return ds.stored_image_size(dataset_dir)
    if RunFolder(run_dir).config.is_file():
        return cfg.load_saved(RunFolder(run_dir).config).data.image_size
    return None


def _pick_column(frame: pd.DataFrame, names: Sequence[str]) -> Optional[str]:
    lower = {c.lower(): c for c in frame.columns}
    return next((lower[n] for n in names if n in lower), None)


def _resolve(entry: str, base: Path) -> Path:
    """A listed path: absolute as is; relative to the list's folder, else to the working folder."""
    path = Path(entry)
    if path.is_absolute():
        return path
    return base / path if (base / path).exists() or not path.exists() else path


def list_inputs(inputs: str | Path | Sequence[str | Path], allow_outside_root: bool = False) -> pd.DataFrame:
    """Input images as a frame: `path` (as listed, or relative to the folder), `file` (to open),
    `capture_id` ('' when unknown).

    `inputs`: a folder (searched recursively for image files), a CSV with a path column (`path`,
    `filepath`, `file_name` or `image_path_rel`) and optionally `capture_id`/`seq_id`, a text file
    with one path per line (`#` comments allowed), a Camtrap DP `datapackage.json` (its image media,
    paths relative to the package folder, capture = eventID), or a list of paths. A folder's or list
    file's entries must lie inside that folder (the list's own folder), symlinks followed, unless
    `allow_outside_root` (`data/sources/root.py`); a list of paths given in code is not checked.
    """
    if isinstance(inputs, (list, tuple)):
        paths = [str(p) for p in inputs]
        frame = pd.DataFrame({"path": paths, "file": [Path(p) for p in paths], "capture_id": ""})
    else:
        source = Path(inputs)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            frame = pd.DataFrame({"path": [p.relative_to(source).as_posix() for p in files], "file": files,
                                  "capture_id": ""})
        elif source.is_file() and source.name.lower() == "datapackage.json":
            frame = media_table(source)[["path", "file", "capture_id"]]
        elif source.is_file() and source.suffix.lower() == ".csv":
            table = read_list_csv(source)
            column = _pick_column(table, PATH_COLUMNS)
            if column is None:
                raise UserError(f"{source}: no path column (expected one of {', '.join(PATH_COLUMNS)}), "
                                f"got columns {', '.join(table.columns)}")
            capture = _pick_column(table, CAPTURE_COLUMNS)
            frame = pd.DataFrame({"path": table[column], "file": [_resolve(p, source.parent) for p in table[column]],
                                  "capture_id": table[capture] if capture else ""})
        elif source.is_file():
            lines = [line.strip() for line in read_list_text(source).splitlines()]
            paths = [line for line in lines if line and not line.startswith("#")]
            frame = pd.DataFrame({"path": paths, "file": [_resolve(p, source.parent) for p in paths],
                                  "capture_id": ""})
        else:
            raise UserError(f"input not found: {source} (expected a folder, a CSV or a text file listing images)")
    if frame.empty:
        raise UserError(f"no images found in {inputs if not isinstance(inputs, (list, tuple)) else 'the given list'} "
                        f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    if not isinstance(inputs, (list, tuple)) and not allow_outside_root:
        refuse_outside(frame, Path(inputs) if Path(inputs).is_dir() else Path(inputs).parent)
    duplicated = frame["path"][frame["path"].duplicated()]
    if not duplicated.empty:
        raise UserError(f"input lists {duplicated.iloc[0]} more than once; each image must appear once")
    return frame.reset_index(drop=True)


def read_list_text(path: Path) -> str:
    """A text list of paths; a binary or non-UTF-8 file is a one-line UserError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not a UTF-8 text list of image paths (byte {err.object[err.start]:#04x} at "
                        f"offset {err.start}); give a folder, a CSV or a text file") from None
    if "\x00" in text:
        raise UserError(f"{path} is a binary file, not a text list of image paths; give a folder, a CSV or a text file")
    return text


def read_list_csv(path: str | Path) -> pd.DataFrame:
    """A CSV of paths (and capture ids), as strings; an unreadable or binary file is a one-line UserError."""
    read_list_text(Path(path))  # refuses binary and non-UTF-8 content with its own message
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path} is not a readable CSV: {str(err).splitlines()[0]}") from None


def refuse_outside(frame: pd.DataFrame, root: Path) -> None:
    """Refuses a listing with entries outside `root` (absolute, `..`, symlinks leading out)."""
    outside = [p for p, f in zip(frame["path"], frame["file"]) if not is_inside(f, root)]
    if outside:
        raise UserError(f"{len(outside)} listed image(s) lie outside {root} (first: {outside[0]}); predict reads "
                        f"only images inside the input's folder unless {setting('allow_outside_root')}")


def attach_capture_ids(frame: pd.DataFrame, capture_ids: Mapping[str, str] | str | Path | None) -> pd.DataFrame:
    """Fills `capture_id` from a mapping (path -> id) or a CSV (path and capture_id columns).

    A listed path matches a key by its text, its absolute path, or (if unique) its file name.
    """
    if capture_ids is None:
        return frame
    if isinstance(capture_ids, (str, Path)):
        table = read_list_csv(capture_ids)
        path_col, capture_col = _pick_column(table, PATH_COLUMNS), _pick_column(table, CAPTURE_COLUMNS)
        if path_col is None or capture_col is None:
            raise UserError(f"{capture_ids}: needs a path column and a capture_id column, "
                            f"got columns {', '.join(table.columns)}")
        mapping = dict(zip(table[path_col], table[capture_col]))
    else:
        mapping = {str(k): str(v) for k, v in capture_ids.items()}
    by_abs = {str(Path(k).resolve()): v for k, v in mapping.items() if Path(k).is_absolute()}
    names = pd.Series([Path(k).name for k in mapping])
    unique_names = {Path(k).name: v for k, v in mapping.items() if (names == Path(k).name).sum() == 1}
    frame = frame.copy()
    found = []
    for path, file in zip(frame["path"], frame["file"]):
        found.append(mapping.get(path) or by_abs.get(str(Path(file).resolve()))
                     or unique_names.get(Path(path).name, ""))
    frame["capture_id"] = found
    missing = int((frame["capture_id"] == "").sum())
    if missing:
        log.warning("%d of %d images have no capture id; they are left out of the capture table", missing, len(frame))
    return frame


def input_frame(inputs, capture_ids, group_by_time: Optional[float],
                allow_outside_root: bool = False) -> tuple[pd.DataFrame, Optional[dict]]:
    """`list_inputs` with capture ids from `capture_ids` or from EXIF times (`group_by_time` seconds);
    the second item counts the EXIF grouping (None without it)."""
    if group_by_time is not None and capture_ids is not None:
        raise UserError(f"{setting('group_by_time')} and {setting('captures')} both give capture ids: use one of them")
    if group_by_time is None:
        return attach_capture_ids(list_inputs(inputs, allow_outside_root), capture_ids), None
    check_seconds(group_by_time)  # before listing the inputs
    return attach_time_captures(list_inputs(inputs, allow_outside_root), group_by_time)


# ----------------------------------------------------------------------------------------------
# Reading and classifying
# ----------------------------------------------------------------------------------------------

def read_image(file: Path, stored_size: int, input_size: int) -> np.ndarray:
    """Decodes like `prepare` (stored size) and returns the evaluation view [S, S, 3] float32."""
    from serengeti_tf.data import pipeline

    pixels = images.load_image(file, stored_size)
    return np.asarray(pipeline.eval_transform(pixels, input_size))


def _read_or_reason(file: Path, stored_size: int, input_size: int) -> tuple[Optional[np.ndarray], str]:
    try:
        return read_image(file, stored_size, input_size), ""
    except FileNotFoundError:
        return None, "file not found"
    except CorruptImageError as err:
        return None, "unreadable image: " + str(err).replace(f"{file}: ", "")
    except (OSError, ValueError) as err:
        return None, f"unreadable image: {type(err).__name__}: {err}"


def _input_digest(frame: pd.DataFrame) -> str:
    text = "\n".join(f"{p}\t{c}" for p, c in zip(frame["path"], frame["capture_id"]))
    return io_utils.text_digest(text)


def output_paths(out_csv: str | Path) -> dict[str, Path]:
    """The files `predict_images` writes for `out_csv`, and its hidden work files (`PredictOutputs`)."""
    return PredictOutputs(Path(out_csv)).as_dict()


def _start_or_resume(paths: dict[str, Path], fingerprint: dict, overwrite: bool) -> set[str]:
    """Paths already done by an interrupted run with the same fingerprint (else, or with
    `overwrite`, starts clean)."""
    same = (not overwrite and paths["partial_meta"].is_file()
            and io_utils.same_json(io_utils.read_json(paths["partial_meta"]), fingerprint))
    if not same:
        for key in ("partial", "partial_skipped"):
            paths[key].unlink(missing_ok=True)
        io_utils.write_json(paths["partial_meta"], fingerprint)
        return set()
    done: set[str] = set()
    for key in ("partial", "partial_skipped"):
        if paths[key].is_file() and paths[key].stat().st_size:
            done.update(pd.read_csv(paths[key], dtype=str, keep_default_na=False, usecols=["path"])["path"])
    return done


def _append(path: Path, frame: pd.DataFrame) -> None:
    """Appends rows to a work file (header only when new), flushed so an interruption keeps them."""
    header = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8", newline="") as f:
        frame.to_csv(f, header=header, index=False)
        f.flush()
        os.fsync(f.fileno())


def classify_batches(model, frame: pd.DataFrame, class_names: Sequence[str], stored_size: int, input_size: int,
                     top_k: int, batch_size: int, on_batch: Callable[[pd.DataFrame, pd.DataFrame], None],
                     on_event: events.EventSink = events.ignore) -> None:
    """Reads `frame`'s images a batch at a time (decoding in threads) and hands each batch's
    predictions and skipped rows to `on_batch`. Probabilities are kept (column `probs`, space-
    separated) only for rows with a capture id, for the capture averages. The images done are
    reported to `on_event` ("predict")."""
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool, \
            events.Tracker(on_event, "predict", len(frame), "img") as bar:
        for start in range(0, len(frame), batch_size):
            chunk = frame.iloc[start:start + batch_size]
            loaded = list(pool.map(lambda f: _read_or_reason(Path(f), stored_size, input_size), chunk["file"]))
            ok = np.array([image is not None for image, _ in loaded], dtype=bool)
            skipped = pd.DataFrame({"path": chunk["path"].to_numpy()[~ok],
                                    "error": [reason for image, reason in loaded if image is None]})
            for path, reason in zip(skipped["path"], skipped["error"]):
                log.warning("skipped %s: %s", path, reason)
            predictions = pd.DataFrame()
            if ok.any():
                batch = np.stack([image for image, _ in loaded if image is not None])
                probs = softmax(np.asarray(model(batch, training=False)))
                kept = chunk[ok].reset_index(drop=True)
                predictions = pd.concat([
                    pd.DataFrame({"path": kept["path"], "capture_id": kept["capture_id"],
                                  "predicted": np.asarray(class_names, dtype=object)[probs.argmax(axis=1)],
                                  "confidence": np.round(probs.max(axis=1), 6)}),
                    top_k_frame(probs, class_names, top_k)], axis=1)
                predictions["probs"] = [" ".join(f"{p:.6g}" for p in row) if c else ""
                                        for row, c in zip(probs, kept["capture_id"])]
            on_batch(predictions, skipped)
            bar.advance(len(chunk))


def _finish(paths: dict[str, Path], class_names: Sequence[str], top_k: int, has_captures: bool,
            chunk_rows: int = 50_000) -> dict[str, int]:
    """Streams the work file into the final CSVs (dropping `probs`) and the capture averages."""
    sums: dict[str, np.ndarray] = {}
    frames: dict[str, int] = {}
    classified = 0
    with io_utils.atomic_path(paths["predictions"]) as tmp:
        if paths["partial"].is_file() and paths["partial"].stat().st_size:
            first = True
            for chunk in pd.read_csv(paths["partial"], dtype={"path": str, "capture_id": str, "probs": str},
                                     keep_default_na=False, chunksize=chunk_rows):
                classified += len(chunk)
                if has_captures:
                    for capture, text in zip(chunk["capture_id"], chunk["probs"]):
                        if capture:
                            vector = np.array(text.split(), dtype=np.float64)
                            sums[capture] = sums.get(capture, 0) + vector
                            frames[capture] = frames.get(capture, 0) + 1
                out = chunk.drop(columns=["probs"] + ([] if has_captures else ["capture_id"]))
                out.to_csv(tmp, mode="a", header=first, index=False)
                first = False
        else:
            columns = ["path"] + (["capture_id"] if has_captures else []) + ["predicted", "confidence"]
            columns += [f"top{j}_{k}" for j in range(1, min(top_k, len(class_names)) + 1) for k in ("species", "prob")]
            pd.DataFrame(columns=columns).to_csv(tmp, index=False)
    skipped = (pd.read_csv(paths["partial_skipped"], dtype=str, keep_default_na=False)
               if paths["partial_skipped"].is_file() and paths["partial_skipped"].stat().st_size
               else pd.DataFrame(columns=["path", "error"]))
    io_utils.write_csv(paths["skipped"], skipped)
    if has_captures:
        ids = list(sums)
        probs = np.stack([sums[c] / frames[c] for c in ids]) if ids else np.zeros((0, len(class_names)))
        table = pd.concat([pd.DataFrame({"capture_id": ids, "num_images": [frames[c] for c in ids],
                                         "predicted": np.asarray(class_names, dtype=object)[probs.argmax(axis=1)]
                                         if ids else [],
                                         "confidence": np.round(probs.max(axis=1), 6) if ids else []}),
                           top_k_frame(probs, class_names, top_k)], axis=1)
        io_utils.write_csv(paths["captures"], table)
    for key in ("partial", "partial_skipped", "partial_meta"):
        paths[key].unlink(missing_ok=True)
    return {"classified": classified, "skipped": len(skipped), "captures": len(sums)}


def check_request(top_k: int, batch_size: int, image_size: Optional[int]) -> None:
    """The numeric options of both predict paths, checked before any work."""
    if top_k < 1:
        raise UserError(f"{setting('top_k')} must be >= 1, got {top_k}")
    if not 1 <= batch_size <= cfg.BATCH_SIZE_LIMIT:
        raise UserError(f"{setting('batch_size')} must be an int in [1, {cfg.BATCH_SIZE_LIMIT}], got {batch_size}")
    low, high = cfg.IMAGE_SIZE_RANGE
    if image_size is not None and not low <= image_size <= high:
        raise UserError(f"{setting('image_size')} must be an int in [{low}, {high}] (as for prepare), got {image_size}")


def input_paths(model_or_run, inputs, classes, capture_ids, **extra) -> dict:
    """What predict reads, as `io_utils.refuse_overlap` takes it: the output may be none of these."""
    return {"MODEL_OR_RUN": model_or_run, "INPUT": inputs, setting("classes"): classes,
            setting("captures"): capture_ids if isinstance(capture_ids, (str, Path)) else None, **extra}


# Fingerprint kinds of the two predict paths (plain and --detections): either may replace the other's files.
PREDICT_KINDS = ("serengeti-tf predict", "serengeti-tf predict --detections")


def refuse_foreign_outputs(paths: dict[str, Path]) -> None:
    """Refuses to replace an existing output file predict did not write (the user's my.csv, a dataset's
    manifest.csv), `--overwrite` or not."""
    io_utils.refuse_foreign_files([p for k, p in paths.items() if not k.startswith("partial")],
                                  [paths["meta"], paths["partial_meta"]], PREDICT_KINDS, "serengeti-tf predict")


def output_job(out_csv: str | Path, inputs: dict) -> OutputJob:
    """The output job of an output CSV: `inputs` may not overlap it; its lock sits beside it, as a
    hidden file of its own."""
    return OutputJob(out_csv, "predictions", inputs=inputs, what="output", lock_beside=True)


def output_csv_lock(paths: dict):
    """One process per output CSV: the lock sits beside it, as a hidden file of its own."""
    return output_job(paths["predictions"], {}).lock()


def predict_images(model_or_run: str | Path, inputs: str | Path | Sequence[str | Path], out_csv: str | Path,
                   top_k: int = 5, batch_size: int = 32, capture_ids: Mapping[str, str] | str | Path | None = None,
                   classes: Optional[str | Path] = None, image_size: Optional[int] = None,
                   config: Optional[cfg.Config] = None, overwrite: bool = False,
                   group_by_time: Optional[float] = None, allow_outside_root: bool = False,
                   on_event: events.EventSink = events.ignore) -> dict[str, Any]:
    """Classifies images with a run's model (or a `.keras` file + `classes`); see the module doc.

    Returns {"outputs": {name: path}, "images", "classified", "skipped", "captures", "skipped_files"
    (DataFrame path, error), "resumed": bool, "already_done": bool}. Unreadable files never stop
    the job: they are listed in OUT.skipped.csv with the reason and logged. Progress goes to `on_event`.
    """
    check_request(top_k, batch_size, image_size)
    paths = output_paths(out_csv)
    job = output_job(out_csv, input_paths(model_or_run, inputs, classes, capture_ids))
    job.check_inputs()
    refuse_foreign_outputs(paths)
    resolved = resolve_model(model_or_run, classes, image_size)
    frame, exif_counts = input_frame(inputs, capture_ids, group_by_time, allow_outside_root)
    has_captures = bool((frame["capture_id"] != "").any())
    fingerprint = {"kind": "serengeti-tf predict", "model_sha256": file_digest(resolved["model_path"]),
                   "classes": resolved["class_names"], "stored_size": resolved["stored_size"], "top_k": top_k,
                   "inputs": _input_digest(frame), "num_inputs": len(frame)}
    with job.lock():
        if paths["predictions"].exists():
            meta = io_utils.read_json(paths["meta"]) if paths["meta"].is_file() else {}
            if io_utils.same_json(meta.get("fingerprint"), fingerprint) and not overwrite:
                log.info("%s already holds these predictions; nothing to do", paths["predictions"])
                return _summary(paths, meta, already_done=True, resumed=False) | {"exif_captures": exif_counts}
            if not overwrite:
                raise UserError(f"{paths['predictions']} already exists (other model, inputs or settings); "
                                f"choose another output or pass {setting('overwrite')}")
        model = load_classifier(resolved["model_path"])
        input_size = int(model.input_shape[1])
        num_outputs = int(model.output_shape[-1])
        if num_outputs != len(resolved["class_names"]):
            raise UserError(f"{resolved['class_map']} lists {len(resolved['class_names'])} classes but the model "
                            f"outputs {num_outputs}; pass the class map of the run that trained it")
        stored_size = resolved["stored_size"] or input_size
        done = _start_or_resume(paths, fingerprint, overwrite)
        todo = frame[~frame["path"].isin(done)] if done else frame
        if done:
            log.info("resuming: %d of %d images already done", len(done), len(frame))

        def on_batch(predictions: pd.DataFrame, skipped: pd.DataFrame) -> None:
            if len(predictions):
                _append(paths["partial"], predictions)
            if len(skipped):
                _append(paths["partial_skipped"], skipped)

        classify_batches(model, todo, resolved["class_names"], stored_size, input_size, top_k, batch_size, on_batch,
                         on_event)
        counts = _finish(paths, resolved["class_names"], top_k, has_captures)
        if config is not None:
            cfg.save_config(config, paths["config"].parent, name=paths["config"].name)
        outputs = {k: str(paths[k]) for k in ("predictions", "skipped", "meta")}
        if has_captures:
            outputs["captures"] = str(paths["captures"])
        if config is not None:
            outputs["config"] = str(paths["config"])
        meta = {"model": str(resolved["model_path"]), "class_map": str(resolved["class_map"]),
                "classes": resolved["class_names"], "stored_image_size": stored_size, "input_size": input_size,
                "top_k": top_k, "batch_size": batch_size, "images": len(frame), **counts, "outputs": outputs,
                "exif_captures": exif_counts, "fingerprint": fingerprint}
        io_utils.write_json(paths["meta"], meta)
        return _summary(paths, meta, already_done=False, resumed=bool(done)) | {"exif_captures": exif_counts}


def _summary(paths: dict[str, Path], meta: dict, already_done: bool, resumed: bool) -> dict[str, Any]:
    skipped = pd.read_csv(paths["skipped"], dtype=str, keep_default_na=False) if paths["skipped"].is_file() \
        else pd.DataFrame(columns=["path", "error"])
    return {"outputs": meta.get("outputs", {}), "images": meta.get("images"), "classified": meta.get("classified"),
            "skipped": meta.get("skipped"), "captures": meta.get("captures"), "skipped_files": skipped,
            "resumed": resumed, "already_done": already_done}


def summary_text(result: Mapping[str, Any]) -> str:
    """A few lines for the CLI: counts, skipped files with reasons, where the outputs are."""
    lines = [f"{result['classified']} of {result['images']} images classified, {result['skipped']} skipped"
             + (f", {result['captures']} captures" if result.get("captures") else "")
             + (" (already done)" if result.get("already_done") else "")]
    if result.get("exif_captures"):
        lines.append(describe(result["exif_captures"]))
    for row in result["skipped_files"].head(10).itertuples(index=False):
        lines.append(f"  skipped {row.path}: {row.error}")
    if len(result["skipped_files"]) > 10:
        lines.append(f"  ... and {len(result['skipped_files']) - 10} more (see {result['outputs'].get('skipped')})")
    for name, path in result["outputs"].items():
        lines.append(f"{name}: {path}")
    return "\n".join(lines)
