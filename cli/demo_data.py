"""`serengeti-tf demo-data OUT`: write the synthetic LILA-layout Snapshot Serengeti demo dataset."""

from __future__ import annotations

import click

from serengeti_tf.demo.class_counts import DEFAULT_MIN_CAPTURES, DEFAULT_SCALE
from serengeti_tf_cli import progress
from serengeti_tf_cli.common import SEED, config_options, resolve_config


def _size(ctx, param, value: str | None) -> tuple[int, int] | None:
    """Parses `128x96` into (width, height)."""
    if value is None:
        return None
    parts = value.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise click.BadParameter(f"expected WIDTHxHEIGHT like 128x96, got {value!r}")
    return int(parts[0]), int(parts[1])


@click.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--scale", type=float, default=None,
              help="Fraction of the paper's Table 4 train counts to draw per class (default 0.015, "
                   "about 2,400 images).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Same seed, byte-identical output.")
@click.option("--min-captures", type=int, default=None,
              help="Captures every class keeps at least (default 1).")
@click.option("--size", "image_size", callback=_size, default=None, metavar="WxH",
              help="Image size in pixels (default 128x96).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT_DIR holding something else.")
@config_options
def demo_data(out_dir, scale, seed, min_captures, image_size, overwrite, config_files, overrides) -> None:
    """Write a SYNTHETIC dataset in the LILA Snapshot Serengeti layout into OUT_DIR.

    Both metadata schemas (the CSV pair and COCO Camera Traps JSON), the paper's 52 classes with
    Table 4's imbalance scaled down, multi-frame captures at several sites, day and night-IR frames,
    and a few blank, human and two-species captures. OUT_DIR/config.yaml points `prepare` at it
    (pass --preset demo to store the demo's CPU settings in it).
    """
    from serengeti_tf.demo.render import DEFAULT_IMAGE_SIZE
    from serengeti_tf.demo.writer import format_summary, write_demo_dataset

    config = resolve_config(config_files, overrides)
    summary = write_demo_dataset(
        out_dir, scale=DEFAULT_SCALE if scale is None else scale, seed=seed,
        image_size=image_size or DEFAULT_IMAGE_SIZE,
        min_captures_per_class=DEFAULT_MIN_CAPTURES if min_captures is None else min_captures,
        overwrite=overwrite, config=config, on_event=progress.Terminal())
    click.echo(format_summary(summary))
