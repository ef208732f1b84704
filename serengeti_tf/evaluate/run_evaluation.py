"""`evaluate_run`: the evaluation job of one run folder -> `RUN_DIR/eval/` (`eval_<split>/` for val/train).

It predicts the run's model on a prepared split and writes metrics, the per-class table, captures,
levels and the confusion figure, using the pure scores of `evaluation.py` and the levels of
`levels.py` (which builds on those scores: kept apart from this job so neither imports the other's
importer).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import events, io_utils
from serengeti_tf.data import dataset as ds
from serengeti_tf.data.class_map import require_same_classes
from serengeti_tf.data.sampling import sampling_plan
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate import levels
from serengeti_tf.evaluate.bootstrap import SINGLE_SCHEME as BOOTSTRAP_SCHEME
from serengeti_tf.evaluate.evaluation import (
    captures_frame,
    check_top_k,
    class_order,
    compute_metrics,
    confusion_frame,
    group_table,
    per_class_table,
    predictions_frame,
    softmax,
    with_recall_intervals,
)
from serengeti_tf.evaluate.run_reader import read_lineage, resolve_dataset_dir, run_class_names
from serengeti_tf.models.inference import predict_dataset
from serengeti_tf.plots import plot_confusion
from serengeti_tf.run_folder import CONFIG, MODEL, EvalFolder, Lineage, OutputJob, RunFolder

log = logging.getLogger(__name__)




def predict_split(model, dataset_dir: Path, split: str, config: cfg.Config,
                  num_images: Optional[int] = None,
                  on_event: events.EventSink = events.ignore) -> tuple[np.ndarray, np.ndarray]:
    """Runs the model over a prepared split in stored order; returns (labels [N], probabilities [N, C]);
    the batches done go to `on_event`."""
    from serengeti_tf.data import pipeline
    batch_size = config.eval.batch_size
    data = pipeline.make_eval_dataset(dataset_dir, split, config, batch_size=batch_size)
    total = math.ceil(num_images / batch_size) if num_images else None
    logits, labels = predict_dataset(model, data, progress=lambda batches: events.track(
        batches, on_event, f"evaluate {split}", total=total, unit="batch"))
    if not len(labels):
        raise UserError(f"evaluation: split '{split}' of {dataset_dir} holds no images")
    return labels, softmax(logits)


# ----------------------------------------------------------------------------------------------
# evaluate_run
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """What `evaluate_run` produced: the evaluation folder, its metrics.json and per_class.csv, and
    whether it was read back from a finished evaluation with the same model and settings."""

    out_dir: Path
    metrics: dict[str, Any]
    per_class: pd.DataFrame
    skipped: bool


def evaluate_run(run_dir: str | Path, config: Optional[cfg.Config] = None, split: Optional[str] = None,
                 dataset_dir: Optional[str | Path] = None, overwrite: bool = False,
                 replace_stale: bool = False, on_event: events.EventSink = events.ignore) -> EvaluationResult:
    """Evaluates a run's `model.keras` on a prepared split and writes `RUN_DIR/eval[_<split>]/`.

    `replace_stale`: an evaluation folder that serengeti-tf wrote for another model or other eval
    settings (or an older interval) is redone instead of refused; `experiment` passes it, since the
    evaluations inside its runs are derived output that follows the grid's `eval` section.

    `config`: its `eval` section sets top-k, batch size, bootstrap and group thresholds (default:
    the run's own config.yaml); model and data settings always come from the run, so the input
    size matches the trained model. `split` overrides `config.eval.split`. A finished evaluation
    with the same model and settings is not redone (rerun = resume) unless `overwrite`; different
    settings need `overwrite`.

    Writes metrics.json (last, so its presence means complete), per_class.csv (Table 4 layout,
    plus count_train_phase1 = the phase-1 sampler's images per class, as in Tables 5 and 6),
    confusion_matrix.csv/.png, predictions.csv, captures.csv, groups.csv, config.yaml.
    Returns an `EvaluationResult` (`summary_text`, `levels_text` and `per_class_text` render it);
    the prediction's progress goes to `on_event`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    run = RunFolder(run_dir)
    if not run.model.is_file():
        raise UserError(f"{run_dir}: {MODEL} missing (training not finished?)")
    if not run.config.is_file():
        raise UserError(f"{run_dir}: {CONFIG} missing (not a training run folder?)")
    run_config = cfg.load_saved(run.config)
    if config is not None:
        run_config.eval = dataclasses.replace(config.eval)  # a copy: the caller's config stays as it is
    if split is not None:
        run_config.eval.split = split
    run_config = cfg.validate(run_config)
    split = run_config.eval.split
    lineage = read_lineage(run_dir)
    data_dir = resolve_dataset_dir(run_dir, lineage, dataset_dir)
    names = run_class_names(run_dir)
    require_same_classes(names, f"the run {run_dir}", ds.class_names(data_dir), f"the dataset {data_dir}")
    check_top_k(run_config.eval.top_k, len(names))
    ds.check_shards(data_dir)
    out = run.eval_dir(split)
    eval_settings = cfg.to_dict(run_config)["eval"]
    fingerprint = {"model_sha256": io_utils.file_digest(run.model), "dataset_dir": str(data_dir.resolve()),
                   "split": split, "input_size": run_config.model.input_size,
                   "bootstrap_method": BOOTSTRAP_SCHEME,  # an evaluation with the old interval is not reused
                   **{k: v for k, v in eval_settings.items() if k not in ("batch_size", "split", "scientific_names")}}
    job = OutputJob(out.root, "evaluation", inputs={setting("dataset_dir"): data_dir, "model": run.model},
                    what="evaluation folder", done=out.metrics.name)
    with job:  # one process per evaluation folder
        done = job.claim(fingerprint, overwrite=overwrite or replace_stale)
        if done and not overwrite and job.finished:
            log.info("%s already evaluated with the same model and settings; reading it", out.root)
            return EvaluationResult(out.root, io_utils.read_json(out.metrics),
                                    pd.read_csv(out.per_class, keep_default_na=False), skipped=True)
        return _evaluate(run, out, run_config, lineage, data_dir, names, fingerprint["model_sha256"], on_event)


def _evaluate(run: RunFolder, out: EvalFolder, run_config: cfg.Config, lineage: Lineage, data_dir: Path,
              names: list[str], model_sha256: str, on_event: events.EventSink) -> "EvaluationResult":
    """The evaluation itself, into the claimed and locked `out`; metrics.json is written last."""
    from serengeti_tf.data import pipeline
    from serengeti_tf.models.resnet import load_model

    split = run_config.eval.split
    cfg.save_config(run_config, out.root)
    train_counts = ds.train_counts(data_dir)
    model = load_model(run.model)
    meta = pipeline.split_metadata(data_dir, split)
    labels, probs = predict_split(model, data_dir, split, run_config, num_images=len(meta), on_event=on_event)
    if len(meta) != len(labels) or not np.array_equal(meta["label"].to_numpy(dtype=np.int64), labels):
        raise UserError(f"{data_dir}: split '{split}' metadata ({len(meta)} rows) does not match the "
                        f"images read ({len(labels)}); the prepared dataset may be incomplete")
    captures = meta["capture_id"].astype(str).to_numpy()
    top_k = run_config.eval.top_k
    metrics = compute_metrics(labels, probs, names, train_counts, run_config.eval, capture_ids=captures)
    metrics.update({"run_dir": str(run.root), "split": split, "dataset_dir": str(data_dir),
                    "model_sha256": model_sha256, **{k: lineage.get(k) for k in Lineage.EVALUATION_KEYS}})
    table = per_class_table(labels, probs, names, train_counts,
                            phase1_counts=phase1_counts(run.root, run_config, lineage, train_counts))
    table = with_recall_intervals(table, metrics["bootstrap"])
    table["level"] = "crop" if levels.is_crop_split(meta) else "image"  # what one counted example is
    order = class_order(names, train_counts)
    confusion = confusion_frame(labels, probs.argmax(axis=1), names, order)
    io_utils.write_csv(out.per_class, table)
    io_utils.write_csv(out.confusion_csv, confusion.reset_index())
    io_utils.save_figure(out.confusion_png, plot_confusion(confusion, f"{run.root.name} ({split}), row-normalised"))
    io_utils.write_csv(out.predictions, levels.with_crop_columns(
        predictions_frame(meta["path"], captures, labels, probs, names, top_k), meta))
    io_utils.write_csv(out.captures, captures_frame(labels, probs, captures, names, top_k))
    io_utils.write_csv(out.groups, group_table(labels, probs.argmax(axis=1), names, train_counts,
                                              run_config.eval.head_min, run_config.eval.tail_max))
    # Crop / image / capture levels (levels.py); for crops it rewrites captures.csv from image level.
    metrics.update(levels.evaluate_levels(out.root, meta, labels, probs, names, train_counts, run_config.eval))
    io_utils.write_json(out.metrics, metrics)  # last: marks the evaluation finished
    return EvaluationResult(out.root, metrics, table, skipped=False)


def phase1_counts(run_dir: Path, run_config: cfg.Config, lineage: Mapping[str, Any],
                  train_counts: Mapping[str, int]) -> Optional[dict[str, int]]:
    """Images per class per epoch of the run's phase-1 sampler (its own, or its init run's for a
    phase-2 run), recomputed from the sampling plan; None when that sampler is unknown."""
    sampler = run_config.sampler
    if int(lineage.get(Lineage.PHASE, 1)) == 2:
        init = RunFolder(Path(str(lineage.get(Lineage.INIT_RUN) or "")))
        if lineage.get(Lineage.INIT_RUN) and init.config.is_file():
            sampler = cfg.load_saved(init.config).sampler
        elif lineage.get(Lineage.SAMPLER) == "none":
            sampler = dataclasses.replace(sampler, name="none")
        else:
            return None
    try:
        plan = sampling_plan(train_counts, sampler)
    except UserError:
        return None
    return dict(zip(plan["species"], plan["target"].astype(int)))

