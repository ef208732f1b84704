"""`serengeti-tf experiment`: the paper's whole grid (baseline + samplers x phases x seeds), one report."""

from __future__ import annotations

import click

from serengeti_tf.choices import IMBALANCE_METHODS
from serengeti_tf_cli import progress
from serengeti_tf_cli.common import NamesInHelp, OutputPath, config_options, resolve_config


@click.command("experiment")
@click.argument("experiment_config", type=click.Path(dir_okay=False, exists=True), required=False)
@click.option("--data", "data_dir", type=click.Path(file_okay=False), required=True,
              help="Prepared dataset folder (from `serengeti-tf prepare`).")
@click.option("-o", "--out", "out_dir", type=OutputPath(file_okay=False), default="experiment",
              show_default=True, help="Experiment folder: runs/, runs.csv, report/.")
@click.option("--seeds", type=int, default=None, help="Repeat the grid with this many seeds (mean ± std).")
@click.option("--samplers", default=None, help="Comma list overriding experiment.samplers, e.g. none,ros,rus.")
@click.option("--methods", default=None, cls=NamesInHelp, names_from=IMBALANCE_METHODS,
              help="Comma list overriding experiment.methods (imbalance methods run beside the samplers) "
                   "from {names}. A loss or weighting method trains its own model; a head re-balancing "
                   "method re-balances the head of the seed's baseline model "
                   "(no extra training).")
@click.option("--epochs", type=int, default=None, help="Epochs per run (train.epochs).")
@config_options
def experiment(experiment_config, data_dir, out_dir, seeds, samplers, methods, epochs, config_files, overrides) -> None:
    """Train and evaluate every sampler through phase 1 and phase 2; rerun to continue after a stop.

    EXPERIMENT_CONFIG (optional) is read before --preset/--config, e.g. `--preset paper` alone.

    Prints every epoch with a grid-wide ETA. Rerunning with more samplers, methods or seeds trains
    only the runs that are new.
    """
    from serengeti_tf.workflows.experiment import run_experiment

    config = resolve_config(((experiment_config,) if experiment_config else ()) + config_files, overrides, {
        "experiment.seeds": seeds, "train.epochs": epochs,
        # '' is an empty list (refused by validation), not "use the default grid".
        "experiment.samplers": [s.strip() for s in samplers.split(",") if s.strip()] if samplers is not None else None,
        "experiment.methods": [m.strip() for m in methods.split(",") if m.strip()] if methods else None})
    run_experiment(config, data_dir, out_dir, on_event=progress.Terminal())
