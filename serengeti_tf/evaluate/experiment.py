"""The paper's whole grid: every sampler through phase 1 and phase 2, for several seeds, in one report.

    OUT_DIR/
      config.yaml                   resolved config of the experiment
      runs/seed<s>/<sampler>-phase<k>/   ordinary training run folders (each with eval/)
      runs/seed<s>/<method>/        one run per imbalance method of `experiment.methods`
      runs.csv                      one row per run: seed, sampler, phase, method, model, run_dir, metrics
      report/                       compare tables and plots (mean ± std over seeds), report.md

The baseline (`none`) is one phase on the original distribution, as in the paper; every other
sampler's phase-1 run is followed by a phase-2 run initialised from it. Each loss / weighting method
of `experiment.methods` (`methods.py`) is one single-phase run on the original distribution with the
method's train.* settings; each head re-balancing method (`posthoc_la`, `tau_norm`, `crt`) branches
from the same seed's baseline run without training (`training.rebalance_run`), as phase 2 branches
from phase 1 (method `-` in runs.csv marks the paper's sampler runs). A rerun skips finished runs
and finished evaluations, so an interrupted experiment continues where it stopped; a run's identity
is only what affects it, so adding samplers, methods or seeds to a finished grid trains only the
new runs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf import events
from serengeti_tf.errors import UserError, setting
from serengeti_tf.io_utils import write_csv
from serengeti_tf.run_folder import DatasetFolder, ExperimentFolder, OutputJob


@dataclass(frozen=True)
class PlannedRun:
    seed: int
    sampler: str
    phase: int
    run_dir: Path
    init_run: Optional[Path] = None  # the phase-1 run a phase-2 run fine-tunes
    method: Optional[str] = None  # a `choices.IMBALANCE_METHODS` name; None for the paper's sampler runs
    trained_run: Optional[Path] = None  # the baseline run whose head a head re-balancing method changes


def plan_runs(config: cfg.Config, out_dir: str | Path) -> list[PlannedRun]:
    """The grid in execution order: per seed, per sampler, phase 1 then (not for `none`) phase 2,
    then the methods. Head re-balancing methods branch from the seed's baseline (`none` phase 1),
    which is planned (first) even when `none` is not among the samplers."""
    from serengeti_tf.evaluate.methods import head_only

    runs = []
    head_methods = [m for m in config.experiment.methods if head_only(m)]
    samplers = list(config.experiment.samplers)
    if head_methods and "none" not in samplers:
        samplers.insert(0, "none")
    for seed in range(config.experiment.seeds):
        seed_dir = ExperimentFolder(Path(out_dir)).seed_dir(seed)
        for sampler in samplers:
            phase1 = seed_dir / f"{sampler}-phase1"
            runs.append(PlannedRun(seed, sampler, 1, phase1))
            if sampler != "none":
                runs.append(PlannedRun(seed, sampler, 2, phase1.with_name(f"{sampler}-phase2"), phase1))
        for method in config.experiment.methods:
            baseline = seed_dir / "none-phase1" if head_only(method) else None
            runs.append(PlannedRun(seed, "none", 1, seed_dir / method, method=method, trained_run=baseline))
    return runs


def run_config(config: cfg.Config, run: PlannedRun) -> cfg.Config:
    """The training config of one run: the experiment's, with its sampler, phase and seed (and
    the method's train.* settings for a method run)."""
    from serengeti_tf.evaluate.methods import method_overrides

    overrides = method_overrides(run.method) if run.method else {}
    train = dataclasses.replace(config.train, phase=run.phase, seed=config.train.seed + run.seed, **overrides)
    if run.phase == 2 and config.experiment.phase2_epochs:
        train = dataclasses.replace(train, epochs=config.experiment.phase2_epochs)
    if run.phase == 2:  # phase 2 starts from its phase-1 run; train.init_weights is phase 1's start
        train = dataclasses.replace(train, init_weights=None)
    sampler = dataclasses.replace(config.sampler, name=run.sampler if run.phase == 1 else "none",
                                  seed=None if config.sampler.seed is None else config.sampler.seed + run.seed)
    return cfg.validate(dataclasses.replace(config, train=train, sampler=sampler))


