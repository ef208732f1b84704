"""`serengeti-tf train`: one phase-1 or phase-2 training run into a run folder (resumable)."""

from __future__ import annotations

import click

from serengeti_tf.choices import CLASS_WEIGHTINGS, HEAD_REBALANCINGS, LOSSES, SAMPLERS, STRATEGIES
from serengeti_tf_cli import progress
from serengeti_tf_cli.common import (
    ChoiceOption,
    OutputPath,
    RegistryChoice,
    SettingOption,
    config_options,
    resolve_config,
)


@click.command("train")
@click.option("--data", "dataset_dir", required=True, type=click.Path(file_okay=False),
              help="Prepared dataset folder (from `serengeti-tf prepare`).")
@click.option("--phase", type=click.IntRange(1, 2), default=None,
              help="1: train ResNet-18 from scratch on the sampler's data; 2: retrain only the head "
                   "of an --init phase-1 model on the original data. [default: 1]")
@click.option("--sampler", cls=ChoiceOption, registry=SAMPLERS, default=None,
              help="Phase-1 re-balancing: {choices} [default: none]")
@click.option("--run-dir", type=OutputPath(file_okay=False), default=None,
              help="Run folder. [default: runs/<sampler>-phase<k>-seed<s>]")
@click.option("--init", "init_run", type=click.Path(file_okay=False), default=None,
              help="Phase-1 run folder a phase-2 run starts from (required with --phase 2).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping may end sooner). [default: 30]")
@click.option("--batch-size", type=int, default=None,
              help="GLOBAL batch size: images per step summed over all replicas/workers. [default: 64]")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate. [default: 0.001]")
@click.option("--input-size", type=int, default=None,
              help="Square input side in pixels (224 as in the paper; smaller for CPU runs).")
@click.option("--mixed-precision/--no-mixed-precision", default=None,
              help="mixed_float16 on GPU, mixed_bfloat16 on CPU; the logits stay float32.")
@click.option("--strategy", type=RegistryChoice(STRATEGIES), default=None,
              help="tf.distribute strategy: mirrored = all local GPUs (on a CPU-only host, "
                   "$SERENGETI_TF_CPU_REPLICAS logical CPUs, default 2); multi_worker = one process per "
                   "worker, roles from $TF_CONFIG (run the same command in each). The batch size is global.")
@click.option("--xla/--no-xla", default=None, help="Compile the train step with XLA (jit_compile).")
@click.option("--seed", type=int, default=None, help="Seed for weights, sampling and augmentation. [default: 0]")
@click.option("--loss", cls=ChoiceOption, registry=LOSSES, default=None,
              help="Training loss: {choices} Settings: --set KEY=VALUE. [default: cross_entropy]")
@click.option("--class-weighting", cls=ChoiceOption, registry=CLASS_WEIGHTINGS, default=None,
              help="Per-class loss weights, with any loss: {choices} [default: none]")
@click.option("--focal-gamma", type=float, default=None, cls=SettingOption, setting="train.focal_gamma")
@click.option("--head-rebalancing", cls=ChoiceOption, registry=HEAD_REBALANCINGS, default=None,
              help="Re-balance the head of the best model after training: {choices} [default: none]")
@click.option("--init-weights", type=click.Path(exists=True), default=None,
              help="Phase 1 only: start the backbone from a local keras-hub ResNet-18 preset folder, a .keras "
                   "model or run folder of this project, or a .weights.h5 (the head is always new). "
                   "[default: random initialisation]")
@click.option("--freeze-stages", type=int, default=None,
              help="Phase 1: keep the stem (1) ... the whole backbone (5) frozen. [default: 0]")
@click.option("--backbone-lr", "backbone_learning_rate", type=float, default=None,
              help="Phase 1: learning rate of the backbone (the head keeps --lr). [default: --lr]")
@click.option("--overwrite", is_flag=True, help="Discard an existing run in --run-dir and start again.")
@config_options
def train_command(dataset_dir, phase, sampler, run_dir, init_run, epochs, batch_size, learning_rate,
                  input_size, mixed_precision, strategy, xla, seed, loss, class_weighting, focal_gamma,
                  head_rebalancing, init_weights, freeze_stages, backbone_learning_rate, overwrite,
                  config_files, overrides):
    """Train one run (phase 1 or 2); rerun the same command to resume an interrupted run.

    Writes config.yaml, lineage.json, class_map.json, metrics.csv (train loss/accuracy, val
    loss/accuracy/macro F1 per epoch), tensorboard/, checkpoints/, model.keras (best val macro F1),
    timings.json and versions.json into the run folder; with --head-rebalancing also
    rebalancing.json (chosen tau, val scores before/after) and rebalancing_sweep.csv (tau sweeps).
    """
    from serengeti_tf.train import runs, training
    config = resolve_config(config_files, overrides, {
        "train.phase": phase, "sampler.name": sampler, "train.epochs": epochs,
        "train.batch_size": batch_size, "train.learning_rate": learning_rate,
        "model.input_size": input_size, "train.mixed_precision": mixed_precision,
        "train.strategy": strategy, "train.xla": xla, "train.seed": seed,
        "train.loss": loss, "train.class_weighting": class_weighting, "train.focal_gamma": focal_gamma,
        "train.head_rebalancing": head_rebalancing, "train.init_weights": init_weights,
        "train.freeze_stages": freeze_stages, "train.backbone_learning_rate": backbone_learning_rate})
    run_dir = run_dir or runs.default_run_dir(config, init_run)
    training.train(config, dataset_dir, run_dir, init_run=init_run, overwrite=overwrite,
                   on_event=progress.Terminal())
