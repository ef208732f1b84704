"""`serengeti-tf evaluate RUN_DIR`: metrics, per-class table, confusion matrix and CIs into RUN_DIR/eval/."""

from __future__ import annotations

from pathlib import Path

import click

from serengeti_tf_cli import progress
from serengeti_tf_cli.common import config_options, resolve_config


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["test", "val", "train"]), default=None,
              help="Split to evaluate (eval.split, default test); val/train write to eval_<split>/.")
@click.option("--per-class", is_flag=True, help="Also print the per-class table (the paper's Table 4 layout).")
@click.option("--top-k", type=int, default=None,
              help="k of the top-k accuracy and predictions (eval.top_k, default 5).")
@click.option("--bootstrap", type=int, default=None,
              help="Bootstrap resamples for the 95% CIs (eval.bootstrap_samples, default 1000; 0 = off).")
@click.option("--batch-size", type=int, default=None, help="Images per inference batch (eval.batch_size).")
@click.option("--dataset-dir", type=click.Path(file_okay=False), default=None,
              help="Prepared dataset folder, if it moved since training (default: from lineage.json).")
@click.option("--overwrite", is_flag=True, help="Replace an evaluation made with other settings.")
@config_options
def evaluate(run_dir, split, per_class, top_k, bootstrap, batch_size, dataset_dir, overwrite,
             config_files, overrides) -> None:
    """Evaluate a training run on the test (or val) split; settings start from the run's config.yaml."""
    from serengeti_tf.evaluate.evaluation import per_class_text
    from serengeti_tf.evaluate.run_evaluation import evaluate_run
    from serengeti_tf.run_folder import RunFolder

    run_config = RunFolder(Path(run_dir)).config
    config = resolve_config(((run_config,) if run_config.is_file() else ()) + tuple(config_files), overrides, {
        "eval.split": split, "eval.top_k": top_k, "eval.bootstrap_samples": bootstrap,
        "eval.batch_size": batch_size})
    result = evaluate_run(run_dir, config=config, dataset_dir=dataset_dir, overwrite=overwrite,
                          on_event=progress.Terminal())
    if result.skipped:
        click.echo(f"{result.out_dir} already holds this evaluation (same model and settings); showing it.")
    click.echo(summary(result))
    if per_class:
        click.echo("")
        click.echo(per_class_text(result.per_class))
    click.echo(f"\nwritten to {result.out_dir}")


def summary(result) -> str:
    """The headline metrics of an `EvaluationResult` and, for crops or captures, its levels."""
    from serengeti_tf.evaluate.evaluation import summary_text
    from serengeti_tf.evaluate.levels import levels_text

    metrics = result.metrics
    unit = "crops" if metrics.get("level") == "crop" else "images"
    title = f"{result.out_dir.parent.name}: {metrics.get('split', '')} split, {metrics['num_examples']} {unit}"
    return "\n".join(filter(None, [summary_text(metrics, title), levels_text(metrics)]))
