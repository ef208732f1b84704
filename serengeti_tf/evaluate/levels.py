"""Evaluation levels: crop, image and capture scores of one run, and whole-frame vs crop side by side.

A whole-frame dataset has one example per image, so its levels are `image` (each frame) and
`capture` (frame probabilities averaged per capture, as `evaluation` always did). A detector-crop
dataset has one example per crop and three levels:

- `crop`:    each crop on its own, labelled with its image's species;
- `image`:   the crops of one image combined by their **detector-confidence-weighted mean** of class
             probabilities, sum_i conf_i * p_i / sum_i conf_i (a confident box counts more than a
             doubtful one; with one crop it is that crop's probabilities);
- `capture`: the image-level probabilities averaged over the capture's images (each image counts
             once, however many crops it has).

Every level gets the single-model intervals of `bootstrap.bootstrap_ci` (same scheme as the
headline: captures resampled within each species, so an image level's frames of one capture and a
capture level's captures are the units): accuracy and the macro F1 of the species with >= 10 test
captures (`levels.csv`), recall per species (`per_class_<level>.csv`). `compare_levels` gives the
same intervals on the shared images and captures.

Images the detector found nothing on are not in a crop dataset (`no_detection` in its manifest);
`compare_levels` states how many of a whole-frame run's test images a crop run covers and scores
both runs on the images (and captures) they share, joined on image path and capture id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from serengeti_tf import io_utils, run_folder
from serengeti_tf.errors import UserError
from serengeti_tf.evaluate.bootstrap import MIN_CAPTURES, bootstrap_ci
from serengeti_tf.evaluate.evaluation import (
    interval_record,
    per_class_table,
    summary_scores,
    top_k_frame,
    with_recall_intervals,
)
from serengeti_tf.evaluate.markdown import markdown_table
from serengeti_tf.evaluate.run_reader import run_class_names
from serengeti_tf.metrics import confusion_counts, scores_from_confusion
from serengeti_tf.run_folder import EvalFolder, RunFolder

IMAGE_COMBINATION = "detector-confidence-weighted mean of the crops' class probabilities"
CAPTURE_COMBINATION = "mean of the image-level class probabilities over the capture's images"
LEVEL_FILES = {"image": run_folder.IMAGE_PREDICTIONS, "capture": run_folder.CAPTURES}


def is_crop_split(meta: pd.DataFrame) -> bool:
    """True for the split metadata of a detector-crop dataset (`pipeline.split_metadata`)."""
    return "crop" in meta.columns and bool((meta["crop"] >= 0).any())


def with_crop_columns(predictions: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """predictions.csv of a crop dataset gains crop, box and detection_conf after the path."""
    if not is_crop_split(meta):
        return predictions
    columns = ["crop", "box_x", "box_y", "box_w", "box_h", "detection_conf"]
    extra = meta[columns].reset_index(drop=True).round(6)
    return pd.concat([predictions.iloc[:, :2], extra, predictions.iloc[:, 2:]], axis=1)


def combine(keys: Sequence[str], probs: np.ndarray, weights: np.ndarray | None = None,
            labels: np.ndarray | None = None) -> dict[str, Any]:
    """Weighted mean of `probs` rows per key (first-seen order); majority label per key when given.

    Returns keys [M], probs [M, C], count [M] (rows per key) and labels [M] (ties to the lowest index).
    """
    keys = np.asarray(keys, dtype=str)
    if len(keys) != len(probs):
        raise UserError(f"levels: need one key per row, got {len(keys)} keys for {len(probs)} rows")
    weights = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    index = rank[inverse]
    sums = np.zeros((len(unique), probs.shape[1]))
    np.add.at(sums, index, probs * weights[:, None])
    totals = np.bincount(index, weights=weights, minlength=len(unique))
    out: dict[str, Any] = {"keys": unique[order], "probs": sums / np.maximum(totals, 1e-12)[:, None],
                           "count": np.bincount(index, minlength=len(unique))}
    if labels is not None:
        votes = np.zeros((len(unique), probs.shape[1]), dtype=np.int64)
        np.add.at(votes, (index, np.asarray(labels)), 1)
        out["labels"] = votes.argmax(axis=1)
    return out


def image_level(meta: pd.DataFrame, labels: np.ndarray, probs: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """(path, capture_id, label, num_crops per image, image probabilities [M, C]) from crop rows."""
    weights = np.clip(meta["detection_conf"].to_numpy(dtype=np.float64), 1e-6, None)
    images = combine(meta["path"].to_numpy(), probs, weights, labels)
    capture_of = dict(zip(meta["path"], meta["capture_id"].astype(str)))
    frame = pd.DataFrame({"path": images["keys"], "capture_id": [capture_of[p] for p in images["keys"]],
                          "label": images["labels"], "num_crops": images["count"]})
    return frame, images["probs"]


def capture_level(images: pd.DataFrame, probs: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """(capture_id, label (majority image label), num_images, probabilities) from image rows."""
    captures = combine(images["capture_id"].to_numpy(), probs, None, images["label"].to_numpy())
    frame = pd.DataFrame({"capture_id": captures["keys"], "label": captures["labels"],
                          "num_images": captures["count"]})
    return frame, captures["probs"]


def level_intervals(labels: np.ndarray, pred: np.ndarray, capture_ids: Sequence[str], class_names: Sequence[str],
                    samples: int, seed: int) -> dict[str, Any]:
    """`bootstrap_ci` of one level's examples, resampling captures within each species (metrics.json form)."""
    return interval_record(bootstrap_ci(labels, pred, len(class_names), samples, seed,
                                        groups=np.asarray(capture_ids, dtype=str)), class_names)


