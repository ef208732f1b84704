"""`serengeti-tf predict MODEL_OR_RUN INPUT -o predictions.csv`: classify a folder or a list of images."""

from __future__ import annotations

import logging

import click

from serengeti_tf.errors import UserError
from serengeti_tf_cli import progress
from serengeti_tf_cli.common import OutputPath, config_options, crop_settings_given, resolve_config


@click.command("predict")
@click.argument("model_or_run", type=click.Path(exists=True))
@click.argument("inputs", metavar="INPUT", type=click.Path(exists=True))
@click.option("-o", "--out", "out_csv", type=OutputPath(dir_okay=False), default="predictions.csv",
              show_default=True, help="Predictions CSV; .skipped.csv, .captures.csv, .meta.json, "
                                      ".config.yaml are written beside it.")
@click.option("--top-k", type=int, default=None, help="Species per image in the output (eval.top_k, default 5).")
@click.option("--batch-size", type=int, default=None, help="Images per batch (eval.batch_size, default 128).")
@click.option("--classes", type=click.Path(dir_okay=False, exists=True), default=None,
              help="class_map.json; required with a bare .keras file.")
@click.option("--captures", type=click.Path(dir_okay=False, exists=True), default=None,
              help="CSV with path and capture_id columns: adds capture-level predictions.")
@click.option("--image-size", type=int, default=None,
              help="Shorter side images are decoded to before the eval crop (default: the run's dataset).")
@click.option("--detections", type=click.Path(dir_okay=False, exists=True), default=None,
              help="MegaDetector batch-output JSON: classify each detection crop; writes per-image (OUT.csv, "
                   "images without detections as empty) and per-crop (OUT.crops.csv) predictions. Crop "
                   "settings: the run's dataset data.crops unless --config/--set data.crops.* is given.")
@click.option("--strip-prefix", default="", help="With --detections: removed from the start of the MD file's image "
                                                 "paths (e.g. 'C:\\cams\\'); absolute paths are otherwise rebased "
                                                 "onto INPUT by finding their files there.")
@click.option("--md-out", type=click.Path(dir_okay=False), default=None,
              help="With --detections: also write the MD file with this model's classifications added "
                   "(MegaDetector format 1.6, for Timelapse / AddaxAI).")
@click.option("--group-by-time", type=float, default=None, metavar="SECONDS",
              help="Form captures from EXIF DateTimeOriginal: per folder, images at most SECONDS apart join "
                   "a capture (not with --captures).")
@click.option("--camtrap-dp-out", type=click.Path(file_okay=False), default=None,
              help="Also write the predictions as a Camtrap DP 1.0 package in this folder (INPUT must be a Camtrap "
                   "DP datapackage.json; observations by machine, boxes with --detections).")
@click.option("--scientific-names", type=click.Path(dir_okay=False, exists=True), default=None,
              help="CSV label,scientificName read before the shipped Snapshot Serengeti names "
                   "(eval.scientific_names); used by --md-out descriptions and --camtrap-dp-out.")
@click.option("--allow-outside-root", is_flag=True,
              help="Read listed images outside INPUT's folder (absolute, `..`, symlinks out of it); refused "
                   "by default.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output made with another model or inputs.")
@config_options
def predict(model_or_run, inputs, out_csv, top_k, batch_size, classes, captures, image_size, detections,
            strip_prefix, md_out, group_by_time, camtrap_dp_out, scientific_names, allow_outside_root, overwrite,
            config_files, overrides) -> None:
    """Classify images. INPUT is a folder, a CSV (path[, capture_id]), a text file of paths or a
    Camtrap DP datapackage.json (its image media).

    Unreadable images are skipped, listed with the reason in OUT.skipped.csv.
    """
    from serengeti_tf.evaluate.predict import predict_images, summary_text

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if captures and group_by_time is not None:
        raise UserError("--captures and --group-by-time both give capture ids: use one of them")
    if (md_out or strip_prefix) and not detections:
        raise UserError("--md-out and --strip-prefix need --detections MD.json")
    config = resolve_config(config_files, overrides, {"eval.top_k": top_k, "eval.batch_size": batch_size,
                                                      "eval.scientific_names": scientific_names})
    if camtrap_dp_out:
        from serengeti_tf.evaluate import camtrap_dp_out as camtrap

        camtrap.check_request(inputs, camtrap_dp_out, {"MODEL_OR_RUN": model_or_run, "--out": out_csv}, overwrite,
                              config.eval.scientific_names or None)
    if detections:
        from serengeti_tf.evaluate import crop_predict

        given = crop_settings_given(config_files, overrides)
        result = crop_predict.predict_detections(
            model_or_run, inputs, detections, out_csv, crop_config=config.data.crops if given else None,
            top_k=config.eval.top_k, batch_size=config.eval.batch_size, capture_ids=captures, classes=classes,
            image_size=image_size, config=config, overwrite=overwrite, strip_prefix=strip_prefix, md_out=md_out,
            group_by_time=group_by_time, allow_outside_root=allow_outside_root, on_event=progress.Terminal())
        click.echo(crop_predict.summary_text(result))
    else:
        result = predict_images(model_or_run, inputs, out_csv, top_k=config.eval.top_k,
                                batch_size=config.eval.batch_size, capture_ids=captures, classes=classes,
                                image_size=image_size, config=config, overwrite=overwrite,
                                group_by_time=group_by_time, allow_outside_root=allow_outside_root,
                                on_event=progress.Terminal())
        click.echo(summary_text(result))
    if camtrap_dp_out:
        written = camtrap.write_camtrap_dp(camtrap_dp_out, inputs, result["outputs"],
                                           scientific_names=config.eval.scientific_names or None, overwrite=overwrite)
        click.echo(camtrap.summary_text(written))