def split_counts(dataset_dir: str | Path) -> dict[str, int]:
    """Images per split of a prepared dataset."""
    from serengeti_tf.data import dataset as ds_reader

    frame = ds_reader.counts(dataset_dir)
    return {split: int(frame[split].sum()) for split in ("train", "val", "test") if split in frame}


def grid_work(config: cfg.Config, runs: list[PlannedRun], train_counts: dict[str, int],
              counts: dict[str, int]) -> list:
    """`progress.RunWork` of every planned run (image passes it will cost), from the train counts
    per class and the images per split (`split_counts`)."""
    from serengeti_tf.data import sampling
    from serengeti_tf.train.progress import run_work

    work = []
    for run in runs:
        run_cfg = run_config(config, run)
        epoch_images = int(sampling.sampling_plan(train_counts, run_cfg.sampler)["target"].sum())
        work.append(run_work(run_cfg, counts, epoch_images, branches_from_trained=run.trained_run is not None))
    return work


def _finished(run: PlannedRun, train_config: cfg.Config) -> tuple[bool, int]:
    """(already finished on disk, epochs it had already trained)."""
    from serengeti_tf.train import runs as run_files
    from serengeti_tf.train.training import REBALANCING_JSON, rebalancing_pending

    if run.trained_run is not None:
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
    from serengeti_tf.data import dataset as ds_reader
    from serengeti_tf.evaluate import evaluation, reporting
    from serengeti_tf.train import runs as run_files
    from serengeti_tf.train import training
    from serengeti_tf.train.progress import GridProgress

    cfg.save_config(config, out_dir)
    runs = plan_runs(config, out_dir)
    grid = GridProgress(grid_work(config, runs, ds_reader.train_counts(dataset_dir), split_counts(dataset_dir)))
    rows = []
    for index, run in enumerate(runs):
        label = (f"[{index + 1}/{len(runs)}] seed {run.seed} " +
                 (f"method {run.method}" if run.method else f"{run.sampler} phase {run.phase}"))
        run_started = time.time()
        train_config = run_config(config, run)
        done, epochs_done = _finished(run, train_config)
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

        if run.trained_run is not None:
            training.rebalance_run(train_config, dataset_dir, run.run_dir, run.trained_run, on_event=run_event)
        else:
            training.train(train_config, dataset_dir, run.run_dir, init_run=run.init_run, on_event=run_event)
        result = evaluation.evaluate_run(run.run_dir, config=config, split=config.eval.split,
                                         dataset_dir=dataset_dir, replace_stale=True)
        if not done:
            grid.finish(index, run_files.read_state(run_files.RunPaths(run.run_dir)).epochs_done
                        if run.trained_run is None and train_config.train.phase == 1 else None)
        metrics = result.metrics
        rows.append({"seed": run.seed, "sampler": run.sampler, "phase": run.phase,
                     "method": run.method or "-", "model": reporting.model_label(run.sampler, train_config.train),
                     "run_dir": str(run.run_dir), **{k: metrics[k] for k in reporting.HEADLINE_METRICS}})
        took = "(finished earlier)" if done else f"({time.time() - run_started:.0f}s; {grid.describe()})"
        on_event(events.Step(f"{label}: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} {took}"))
    table = pd.DataFrame(rows)
    write_csv(ExperimentFolder(out_dir).runs_csv, table)
    report = reporting.experiment_report(table, ExperimentFolder(out_dir).report, dataset_dir=dataset_dir,
                                         split=config.eval.split, eval_config=config.eval)
    on_event(events.Step(f"report: {report['markdown']}"))
    return {"runs": table, **report}