def interval_columns(boot: Mapping[str, Any] | None) -> dict[str, Any]:
    """Flat columns of one interval record: accuracy CI and the well-tested macro F1 with its CI."""
    boot = boot or {}
    well = boot.get("macro_f1_well_tested") or {}
    low, high = well.get("ci") or (None, None)
    acc_low, acc_high = boot.get("accuracy") or (None, None)
    return {"accuracy_ci_low": acc_low, "accuracy_ci_high": acc_high,
            "macro_f1_well_tested": well.get("estimate"), "macro_f1_well_tested_species": well.get("num_species"),
            "macro_f1_well_tested_ci_low": low, "macro_f1_well_tested_ci_high": high}


def _table(head: pd.DataFrame, labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
           top_k: int) -> pd.DataFrame:
    names = np.asarray(class_names, dtype=object)
    pred = probs.argmax(axis=1)
    body = pd.DataFrame({"true": names[labels], "predicted": names[pred],
                         "confidence": np.round(probs.max(axis=1), 6), "correct": pred == labels})
    return pd.concat([head.drop(columns=["label"]).reset_index(drop=True), body,
                      top_k_frame(probs, class_names, top_k)], axis=1)


def evaluate_levels(out_dir: str | Path, meta: pd.DataFrame, labels: np.ndarray, probs: np.ndarray,
                    class_names: Sequence[str], train_counts: Mapping[str, int], eval_config) -> dict[str, Any]:
    """Writes the level outputs of one evaluation into `out_dir` and returns the metrics to add.

    Always: `levels.csv` (level, examples, accuracy, macro F1, ...). Crop datasets also write
    `image_predictions.csv`, `per_class_image.csv`, `per_class_capture.csv` and replace
    `captures.csv` with captures built from image-level probabilities. Returned keys: `level` (what
    the headline numbers and per_class.csv are: `crop` or `image`), `levels` (scores per level),
    `image_combination`, `capture_combination`, and for crops `capture_level` (image-based).
    """
    out = Path(out_dir)
    num_classes = len(class_names)
    top_k = eval_config.top_k

    def intervals(labels_: np.ndarray, probs_: np.ndarray, capture_ids) -> dict[str, Any]:
        return level_intervals(labels_, probs_.argmax(axis=1), capture_ids, class_names,
                               eval_config.bootstrap_samples, eval_config.seed)

    scores: dict[str, Any] = {}
    result: dict[str, Any] = {"capture_combination": CAPTURE_COMBINATION}
    if is_crop_split(meta):
        result["level"] = "crop"
        result["image_combination"] = IMAGE_COMBINATION
        scores["crop"] = summary_scores(labels, probs, num_classes, top_k)
        scores["crop"]["bootstrap"] = intervals(labels, probs, meta["capture_id"])
        images, image_probs = image_level(meta, labels, probs)
        scores["image"] = summary_scores(images["label"].to_numpy(), image_probs, num_classes, top_k)
        scores["image"]["bootstrap"] = intervals(images["label"].to_numpy(), image_probs, images["capture_id"])
        captures, capture_probs = capture_level(images, image_probs)
        scores["capture"] = summary_scores(captures["label"].to_numpy(), capture_probs, num_classes, top_k)
        scores["capture"]["bootstrap"] = intervals(captures["label"].to_numpy(), capture_probs,
                                                   captures["capture_id"])
        io_utils.write_csv(out / LEVEL_FILES["image"],
                           _table(images, images["label"].to_numpy(), image_probs, class_names, top_k))
        io_utils.write_csv(out / LEVEL_FILES["capture"],
                           _table(captures, captures["label"].to_numpy(), capture_probs, class_names, top_k))
        for level, (frame, level_probs) in (("image", (images, image_probs)), ("capture", (captures, capture_probs))):
            table = per_class_table(frame["label"].to_numpy(), level_probs, class_names, train_counts)
            table = with_recall_intervals(table, scores[level]["bootstrap"])
            table["level"] = level
            io_utils.write_csv(out / f"per_class_{level}.csv", table)
        result["capture_level"] = scores["capture"]
    else:
        result["level"] = "image"
        result["image_combination"] = "one example per image (whole frame)"
        scores["image"] = summary_scores(labels, probs, num_classes, top_k)
        scores["image"]["bootstrap"] = intervals(labels, probs, meta["capture_id"])
        images = meta[["path", "capture_id"]].assign(label=labels)
        captures, capture_probs = capture_level(images, probs)
        scores["capture"] = summary_scores(captures["label"].to_numpy(), capture_probs, num_classes, top_k)
        scores["capture"]["bootstrap"] = intervals(captures["label"].to_numpy(), capture_probs,
                                                   captures["capture_id"])
    rows = [{"level": level, "examples": s["num_examples"], "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
             "macro_precision": s["macro_precision"], "macro_recall": s["macro_recall"],
             "top_k_accuracy": s["top_k_accuracy"], **interval_columns(s.get("bootstrap"))}
            for level, s in scores.items()]
    io_utils.write_csv(EvalFolder(out).levels, pd.DataFrame(rows).round(4))
    result["levels"] = scores
    return result


