"""`serengeti-tf demo`: synthetic data -> prepare -> baseline and two-phase runs -> report, in a time budget."""

from __future__ import annotations

import click

from serengeti_tf_cli import progress
from serengeti_tf_cli.common import SEED, OutputPath


@click.command("demo")
@click.option("-o", "--out", "out_dir", type=OutputPath(file_okay=False), default="demo_out",
              show_default=True, help="Folder for the demo's data, prepared shards, runs and report.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=10, show_default=True,
              help="Time budget. The demo times a few training steps on this machine first, then picks "
                   "the number of species, input size, samplers, seeds and epochs that fit, and says what "
                   "it chose.")
@click.option("--smoke", is_flag=True, help="A tiny fixed-size version that skips the timing (used by the tests).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the synthetic data.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one demo setting after sizing, e.g. --set train.epochs=3 "
                   "(not counted in the time estimate).")
def demo(out_dir, minutes, smoke, seed, overrides) -> None:
    """Run the whole two-phase comparison on built-in synthetic camera-trap data within a time budget (CPU).

    The data is a synthetic long tail of clearly different species (the rarest 50x rarer in training
    than the most frequent, every species with >= 5 test images). It ends with the verdict: baseline
    vs the best two-phase model, with intervals, and the report's path. Rerun with the same --out to
    continue an interrupted demo; it keeps the settings it chose first.
    """
    from serengeti_tf.demo.runner import run_demo
    run_demo(out_dir, smoke=smoke, overrides=overrides, seed=seed, minutes=minutes, on_event=progress.Terminal())
