"""`serengeti-tf demo`: synthetic data -> prepare -> baseline and two-phase runs -> report."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="demo_out",
              show_default=True, help="Folder for the demo's data, prepared shards, runs and report.")
@click.option("--smoke", is_flag=True, help="A tiny, minute-long version (used by the tests).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic data.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one demo setting, e.g. --set train.epochs=3.")
def demo(out_dir, smoke, seed, overrides) -> None:
    """Run the whole two-phase comparison on built-in synthetic camera-trap data (CPU, minutes)."""
    from serengeti_tf.demo import run_demo

    run_demo(out_dir, smoke=smoke, overrides=overrides, seed=seed, print_fn=click.echo)
