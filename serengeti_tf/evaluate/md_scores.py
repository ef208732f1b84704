"""`score-detections MD.json --labels LABELS -o OUT_DIR`: the classifications already in an MD file
(another classifier's: SpeciesNet converted to MD format, MegaDetector's own classifiers, a previous
`predict --md-out`) scored against labels, as one more model to compare with a trained run.

LABELS is a prepared dataset folder (its `manifest.csv` kept rows of one split, `--split`, default
test: the images `evaluate RUN` scores at image level; its image root, detection path settings and
`data.crops` come from the dataset's config.yaml) or a CSV with a path column and a `label` (or
`species`) column (image root: `--image-root`, default the CSV's folder).

Per image, the file's classifications of the boxes that `data.crops` selects (category, threshold:
the same selection `prepare`/`predict` make) are combined like `predict` combines crops: the
detector-confidence-weighted mean of each box's classification scores (a box's classes outside
its top-k count 0). The image's prediction is the highest-scoring class; an image without a
classified box is predicted `empty`. Class names are compared in canonical form
(`species.canonical_species`: `Grey Fox` = `grey_fox`); a name the file uses that no label has is
counted as a wrong prediction (the per-class table lists it with support 0).

Outputs: metrics.json (accuracy, macro F1 over the label classes and over present classes, coverage:
images with a classified box), per_class.csv (species, precision, recall, f1, support),
predictions.csv (path, label, predicted, confidence, classified_boxes), config.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import io_utils
from serengeti_tf.data import detections
from serengeti_tf.data.crops import select_boxes
from serengeti_tf.data.sources import relative_posix
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate.predict import PATH_COLUMNS, _pick_column
from serengeti_tf.metrics import confusion_counts, scores_from_confusion, scores_from_counts
from serengeti_tf.run_folder import EvalFolder, OutputJob
from serengeti_tf.species import canonical_species

NOT_CLASSIFIED = "empty"
LABEL_COLUMNS = ("label", "species")


def read_labels(labels: str | Path, split: str, image_root: Optional[str | Path]) -> tuple[pd.DataFrame, dict]:
    """(path, label) rows and the detections settings {image_root, strip_prefix, crops} they imply."""
    source = Path(labels)
    if source.is_dir():
        manifest, config_path = source / "manifest.csv", source / "config.yaml"
        if not manifest.is_file() or not config_path.is_file():
            raise UserError(f"{setting('labels')} {source} is a folder but not a prepared dataset (no manifest.csv / "
                            "config.yaml)")
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        rows = table[(table["drop_reason"] == "") & (table["split"] == split)]
        if rows.empty:
            raise UserError(f"{manifest} has no kept image in split '{split}' ({setting('split')})")
        data = cfg.load_saved(config_path).data
        settings = {"image_root": Path(image_root or data.image_root), "strip_prefix": data.detections_strip_prefix,
                    "crops": data.crops, "labels": f"{manifest} (split {split})"}
        frame = pd.DataFrame({"path": rows["path"].to_numpy(), "label": rows["species"].to_numpy()})
    elif source.is_file():
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
        path_column, label_column = _pick_column(table, PATH_COLUMNS), _pick_column(table, LABEL_COLUMNS)
        if path_column is None or label_column is None:
            raise UserError(f"{setting('labels')} {source} needs a path column ({', '.join(PATH_COLUMNS)}) and a "
                            "label column "
                            f"({', '.join(LABEL_COLUMNS)}), got columns {', '.join(table.columns)}")
        settings = {"image_root": Path(image_root or source.parent), "strip_prefix": "", "crops": None,
                    "labels": str(source)}
        frame = pd.DataFrame({"path": table[path_column].to_numpy(), "label": table[label_column].to_numpy()})
        frame = frame[frame["label"].str.strip() != ""]
    else:
        raise UserError(f"{setting('labels')} not found: {source} (a prepared dataset folder or a CSV of path, label)")
    frame["path"] = relative_posix(frame["path"], settings["image_root"])
    frame["label"] = frame["label"].map(canonical_species)
    return frame.drop_duplicates("path").reset_index(drop=True), settings


def image_predictions(found, crop_config: cfg.CropConfig) -> pd.DataFrame:
    """Per MD image row with a classified selected box: predicted (canonical), confidence, classified_boxes."""
    threshold = found.threshold(crop_config.threshold)[0]
    chosen = select_boxes(found.boxes, crop_config.category, threshold, crop_config.select)
    votes = found.classifications.merge(chosen[["image", "conf"]].rename(columns={"conf": "det_conf"}),
                                        left_on="box", right_index=True)
    if votes.empty:
        return pd.DataFrame(columns=["image", "predicted", "confidence", "classified_boxes"])
    votes["name"] = votes["category"].astype(str).map(canonical_species)
    votes["weighted"] = votes["conf"].astype(np.float64) * votes["det_conf"].astype(np.float64)
    weight = votes.drop_duplicates("box").groupby("image")["det_conf"].sum().astype(np.float64)
    scores = votes.groupby(["image", "name"])["weighted"].sum().reset_index()
    scores["score"] = scores["weighted"] / scores["image"].map(weight)
    best = scores.sort_values(["image", "score", "name"], ascending=[True, False, True]).drop_duplicates("image")
    boxes = votes.groupby("image")["box"].nunique()
    return pd.DataFrame({"image": best["image"].to_numpy(), "predicted": best["name"].to_numpy(),
                         "confidence": best["score"].round(6).to_numpy(),
                         "classified_boxes": best["image"].map(boxes).to_numpy()})


def score(frame: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics and the per-class table of `frame` (label, predicted); classes = labels, then other predictions."""
    label_classes = sorted(frame["label"].unique())
    extra = sorted(set(frame["predicted"]) - set(label_classes))
    names = label_classes + extra
    index = {name: i for i, name in enumerate(names)}
    cm = confusion_counts(frame["label"].map(index).to_numpy(), frame["predicted"].map(index).to_numpy(), len(names))
    per = scores_from_confusion(cm)
    table = pd.DataFrame({"species": names, "precision": per["precision"], "recall": per["recall"],
                          "f1": per["f1"], "support": per["support"].astype(int)}).round(4)
    summary = scores_from_counts(cm)
    label_only = scores_from_confusion(cm)["f1"][:len(label_classes)]
    metrics = {"images": int(len(frame)), "accuracy": summary["accuracy"],
               "macro_f1": float(label_only.mean()) if len(label_only) else 0.0,
               "macro_f1_definition": "mean F1 over the label classes (predictions outside them count as wrong)",
               "macro_f1_present": summary["macro_f1_present"], "balanced_accuracy": summary["balanced_accuracy"],
               "coverage": float((frame["predicted"] != NOT_CLASSIFIED).mean()) if len(frame) else 0.0,
               "predicted_outside_labels": extra}
    return metrics, table


