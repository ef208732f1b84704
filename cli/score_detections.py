"""`serengeti-tf score-detections MD.json --labels LABELS -o OUT_DIR`: an MD file's own classifications
scored against labels (a comparison model next to a trained run's `evaluate`)."""

from __future__ import annotations

import click

from serengeti_tf_cli.common import config_options, crop_settings_given, resolve_config


@click.command("score-detections")
@click.argument("md_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--labels", required=True, type=click.Path(exists=True),
              help="A prepared dataset folder (its --split images, as `evaluate` scores them) or a CSV with "
                   "path and label columns.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for metrics.json, per_class.csv, predictions.csv, config.yaml.")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Split of a prepared dataset to score.")
@click.option("--image-root", type=click.Path(file_okay=False), default=None,
              help="Folder the label paths are relative to (default: the dataset's, or the CSV's folder).")
@click.option("--strip-prefix", default=None, help="Removed from the start of the MD file's image paths.")
@click.option("--overwrite", is_flag=True, help="Replace a folder holding another scoring.")
@config_options
def score_detections(md_file, labels, out_dir, split, image_root, strip_prefix, overwrite, config_files,
                     overrides) -> None:
    """Score the classifications already in MD_FILE (SpeciesNet, MegaDetector classifiers, ...) against labels.

    Boxes are selected with data.crops (the dataset's settings, or --config/--set data.crops.*).
    """
    from serengeti_tf.evaluate.md_scores import score_md_classifications, summary_text

    config = resolve_config(config_files, overrides)
    given = crop_settings_given(config_files, overrides)
    result = score_md_classifications(md_file, labels, out_dir, split=split, image_root=image_root,
                                      strip_prefix=strip_prefix, crop_config=config.data.crops if given else None,
                                      config=config, overwrite=overwrite)
    click.echo(summary_text(result))
