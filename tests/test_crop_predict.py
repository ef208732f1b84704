"""predict --detections: per-crop and per-image predictions, empty images, skipped ones, captures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tree_hashes
from PIL import Image

from serengeti_tf.data import detections
from serengeti_tf.evaluate import crop_predict
from serengeti_tf.testing import write_tiny_run

CLASSES = ["elephant", "gazellethomsons", "zebra"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("crop_predict") / "run", CLASSES)


def _folder(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c", "d", "e"):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
    (images / "e.jpg").write_bytes((images / "e.jpg").read_bytes()[:300])  # truncated
    md = detections.write_md_file(root / "md.json", [
        {"file": "a.jpg", "detections": [{"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.3, 0.4]},
                                         {"category": "1", "conf": 0.3, "bbox": [0.5, 0.5, 0.3, 0.3]},
                                         {"category": "2", "conf": 0.95, "bbox": [0.0, 0.0, 0.2, 0.2]}]},
        {"file": "b.jpg", "detections": [{"category": "1", "conf": 0.1, "bbox": [0.1, 0.1, 0.3, 0.4]}]},
        {"file": "d.jpg", "failure": "Failure image access"},
        {"file": "e.jpg", "detections": [{"category": "1", "conf": 0.8, "bbox": [0.1, 0.1, 0.3, 0.4]}]},
    ])
    assert md is None
    return images, root / "md.json"


def test_predict_detections_per_crop_per_image_empty_skipped_and_captures(tiny_run, tmp_path):
    images, md = _folder(tmp_path)
    before = tree_hashes(images)
    captures = tmp_path / "captures.csv"
    pd.DataFrame({"path": ["a.jpg", "b.jpg"], "capture_id": ["k", "k"]}).to_csv(captures, index=False)
    out = tmp_path / "out" / "pred.csv"
    out.parent.mkdir()
    result = crop_predict.predict_detections(tiny_run, images, md, out, top_k=3, batch_size=2, capture_ids=captures)
    assert tree_hashes(images) == before
    per_image = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert sorted(per_image.index) == ["a.jpg", "b.jpg"]
    assert per_image.loc["a.jpg", "status"] == "classified" and per_image.loc["a.jpg", "num_crops"] == 2
    assert per_image.loc["b.jpg", "status"] == "empty" and per_image.loc["b.jpg", "predicted"] == "empty"
    assert per_image.loc["b.jpg", "max_detection_conf"] == pytest.approx(0.1)
    assert per_image.loc["a.jpg", "max_detection_conf"] == pytest.approx(0.9)
    crops = pd.read_csv(tmp_path / "out" / "pred.crops.csv")
    assert crops["path"].tolist() == ["a.jpg", "a.jpg"] and crops["detection_conf"].tolist() == [0.9, 0.3]

    def probs(row) -> dict:
        return {row[f"top{j}_species"]: float(row[f"top{j}_prob"]) for j in (1, 2, 3)}

    crop_probs = [probs(r) for _, r in crops.iterrows()]
    image_probs = probs(per_image.loc["a.jpg"])
    for name in CLASSES:  # the image is the confidence-weighted mean of its crops
        expected = (0.9 * crop_probs[0][name] + 0.3 * crop_probs[1][name]) / 1.2
        assert image_probs[name] == pytest.approx(expected, abs=2e-6)
    skipped = pd.read_csv(tmp_path / "out" / "pred.skipped.csv").set_index("path")["error"]
    assert skipped["c.jpg"] == "not in the detections file"
    assert skipped["d.jpg"].startswith("detector failure")
    assert skipped["e.jpg"].startswith("unreadable image")
    capture_table = pd.read_csv(tmp_path / "out" / "pred.captures.csv")
    assert capture_table.loc[0, "num_images"] == 2 and capture_table.loc[0, "num_classified"] == 1
    assert capture_table.loc[0, "predicted"] == per_image.loc["a.jpg", "predicted"]
    assert (result["classified"], result["empty"], result["skipped"], result["crops"]) == (1, 1, 3, 2)
    again = crop_predict.predict_detections(tiny_run, images, md, out, top_k=3, batch_size=2, capture_ids=captures)
    assert again["already_done"]


def test_cli_predict_detections(tiny_run, tmp_path, capsys):
    from serengeti_tf_cli.main import main

    images, md = _folder(tmp_path)
    out = tmp_path / "cli.csv"
    main(["predict", str(tiny_run), str(images), "-o", str(out), "--detections", str(md),
          "--set", "data.crops.threshold=0.05"])
    printed = capsys.readouterr().out
    assert "2 classified" in printed and "0 empty" in printed
    assert pd.read_csv(out)["status"].tolist() == ["classified", "classified"]
