"""`serengeti-tf export RUN_DIR -o OUT --format saved_model|tflite|keras`: a deployable model."""

from __future__ import annotations

import click

from serengeti_tf.choices import EXPORT_FORMATS
from serengeti_tf_cli import progress
from serengeti_tf_cli.common import ChoiceOption, config_options, resolve_config


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Export folder (refused if it holds something else, unless --overwrite).")
@click.option("--format", "export_format", cls=ChoiceOption, registry=EXPORT_FORMATS, default=None,
              help="{choices} [default: saved_model]")
@click.option("--agreement-images", type=int, default=None,
              help="Test-split images to compare the export with the run's model on (0 = none). [default: 256]")
@click.option("--calibration-images", type=int, default=None,
              help="tflite: train-split images (a seeded sample) the int8 variant is calibrated on. [default: 200]")
@click.option("--overwrite", is_flag=True, help="Replace an export folder holding another export.")
@config_options
def export_command(run_dir, out_dir, export_format, agreement_images, calibration_images, overwrite, config_files,
                   overrides) -> None:
    """Export a training run's model with its eval preprocessing inside: uint8 images of any size in,
    class probabilities out; class names in its assets/metadata. Writes export_report.json/.md."""
    from serengeti_tf.models.export import export_run
    config = resolve_config(config_files, overrides, {"export.format": export_format,
                                                      "export.agreement_images": agreement_images,
                                                      "export.calibration_images": calibration_images})
    export_run(run_dir, out_dir, config, overwrite=overwrite, on_event=progress.Terminal())