def levels_text(metrics: Mapping[str, Any]) -> str:
    """A few lines for `evaluate`'s printout: the scores per level and how levels combine."""
    levels = metrics.get("levels") or {}
    if not levels:
        return ""
    lines = [f"levels (headline and per_class.csv = {metrics.get('level')} level):"]
    for level, s in levels.items():
        ci = interval_columns(s.get("bootstrap"))
        acc_ci = (f" [{ci['accuracy_ci_low']:.4f}, {ci['accuracy_ci_high']:.4f}]"
                  if ci["accuracy_ci_low"] is not None else "")
        min_captures = (s.get("bootstrap") or {}).get("macro_f1_well_tested", {}).get("min_captures")
        well = (f"; macro F1 of {ci['macro_f1_well_tested_species']} species with >= {min_captures} captures "
                f"{ci['macro_f1_well_tested']:.4f} [{ci['macro_f1_well_tested_ci_low']:.4f}, "
                f"{ci['macro_f1_well_tested_ci_high']:.4f}]" if ci["macro_f1_well_tested_ci_low"] is not None else "")
        lines.append(f"  {level:8s} n={s['num_examples']:<6d} accuracy {s['accuracy']:.4f}{acc_ci}  "
                     f"macro F1 {s['macro_f1']:.4f}{well}")
    if "crop" in levels:
        lines.append(f"  image = {IMAGE_COMBINATION}; capture = {CAPTURE_COMBINATION}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Whole frames vs crops, on the same test images
# ----------------------------------------------------------------------------------------------

def _level_predictions(eval_dir: Path, level: str) -> pd.DataFrame:
    """A run's image- or capture-level predictions: key, capture_id, true, predicted."""
    metrics = io_utils.read_json(EvalFolder(eval_dir).metrics)
    crop_run = metrics.get("level") == "crop"
    if level == "image":
        name, key = (LEVEL_FILES["image"] if crop_run else run_folder.PREDICTIONS), "path"
    else:
        name, key = LEVEL_FILES["capture"], "capture_id"
    frame = pd.read_csv(eval_dir / name, keep_default_na=False, dtype={key: str, "capture_id": str})
    return frame[[key, "true", "predicted"]].rename(columns={key: "key"}).assign(capture_id=frame["capture_id"])


def compare_levels(eval_dirs: Mapping[str, str | Path], class_names: Sequence[str], samples: int = 0,
                   seed: int = 0) -> pd.DataFrame:
    """Scores of several evaluations on the images (and captures) they all share.

    `eval_dirs` maps a run label to its `eval/` folder. One row per (level, run): the shared keys,
    the run's own total and the share it covers, accuracy and macro F1 (over `class_names`) on the
    shared keys and, with `samples` > 0, the single-model intervals (`interval_columns`: accuracy,
    macro F1 of the species with >= 10 shared test captures) from `samples` resamples of the shared
    captures within each species. Joins on image path (image level) and capture id (capture level).
    """
    index = {name: i for i, name in enumerate(class_names)}
    rows = []
    for level in ("image", "capture"):
        tables = {run: _level_predictions(Path(d), level) for run, d in eval_dirs.items()}
        shared = set.intersection(*(set(t["key"]) for t in tables.values()))
        for run, table in tables.items():
            part = table[table["key"].isin(shared)]
            y_true = part["true"].map(index).to_numpy(dtype=np.int64)
            y_pred = part["predicted"].map(index).to_numpy(dtype=np.int64)
            cm = confusion_counts(y_true, y_pred, len(class_names))
            boot = (level_intervals(y_true, y_pred, part["capture_id"], class_names, samples, seed)
                    if samples and len(part) else None)
            rows.append({"level": level, "run": run, "shared": len(shared), "run_total": len(table),
                         "coverage": round(len(shared) / len(table), 4) if len(table) else 0.0,
                         "accuracy": round(float(np.mean(y_true == y_pred)), 4) if len(part) else float("nan"),
                         "macro_f1": round(float(scores_from_confusion(cm)["f1"].mean()), 4),
                         **interval_columns(boot)})
    return pd.DataFrame(rows).round(4)


def level_comparison_markdown(table: pd.DataFrame) -> str:
    return "\n".join([
        "## Whole frames and crops on the same test images", "",
        "Each run scored only on the test images (image level, joined on image path) and captures "
        "(capture level, joined on capture id) that every compared run has; `coverage` is the share of "
        "the run's own test images or captures that are shared (a crop run lacks the images its "
        f"detector found nothing on). Crop runs: image = {IMAGE_COMBINATION}; capture = "
        f"{CAPTURE_COMBINATION}. Intervals (95%, `*_ci_low/high`): the shared captures resampled within "
        "each species, percentile; `macro_f1_well_tested` is the macro F1 of the "
        f"`macro_f1_well_tested_species` species with >= {MIN_CAPTURES} shared test captures, the only macro "
        "F1 with an interval (see README, Evaluation).", "",
        markdown_table(table), ""])


def run_levels_table(rows: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per (run, level) from each run's metrics.json `levels`: examples, accuracy, macro F1."""
    out = []
    for model, phase, seed, run in zip(rows["model"], rows["phase"], rows["seed"], rows["run_dir"]):
        metrics = io_utils.read_json(RunFolder(Path(run)).eval_dir(split).metrics)
        for level, s in (metrics.get("levels") or {}).items():
            out.append({"model": model, "phase": phase, "seed": seed, "level": level,
                        "examples": s["num_examples"], "accuracy": round(s["accuracy"], 4),
                        "macro_f1": round(s["macro_f1"], 4),
                        **{k: (round(v, 4) if isinstance(v, float) else v)
                           for k, v in interval_columns(s.get("bootstrap")).items()}})
    return pd.DataFrame(out)


def _bootstrap_settings(eval_dirs) -> tuple[int, int]:
    """Resamples and seed of the runs' own intervals (metrics.json `bootstrap`): the most resamples any
    run used, and its seed; (0, 0) when none has intervals."""
    settings = [(int(b.get("samples") or 0), int(b.get("seed") or 0))
                for b in ((io_utils.read_json(EvalFolder(Path(d)).metrics).get("bootstrap") or {}) for d in eval_dirs)]
    return max(settings, default=(0, 0))


def append_level_comparison(rows: pd.DataFrame, out_dir: str | Path, split: str = "test") -> pd.DataFrame | None:
    """For a comparison holding a crop run: writes `levels.csv` (every run's scores per level) and,
    with another run beside it, `levels_comparison.csv` (scores on the shared test images and
    captures); appends both to `report.md`. Returns the shared-image table (None without one)."""
    if not (rows["level"] == "crop").any():
        return None
    out = Path(out_dir)
    per_run = run_levels_table(rows, split)
    io_utils.write_csv(out / "levels.csv", per_run)
    sections = ["## Evaluation levels", "",
                "Crop runs count one example per detector crop; their headline numbers above are at crop "
                f"level. Image level: {IMAGE_COMBINATION}; capture level: {CAPTURE_COMBINATION} (whole-frame "
                "runs: frames, and frames averaged per capture). Data: [levels.csv](levels.csv).", "",
                markdown_table(per_run), ""]
    table = None
    if len(rows) > 1:
        labels = [f"{m} phase {p} seed {s}" for m, p, s in zip(rows["model"], rows["phase"], rows["seed"])]
        eval_dirs = {label: RunFolder(Path(run)).eval_dir(split).root for label, run in zip(labels, rows["run_dir"])}
        names = sorted(set().union(*(run_class_names(run) for run in rows["run_dir"])))
        samples, seed = _bootstrap_settings(eval_dirs.values())
        table = compare_levels(eval_dirs, names, samples, seed)
        io_utils.write_csv(out / "levels_comparison.csv", table)
        sections.append(level_comparison_markdown(table))
    report = out / "report.md"
    io_utils.write_text(report, report.read_text(encoding="utf-8") + "\n" + "\n".join(sections))
    return table