def score_md_classifications(md_path: str | Path, labels: str | Path, out_dir: str | Path, split: str = "test",
                             image_root: Optional[str | Path] = None, strip_prefix: Optional[str] = None,
                             crop_config: Optional[cfg.CropConfig] = None, config: Optional[cfg.Config] = None,
                             overwrite: bool = False) -> dict[str, Any]:
    """Scores the MD file's own classifications against `labels` into `out_dir` (module doc)."""
    out_dir = Path(out_dir)
    frame, settings = read_labels(labels, split, image_root)
    crop_config = crop_config or settings["crops"] or cfg.CropConfig()
    strip = settings["strip_prefix"] if strip_prefix is None else strip_prefix
    job = OutputJob(out_dir, "detection scores", inputs={"MD": md_path, setting("labels"): labels})
    job.check_inputs()
    fingerprint = {"kind": "serengeti-tf score-detections", "md_sha256": io_utils.file_digest(md_path),
                   "labels": io_utils.text_digest("\n".join(frame["path"] + "\t" + frame["label"])),
                   "crops": cfg.to_dict(cfg.Config(data=cfg.DataConfig(crops=crop_config)))["data"]["crops"],
                   "strip_prefix": strip}
    with job.lock():
        found = detections.read_detections(md_path, settings["image_root"], strip_prefix=strip)
        if not found.classification_categories:
            raise UserError(f"{md_path} holds no classifications (no classification_categories): nothing to score")
        # same work: recomputed (cheap)
        job.claim(fingerprint, overwrite=overwrite)
        predictions = image_predictions(found, crop_config)
        md = found.images
        first = ~md["file"].duplicated(keep="first")
        row_of = pd.Series(md.index[first], index=md.loc[first, "file"].to_numpy())
        frame["image"] = frame["path"].map(row_of)
        by_image = predictions.set_index("image")
        frame["predicted"] = frame["image"].map(by_image["predicted"]).fillna(NOT_CLASSIFIED)
        frame["confidence"] = frame["image"].map(by_image["confidence"]).fillna(0.0)
        frame["classified_boxes"] = frame["image"].map(by_image["classified_boxes"]).fillna(0).astype(int)
        metrics, table = score(frame)
        metrics.update({"md_file": str(md_path), "labels": settings["labels"],
                        "not_in_md_file": int(frame["image"].isna().sum()),
                        **dict(zip(("threshold", "threshold_source"), found.threshold(crop_config.threshold))),
                        "combination": "detector-confidence-weighted mean of the boxes' classification scores"})
        if config is not None:
            cfg.save_config(config, out_dir)
        scores = EvalFolder(out_dir)  # the layout of an evaluation folder
        io_utils.write_csv(scores.predictions, frame.drop(columns=["image"]))
        io_utils.write_csv(scores.per_class, table)
        io_utils.write_json(scores.metrics, metrics)
    return {"metrics": metrics, "per_class": table, "out_dir": str(out_dir)}


def summary_text(result: dict[str, Any]) -> str:
    m = result["metrics"]
    return "\n".join([
        f"MD file's own classifications on {m['images']} labelled images ({m['labels']}):",
        f"  accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} (label classes), "
        f"macro F1 present {m['macro_f1_present']:.4f}, coverage {m['coverage']:.4f}",
        f"  {m['not_in_md_file']} labelled images not in the MD file; detection threshold {m['threshold']:g} "
        f"(from {m['threshold_source']})"
        + (f"; predicted names outside the labels: {', '.join(m['predicted_outside_labels'])}"
           if m["predicted_outside_labels"] else ""),
        f"written to {result['out_dir']}"])
