"""The paper's whole grid: every sampler through phase 1 and phase 2, for several seeds, in one report.

    OUT_DIR/
      config.yaml                   resolved config of the experiment
      runs/seed<s>/<sampler>-phase<k>/   ordinary training run folders (each with eval/)
      runs/seed<s>/<method>/        one run per imbalance method of `experiment.methods`
      runs.csv                      one row per run: seed, sampler, phase, method, model, run_dir, metrics
      report/                       compare tables and plots (mean ± std over seeds), report.md

The baseline (`none`) is one phase on the original distribution, as in the paper; every other
sampler's phase-1 run is followed by a phase-2 run initialised from it. Each method of
`experiment.methods` (`methods.py`) is one single-phase run on the original distribution with the
method's train.* settings (method `-` in runs.csv marks the paper's sampler runs). A rerun skips finished runs
and finished evaluations, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import write_csv


@dataclass(frozen=True)
class PlannedRun:
    seed: int
    sampler: str
    phase: int
    run_dir: Path
    init_run: Optional[Path] = None
    method: Optional[str] = None  # a `methods.METHODS` name; None for the paper's sampler runs


def plan_runs(config: cfg.Config, out_dir: str | Path) -> list[PlannedRun]:
    """The grid in execution order: per seed, per sampler, phase 1 then (not for `none`) phase 2."""
    runs = []
    for seed in range(config.experiment.seeds):
        for sampler in config.experiment.samplers:
            phase1 = Path(out_dir) / "runs" / f"seed{seed}" / f"{sampler}-phase1"
            runs.append(PlannedRun(seed, sampler, 1, phase1))
            if sampler != "none":
                runs.append(PlannedRun(seed, sampler, 2, phase1.with_name(f"{sampler}-phase2"), phase1))
        for method in config.experiment.methods:
            runs.append(PlannedRun(seed, "none", 1, Path(out_dir) / "runs" / f"seed{seed}" / method,
                                   method=method))
    return runs


def run_config(config: cfg.Config, run: PlannedRun) -> cfg.Config:
    """The training config of one run: the experiment's, with its sampler, phase and seed (and
    the method's train.* settings for a method run)."""
    from serengeti_tf.methods import method_overrides

    overrides = method_overrides(run.method) if run.method else {}
    train = dataclasses.replace(config.train, phase=run.phase, seed=config.train.seed + run.seed, **overrides)
    if run.phase == 2 and config.experiment.phase2_epochs:
        train = dataclasses.replace(train, epochs=config.experiment.phase2_epochs)
    sampler = dataclasses.replace(config.sampler, name=run.sampler if run.phase == 1 else "none",
                                  seed=None if config.sampler.seed is None else config.sampler.seed + run.seed)
    return cfg.validate(dataclasses.replace(config, train=train, sampler=sampler))


def _eta(started: float, done: int, total: int) -> str:
    if done == 0:
        return "?"
    left = (time.time() - started) / done * (total - done)
    return f"{int(left // 60)}m{int(left % 60):02d}s"


def run_experiment(config: cfg.Config, dataset_dir: str | Path, out_dir: str | Path,
                   print_fn: Callable[[str], None] = print) -> dict:
    """Trains and evaluates every run of the grid (skipping finished ones), then writes the report."""
    from serengeti_tf import evaluation, reporting, training

    # Absolute, so runs.csv and lineage stay valid from any working folder.
    dataset_dir, out_dir = Path(dataset_dir).resolve(), Path(out_dir).resolve()
    if not (dataset_dir / "class_map.json").is_file():
        raise UserError(f"experiment: {dataset_dir} is not a prepared dataset (class_map.json missing); "
                        f"run `serengeti-tf prepare` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save_config(config, out_dir)
    runs = plan_runs(config, out_dir)
    rows, started = [], time.time()
    for number, run in enumerate(runs, start=1):
        label = (f"[{number}/{len(runs)}] seed {run.seed} " +
                 (f"method {run.method}" if run.method else f"{run.sampler} phase {run.phase}"))
        run_started = time.time()
        train_config = run_config(config, run)
        training.train(train_config, dataset_dir, run.run_dir, init_run=run.init_run,
                       print_fn=lambda *_: None)
        result = evaluation.evaluate_run(run.run_dir, config=config, split=config.eval.split,
                                         dataset_dir=dataset_dir)
        metrics = result["metrics"]
        rows.append({"seed": run.seed, "sampler": run.sampler, "phase": run.phase,
                     "method": run.method or "-", "model": reporting.model_label(run.sampler, train_config.train),
                     "run_dir": str(run.run_dir), **{k: metrics[k] for k in reporting.HEADLINE_METRICS}})
        print_fn(f"{label}: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} "
                 f"({time.time() - run_started:.0f}s; ETA {_eta(started, number, len(runs))})")
    table = pd.DataFrame(rows)
    write_csv(out_dir / "runs.csv", table)
    report = reporting.experiment_report(table, out_dir / "report", dataset_dir=dataset_dir)
    print_fn(f"report: {report['markdown']}")
    return {"runs": table, **report}
