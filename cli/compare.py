"""`serengeti-tf compare RUN_DIR... -o OUT_DIR`: the paper's Tables 1-3 and per-class F1-change plots."""

from __future__ import annotations

import click

from serengeti_tf_cli import progress
from serengeti_tf_cli.common import config_options, resolve_config


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Report folder: macro_results.csv/.md, per-class F1 change plots, report.md.")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default=None,
              help="Which evaluation to compare (eval.split, default test).")
@click.option("--evaluate-missing", is_flag=True,
              help="Evaluate runs that have no evaluation yet (otherwise they are an error).")
@click.option("--overwrite", is_flag=True, help="Replace a report folder that holds another comparison.")
@click.option("--head-min", type=int, default=None,
              help="Head classes: at least this many training images (eval.head_min; default: derived).")
@click.option("--tail-max", type=int, default=None,
              help="Tail classes: fewer training images than this (eval.tail_max; default: derived).")
@config_options
def compare(run_dirs, out_dir, split, evaluate_missing, overwrite, head_min, tail_max, config_files,
            overrides) -> None:
    """Compare evaluated runs (baseline, phase 1 and phase 2 per sampler, any seeds)."""
    from serengeti_tf.evaluate.reporting import compare_runs

    config = resolve_config(config_files, overrides, {"eval.split": split, "eval.head_min": head_min,
                                                      "eval.tail_max": tail_max})
    result = compare_runs(run_dirs, out_dir, split=config.eval.split, evaluate_missing=evaluate_missing,
                          config=config, overwrite=overwrite, on_event=progress.Terminal())
    click.echo(result["text"])
    click.echo(f"\nreport: {result['markdown']}")
