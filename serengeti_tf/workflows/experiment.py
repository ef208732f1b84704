"""The paper's whole grid: every sampler through phase 1 and phase 2, for several seeds, in one report.

    OUT_DIR/
      config.yaml                   resolved config of the experiment
      runs/seed<s>/<sampler>-phase<k>/   ordinary training run folders (each with eval/)
      runs/seed<s>/<method>/        one run per imbalance method of `experiment.methods`
      runs.csv                      one row per run: seed, sampler, phase, method, model, run_dir, metrics
      report/                       compare tables and plots (mean ± std over seeds), report.md

The baseline (`none`) is one phase on the original distribution, as in the paper; every other
sampler's phase-1 run is followed by a phase-2 run initialised from it. Each loss / weighting method
of `experiment.methods` (`train/methods.py`) is one single-phase run on the original distribution with the
method's train.* settings; each head re-balancing method (`posthoc_la`, `tau_norm`, `crt`) branches
from the same seed's baseline run without training (`training.rebalance_run`), as phase 2 branches
from phase 1 (method `-` in runs.csv marks the paper's sampler runs). A rerun skips finished runs
and finished evaluations, so an interrupted experiment continues where it stopped; a run's identity
is only what affects it, so adding samplers, methods or seeds to a finished grid trains only the
new runs.

Which runs exist, their folders, labels and what each is compared with is the plan of the
recipes (`train/recipes.py`: `plan_runs`); this module runs that plan and writes the report.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import events
from serengeti_tf.choices import RECIPES
from serengeti_tf.data import dataset as ds_reader
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate import reporting, run_evaluation
from serengeti_tf.io_utils import write_csv
from serengeti_tf.run_folder import DatasetFolder, ExperimentFolder, OutputJob
from serengeti_tf.train import runs as run_files
from serengeti_tf.train import training
from serengeti_tf.train.progress import GridProgress
from serengeti_tf.train.recipes import PlannedRun, Recipe, grid_work, plan_runs, run_config
from serengeti_tf.train.training import REBALANCING_JSON, rebalancing_pending


def split_counts(dataset_dir: str | Path) -> dict[str, int]:
    """Images per split of a prepared dataset."""
    frame = ds_reader.counts(dataset_dir)
    return {split: int(frame[split].sum()) for split in ("train", "val", "test") if split in frame}


def _finished(run: PlannedRun, recipe: Recipe, train_config: cfg.Config) -> tuple[bool, int]:
    """(already finished on disk, epochs it had already trained)."""
    if recipe.branches_from_trained:
        return (run.run_dir / REBALANCING_JSON).is_file(), 0
    paths = run_files.RunPaths(run.run_dir)
    state = run_files.read_state(paths)
    return state.finished and not rebalancing_pending(train_config, paths), state.epochs_done


def run_experiment(config: cfg.Config, dataset_dir: str | Path, out_dir: str | Path,
                   on_event: events.EventSink = events.ignore) -> dict:
    """Trains and evaluates every run of the grid (skipping finished ones), then writes the report.

    Every epoch's event comes with the grid-wide ETA from the measured time per image.
    """
    # Absolute, so runs.csv and lineage stay valid from any working folder.
    dataset_dir, out_dir = Path(dataset_dir).resolve(), Path(out_dir).resolve()
    if not DatasetFolder(dataset_dir).class_map.is_file():
        raise UserError(f"experiment: {dataset_dir} is not a prepared dataset (class_map.json missing); "
                        f"run `serengeti-tf prepare` first")
    job = OutputJob(out_dir, "experiment", what="experiment folder",
                    inputs={setting("dataset_dir"): dataset_dir, setting("init_weights"): config.train.init_weights})
    with job:  # one process per experiment folder
        job.claim_kind()
        return _run_grid(config, dataset_dir, out_dir, on_event)


def _run_grid(config: cfg.Config, dataset_dir: Path, out_dir: Path, on_event: events.EventSink) -> dict:
    cfg.save_config(config, out_dir)
    runs = plan_runs(config, out_dir)
    grid = GridProgress(grid_work(config, runs, ds_reader.train_counts(dataset_dir), split_counts(dataset_dir)))
    rows = []
    for index, run in enumerate(runs):
        recipe = RECIPES.lookup(run.recipe)
        label = f"[{index + 1}/{len(runs)}] seed {run.seed} {run.label}"
        run_started = time.time()
        train_config = run_config(config, run)
        done, epochs_done = _finished(run, recipe, train_config)
        if done:
            grid.skip(index)
        else:
            grid.start(index, epochs_done)
            on_event(events.Step(f"{label} -> {run.run_dir}"))

        def run_event(event: events.Event, index=index, done=done) -> None:
            if isinstance(event, events.EpochEnd):
                grid.epoch(index, event.epoch)
                on_event(events.InRun(event, grid.eta()))
            elif not done:
                on_event(events.InRun(event))

        if recipe.branches_from_trained:
            training.rebalance_run(train_config, dataset_dir, run.run_dir, run.trained_run, on_event=run_event)
        else:
            training.train(train_config, dataset_dir, run.run_dir, init_run=run.init_run, on_event=run_event,
                           recipe=recipe)
        result = run_evaluation.evaluate_run(run.run_dir, config=config, split=config.eval.split,
                                         dataset_dir=dataset_dir, replace_stale=True, on_event=on_event)
        if not done:
            grid.finish(index, run_files.read_state(run_files.RunPaths(run.run_dir)).epochs_done
                        if recipe.epochs_cut_by_early_stopping else None)
        metrics = result.metrics
        rows.append({"seed": run.seed, "sampler": run.sampler, "phase": run.phase,
                     "method": run.method or "-",
                     "model": reporting.model_label(run.sampler, train_config.train) + recipe.label_suffix,
                     "run_dir": str(run.run_dir), **{k: metrics[k] for k in reporting.HEADLINE_METRICS}})
        took = "(finished earlier)" if done else f"({time.time() - run_started:.0f}s; {grid.describe()})"
        on_event(events.Step(f"{label}: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} {took}"))
    table = pd.DataFrame(rows)
    write_csv(ExperimentFolder(out_dir).runs_csv, table)
    report = reporting.experiment_report(table, ExperimentFolder(out_dir).report, dataset_dir=dataset_dir,
                                         split=config.eval.split, eval_config=config.eval)
    on_event(events.Step(f"report: {report['markdown']}"))
    return {"runs": table, **report}
