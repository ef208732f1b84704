"""`serengeti-tf prepare OUT_DIR`: metadata + images -> training-ready, class-sharded TFRecords."""

from __future__ import annotations

import click

from serengeti_tf.choices import SOURCE_FORMATS, SPLIT_GROUPINGS
from serengeti_tf_cli import progress
from serengeti_tf_cli.common import ChoiceOption, RegistryChoice, config_options, resolve_config


def _seasons(ctx, param, values: tuple[str, ...]) -> tuple[int, ...]:
    """Accepts `--seasons 9 --seasons 10` and `--seasons 9,10`."""
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().upper().removeprefix("S")
            if not part:
                continue
            if not (part.isascii() and part.isdigit()):  # isdigit alone accepts "²"
                raise click.BadParameter(f"expected season numbers like 9 or 9,10, got {value!r}")
            out.append(int(part))
    return tuple(out)


@click.command("prepare")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--metadata", multiple=True, type=click.Path(),
              help="Metadata file: the LILA CSV pair (give both), a COCO Camera Traps JSON, or a plain CSV. "
                   "Repeatable. Omit for a folder-per-class layout.")
@click.option("--image-root", type=click.Path(), help="Folder the image paths are relative to.")
@click.option("--format", "source_format", type=RegistryChoice(SOURCE_FORMATS, "auto"),
              help="Metadata format (default: auto-detect).")
@click.option("--seasons", multiple=True, callback=_seasons, metavar="N[,N...]",
              help="Snapshot Serengeti seasons to keep, e.g. --seasons 9 (repeatable or comma list).")
@click.option("--image-size", type=int, help="Shorter side of the stored images in pixels (default 256).")
@click.option("--group-by", cls=ChoiceOption, registry=SPLIT_GROUPINGS,
              help="Split unit: {choices} [default: capture]")
@click.option("--seed", type=int, help="Seed of the split and the shard order.")
@click.option("--workers", type=int, help="Image worker processes (0 = every core).")
@click.option("--detections", type=click.Path(dir_okay=False),
              help="MegaDetector batch-output JSON: each detection crop becomes one example "
                   "(settings under data.crops: category, threshold, select, padding, square, min_size).")
@click.option("--strip-prefix", help="Removed from the start of the MD file's image paths (e.g. 'C:\\cams\\'; "
                                    "data.detections_strip_prefix). Absolute paths are otherwise rebased onto "
                                    "--image-root by finding their files there.")
@click.option("--allow-outside-root", is_flag=True,
              help="Read metadata paths outside --image-root (absolute, `..`, symlinks out of it); by default "
                   "they are dropped as outside_root.")
@click.option("--runner", type=click.Choice(["local", "beam"]),
              help="Image stage on a local process pool (default) or an Apache Beam pipeline (needs [beam]).")
@click.option("--beam-options", help='Beam pipeline options, e.g. "--runner=DataflowRunner --project=P ..." '
                                     "(default: DirectRunner, multi-process, --workers processes).")
@click.option("--overwrite", is_flag=True, help="Replace an output folder holding a different dataset.")
@config_options
def prepare(out_dir, metadata, image_root, source_format, seasons, image_size, group_by, seed, workers,
            detections, strip_prefix, allow_outside_root, runner, beam_options, overwrite, config_files,
            overrides) -> None:
    """Prepare OUT_DIR: filter, split 80/10/10 by capture, and write class-sharded TFRecords.

    OUT_DIR, --image-root and --metadata may be object-store URLs (gs://, s3://, ...).

    Rerunning continues an interrupted run and does nothing when the dataset is up to date.
    """
    from serengeti_tf.data.prepare import format_summary, prepare_dataset

    config = resolve_config(config_files, overrides, {
        "data.metadata": metadata, "data.image_root": image_root, "data.source_format": source_format,
        "data.seasons": seasons, "data.image_size": image_size, "data.group_by": group_by,
        "data.seed": seed, "data.workers": workers,
        "data.detections": detections, "data.detections_strip_prefix": strip_prefix,
        "data.allow_outside_root": allow_outside_root or None, "data.runner": runner,
        "data.beam_options": beam_options})
    summary = prepare_dataset(config, out_dir, overwrite=overwrite, on_event=progress.Terminal())
    click.echo(format_summary(summary))
