"""Issue 18 item 5: every evaluation level (crop, image, capture) and the whole-frame vs crop
comparison carry the single-model intervals (captures resampled within each species)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serengeti_tf import config as cfg
from serengeti_tf.evaluate import levels
from serengeti_tf.evaluate.evaluation import captures_frame, predictions_frame
from serengeti_tf.io_utils import write_json

NAMES = ["aardvark", "buffalo", "cheetah"]
INTERVAL_COLUMNS = ["accuracy_ci_low", "accuracy_ci_high", "macro_f1_well_tested", "macro_f1_well_tested_species",
                    "macro_f1_well_tested_ci_low", "macro_f1_well_tested_ci_high"]


def crop_split(seed: int = 0):
    """60 captures of 2 images; each image 1-2 crops; species 2 has only 4 captures (no macro F1 CI)."""
    rng = np.random.default_rng(seed)
    capture_species = np.concatenate([np.zeros(28, int), np.ones(28, int), np.full(4, 2)])
    rows = []
    for c, species in enumerate(capture_species):
        for i in range(2):
            for k in range(1 + (c + i) % 2):
                rows.append({"path": f"img/{c}_{i}.jpg", "capture_id": f"cap{c}", "label": species, "crop": k,
                             "detection_conf": 0.5 + 0.1 * k})
    meta = pd.DataFrame(rows)
    labels = meta["label"].to_numpy()
    right = rng.random(len(meta)) < 0.8
    pred = np.where(right, labels, (labels + 1) % 3)
    probs = np.full((len(meta), 3), 0.1)
    probs[np.arange(len(meta)), pred] = 0.8
    return meta, labels, probs


def test_every_level_has_accuracy_and_well_tested_macro_f1_intervals(tmp_path):
    meta, labels, probs = crop_split()
    config = cfg.EvalConfig(bootstrap_samples=200, seed=3)
    result = levels.evaluate_levels(tmp_path, meta, labels, probs, NAMES, dict.fromkeys(NAMES, 100), config)
    table = pd.read_csv(tmp_path / "levels.csv")
    assert table["level"].tolist() == ["crop", "image", "capture"]
    assert table[INTERVAL_COLUMNS].notna().all().all()
    assert ((table["accuracy_ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_ci_high"])).all()
    assert table["macro_f1_well_tested_species"].tolist() == [2, 2, 2]  # cheetah: 4 captures
    for level in ("crop", "image", "capture"):
        boot = result["levels"][level]["bootstrap"]
        assert boot["unit"] == "capture" and boot["num_units"] == 60  # captures are the units at every level
        assert boot["macro_f1_well_tested"]["species"] == ["aardvark", "buffalo"]
    per_class = pd.read_csv(tmp_path / "per_class_capture.csv", keep_default_na=False)
    cheetah = per_class[per_class["species"] == "cheetah"].iloc[0]
    assert cheetah["test_captures"] == "4" and cheetah["in_macro_f1_interval"] == "False"
    assert 0 <= float(cheetah["recall_ci_low"]) <= cheetah["recall"] <= float(cheetah["recall_ci_high"])
    assert "[" in levels.levels_text(result)  # the printout shows the intervals


def fake_eval_dir(path, meta, labels, probs, crop_run: bool, samples: int):
    """An eval/ folder with just what `compare_levels` reads."""
    path.mkdir(parents=True)
    write_json(path / "metrics.json", {"level": "crop" if crop_run else "image",
                                       "bootstrap": {"samples": samples, "seed": 1, "unit": "capture"}})
    if crop_run:
        images, image_probs = levels.image_level(meta, labels, probs)
        frame = images
    else:
        frame = meta.drop_duplicates("path").reset_index(drop=True)
        image_probs = probs[meta.drop_duplicates("path").index]
    y = frame["label"].to_numpy()
    name = "image_predictions.csv" if crop_run else "predictions.csv"
    predictions_frame(frame["path"], frame["capture_id"], y, image_probs, NAMES, 2).to_csv(path / name, index=False)
    captures_frame(y, image_probs, frame["capture_id"], NAMES, 2).to_csv(path / "captures.csv", index=False)
    return path


def test_compare_levels_gives_intervals_on_the_shared_images_and_captures(tmp_path):
    meta, labels, probs = crop_split()
    other_meta, other_labels, other_probs = crop_split(seed=1)
    dirs = {"crops": fake_eval_dir(tmp_path / "a", meta, labels, probs, True, 150),
            "frames": fake_eval_dir(tmp_path / "b", other_meta, other_labels, other_probs, False, 150)}
    table = levels.compare_levels(dirs, NAMES, samples=150, seed=1)
    assert len(table) == 4 and table[INTERVAL_COLUMNS].notna().all().all()
    assert (table["macro_f1_well_tested_species"] == 2).all()
    assert ((table["accuracy_ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_ci_high"])).all()
    assert "macro_f1_well_tested" in levels.level_comparison_markdown(table)
    # Without resamples the columns are there but empty (no interval claimed).
    assert levels.compare_levels(dirs, NAMES)[INTERVAL_COLUMNS].isna().all().all()
    assert levels._bootstrap_settings(dirs.values()) == (150, 1)


def test_levels_without_resamples_claim_no_interval(tmp_path):
    meta, labels, probs = crop_split()
    config = cfg.EvalConfig(bootstrap_samples=0)
    levels.evaluate_levels(tmp_path, meta, labels, probs, NAMES, dict.fromkeys(NAMES, 100), config)
    assert pd.read_csv(tmp_path / "levels.csv")[INTERVAL_COLUMNS].isna().all().all()
