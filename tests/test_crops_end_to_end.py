"""The crop path end to end on the synthetic demo with its MD file: prepare -> plan -> phase 1 ->
phase 2 -> evaluate (crop / image / capture) -> compare against the whole-frame run; and the level
arithmetic on hand-made numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serengeti_tf import config as cfg
from serengeti_tf.evaluate import levels
from serengeti_tf_cli.evaluate import summary as evaluation_summary


def test_image_level_is_the_confidence_weighted_mean_and_capture_the_mean_of_images():
    meta = pd.DataFrame({"path": ["a", "a", "b", "c"], "capture_id": ["k", "k", "k", "m"],
                         "detection_conf": [0.9, 0.3, 0.5, 0.8], "crop": [0, 1, 0, 0]})
    probs = np.array([[0.8, 0.2], [0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    images, image_probs = levels.image_level(meta, labels, probs)
    assert images["path"].tolist() == ["a", "b", "c"] and images["num_crops"].tolist() == [2, 1, 1]
    assert image_probs[0] == pytest.approx((0.9 * probs[0] + 0.3 * probs[1]) / 1.2)
    assert image_probs[1] == pytest.approx(probs[2])
    captures, capture_probs = levels.capture_level(images, image_probs)
    assert captures["capture_id"].tolist() == ["k", "m"] and captures["num_images"].tolist() == [2, 1]
    assert capture_probs[0] == pytest.approx((image_probs[0] + image_probs[1]) / 2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from serengeti_tf.data.prepare import prepare_dataset
    from serengeti_tf.demo.detector_boxes import MD_JSON
    from serengeti_tf.demo.lila_metadata import COCO_JSON
    from serengeti_tf.demo.writer import write_demo_dataset

    root = tmp_path_factory.mktemp("crop_e2e")
    data = root / "data"
    write_demo_dataset(data, scale=0.002, seed=0, image_size=(128, 96), min_captures_per_class=3, progress=False)
    base = {"metadata": [str(data / COCO_JSON)], "image_root": str(data), "image_size": 32, "workers": 1}
    frames = root / "frames"
    prepare_dataset(cfg.resolve(updates=[{"data": base}]), frames, progress=False)
    crops_dir = root / "crops"
    crop_summary = prepare_dataset(cfg.resolve(updates=[{"data": {**base, "detections": str(data / MD_JSON),
                                                                  "crops": {"min_size": 4}}}]),
                                   crops_dir, progress=False)
    return root, data, frames, crops_dir, crop_summary


def test_demo_md_file_boxes_every_labelled_animal(demo):
    from serengeti_tf.data import detections
    from serengeti_tf.demo.detector_boxes import MD_JSON
    from serengeti_tf.demo.lila_metadata import IMAGES_CSV

    _, data, _, _, summary = demo
    found = detections.read_detections(data / MD_JSON)
    images = pd.read_csv(data / IMAGES_CSV)
    assert len(found.images) == len(images)
    assert found.problem_counts() == {p: 0 for p in detections.BOX_PROBLEMS}
    assert ((found.boxes[["x", "y"]] >= 0).all().all() and (found.boxes["x"] + found.boxes["w"] <= 1.0001).all())
    # The generator marks about 1 in 20 boxes as missed (conf < 0.2): some species lose images.
    assert sum(summary["no_detection_per_species"].values()) == summary["drops"].get("no_detection", 0) > 0


def test_crop_splits_follow_the_whole_frame_splits(demo):
    _, _, frames, crops_dir, _ = demo
    whole = pd.read_csv(frames / "manifest.csv", keep_default_na=False)
    crop_rows = pd.read_csv(crops_dir / "crops.csv", keep_default_na=False)
    crop_rows = crop_rows[crop_rows["drop_reason"] == ""]
    split_of = dict(zip(whole["path"], whole["split"]))
    assert (crop_rows["path"].map(split_of) == crop_rows["split"]).all()
    assert crop_rows.groupby("capture_id")["split"].nunique().max() == 1


@pytest.mark.slow
def test_crop_path_trains_evaluates_three_levels_and_compares_with_whole_frames(demo):
    from serengeti_tf.data.sampling import write_plan
    from serengeti_tf.evaluate.reporting import compare_runs
    from serengeti_tf.evaluate.run_evaluation import evaluate_run
    from serengeti_tf.train import training

    root, _, frames, crops_dir, _ = demo
    config = cfg.resolve(updates=[{"model": {"input_size": 32},
                                   "train": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2},
                                   "eval": {"bootstrap_samples": 10, "batch_size": 64},
                                   "sampler": {"name": "ros", "shuffle_buffer": 64}}])
    write_plan(config, root / "plan", data_dir=crops_dir)
    assert json.loads((root / "plan" / "totals.json").read_text())["unit"] == "crops"

    def quiet(_line: str) -> None:
        pass

    phase1 = training.train(config, crops_dir, root / "runs" / "ros-phase1", on_event=quiet)
    phase2_config = cfg.from_dict({**cfg.to_dict(config), "train": {**cfg.to_dict(config)["train"], "phase": 2}})
    phase2 = training.train(phase2_config, crops_dir, root / "runs" / "ros-phase2", init_run=phase1, on_event=quiet)
    whole_config = cfg.from_dict({**cfg.to_dict(config), "sampler": {**cfg.to_dict(config)["sampler"], "name": "none"}})
    whole = training.train(whole_config, frames, root / "runs" / "frames-phase1", on_event=quiet)

    result = evaluate_run(phase2)
    metrics, out = result.metrics, result.out_dir
    assert metrics["level"] == "crop" and set(metrics["levels"]) == {"crop", "image", "capture"}
    level_table = pd.read_csv(out / "levels.csv")
    assert level_table["level"].tolist() == ["crop", "image", "capture"]
    images = pd.read_csv(out / "image_predictions.csv", keep_default_na=False)
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(predictions) == metrics["levels"]["crop"]["num_examples"] >= len(images)
    assert len(images) == predictions["path"].nunique() == metrics["levels"]["image"]["num_examples"]
    assert images["num_crops"].sum() == len(predictions)
    assert {"crop", "detection_conf", "box_w"} <= set(predictions.columns)
    assert set(pd.read_csv(out / "per_class.csv", keep_default_na=False)["level"]) == {"crop"}
    assert set(pd.read_csv(out / "per_class_image.csv", keep_default_na=False)["level"]) == {"image"}
    captures = pd.read_csv(out / "captures.csv", keep_default_na=False)
    assert len(captures) == images["capture_id"].nunique() == metrics["levels"]["capture"]["num_examples"]
    assert "image = detector-confidence-weighted mean" in evaluation_summary(result)

    whole_result = evaluate_run(whole)
    assert whole_result.metrics["level"] == "image"
    assert set(whole_result.metrics["levels"]) == {"image", "capture"}
    assert set(pd.read_csv(whole_result.out_dir / "per_class.csv", keep_default_na=False)["level"]) == {"image"}

    report = compare_runs([whole, phase1, phase2], root / "compare", evaluate_missing=True)
    table = pd.read_csv(root / "compare" / "levels_comparison.csv")
    image_rows = table[table["level"] == "image"]
    # Every crop test image is a whole-frame test image (same split), so the shared set is the crop run's.
    assert (image_rows["shared"] == len(images)).all()
    frame_row = image_rows[~image_rows["run"].str.contains("crops")].iloc[0]
    assert frame_row["run_total"] == whole_result.metrics["num_examples"] and frame_row["coverage"] <= 1
    assert "Whole frames and crops on the same test images" in report["markdown"].read_text()
    runs = pd.read_csv(root / "compare" / "runs.csv")
    assert set(runs["level"]) == {"crop", "image"}
    # Paired differences pair runs of one level only (crop phase 2 with its crop phase 1, on crops).
    paired = pd.read_csv(root / "compare" / "paired_differences.csv")
    assert paired["comparison"].tolist() == ["ros (crops) phase 2 vs its phase 1"]
    per_run = pd.read_csv(root / "compare" / "levels.csv")
    assert sorted(per_run["level"]) == sorted(["image", "capture"] + 2 * ["crop", "image", "capture"])
    assert "## Evaluation levels" in report["markdown"].read_text()


@pytest.mark.slow
def test_methods_and_rejection_sampling_run_unchanged_on_crops(demo):
    """Issue-6 methods (a loss with class weights, then head re-balancing) and rejection sampling on crops."""
    from serengeti_tf.train import training
    from serengeti_tf.train.methods import method_overrides

    root, _, _, crops_dir, _ = demo
    train = {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2, "crt_epochs": 1, "crt_steps_per_epoch": 2,
             **method_overrides("focal_cw"), **method_overrides("crt")}
    config = cfg.resolve(updates=[{"model": {"input_size": 32}, "train": train, "eval": {"batch_size": 64},
                                   "sampler": {"name": "rus", "realisation": "rejection", "shuffle_buffer": 64,
                                               "rus_cap": 10}}])
    run = training.train(config, crops_dir, root / "runs" / "methods", on_event=lambda _line: None)
    assert (run / "model.keras").is_file()
    assert json.loads((run / "rebalancing.json").read_text())
