"""`serengeti-tf plan`: the phase-1 sampling plan of a sampler, as CSV, bar plot and totals."""

from __future__ import annotations

import click

from serengeti_tf.choices import SAMPLERS
from serengeti_tf_cli.common import NamesInHelp, OutputPath, config_options, resolve_config


@click.command("plan")
@click.option("--sampler", type=str, default=None, cls=NamesInHelp, names_from=SAMPLERS,
              help="One of {names} (default: sampler.name).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Prepared dataset folder (its train counts are used).")
@click.option("--counts", "counts_csv", type=click.Path(dir_okay=False), default=None,
              help="CSV with columns species,count instead of a prepared dataset.")
@click.option("-o", "--out", "out_dir", type=OutputPath(file_okay=False), default=None,
              help="Output folder (default: plan-SAMPLER).")
@click.option("--overwrite", is_flag=True, help="Replace an output folder holding other output.")
@config_options
def plan(sampler, data_dir, counts_csv, out_dir, overwrite, config_files, overrides) -> None:
    """Write the per-class phase-1 targets of a sampler: plan.csv, plan.png, totals.json, config.yaml."""
    from serengeti_tf.data.dataset import example_unit
    from serengeti_tf.data.sampling import plan_totals, write_plan

    config = resolve_config(config_files, overrides, {"sampler.name": sampler})
    out_dir = out_dir or f"plan-{config.sampler.name}"
    result = write_plan(config, out_dir, data_dir=data_dir, counts_csv=counts_csv, overwrite=overwrite)
    totals = plan_totals(result)
    unit = example_unit(data_dir) if data_dir else "images"
    click.echo(f"sampler {config.sampler.name}: {totals['classes']} classes, {totals['original']:,} original "
               f"-> {totals['target']:,} phase-1 {unit} ({totals['oversampled']} oversampled, "
               f"{totals['undersampled']} undersampled)")
    click.echo(f"wrote {out_dir}/plan.csv, plan.png, totals.json, config.yaml")
