"""`score-detections`: an MD file's own classifications (e.g. SpeciesNet in MD format) scored against
labels as a comparison model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import invoke_cli

from serengeti_tf.data import detections
from serengeti_tf.evaluate import md_scores

BOX = [0.1, 0.1, 0.3, 0.3]


def _det(conf, classes=None, category="1"):
    out = {"category": category, "conf": conf, "bbox": BOX}
    if classes is not None:
        out["classifications"] = classes
    return out


def _files(tmp_path: Path) -> tuple[Path, Path]:
    images = [
        {"file": "a.jpg", "detections": [_det(0.9, [["1", 0.8], ["2", 0.1]])]},                 # zebra: right
        # Two boxes, weighted by detector confidence: zebra (0.9*0.3 + 0.3*1.0)/1.2, dikdik 0.9*0.6/1.2
        {"file": "b.jpg", "detections": [_det(0.9, [["2", 0.6], ["1", 0.3]]), _det(0.3, [["1", 1.0]])]},
        {"file": "c.jpg", "detections": [_det(0.9, [["3", 0.9]])]},                              # lion: not a label
        {"file": "d.jpg", "detections": [_det(0.05, [["2", 0.9]])]},                             # below threshold
        {"file": "e.jpg", "detections": [_det(0.9, [["2", 0.7]], category="2")]},               # a person box
        {"file": "f.jpg", "detections": [_det(0.9, [["2", 0.95]])]},                             # dikdik: right
    ]
    md = tmp_path / "speciesnet_md.json"
    detections.write_md_file(md, images, format_version="1.4", categories={"1": "animal", "2": "person"},
                             classification_categories={"1": "Zebra", "2": "Dik-dik", "3": "Lion"})
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"],
                  "label": ["zebra", "dikdik", "zebra", "dikdik", "dikdik", "dikdik", "zebra"]}).to_csv(labels,
                                                                                                         index=False)
    return md, labels


def test_image_prediction_is_the_confidence_weighted_mean_of_the_boxes(tmp_path):
    md, _ = _files(tmp_path)
    found = detections.read_detections(md)
    table = md_scores.image_predictions(found, md_scores.cfg.CropConfig()).set_index("image")
    # b: zebra (0.9 * 0.3 + 0.3 * 1.0) / 1.2 = 0.475, dikdik 0.9 * 0.6 / 1.2 = 0.45
    assert table.loc[1, "predicted"] == "zebra" and table.loc[1, "confidence"] == pytest.approx(0.475)
    assert table.loc[1, "classified_boxes"] == 2
    assert sorted(table.index) == [0, 1, 2, 5]  # d below the threshold, e a person


def test_scores_against_labels_with_unclassified_and_outside_names(tmp_path):
    md, labels = _files(tmp_path)
    result = md_scores.score_md_classifications(md, labels, tmp_path / "out")
    rows = pd.read_csv(tmp_path / "out" / "predictions.csv", keep_default_na=False).set_index("path")
    assert rows["predicted"].to_dict() == {"a.jpg": "zebra", "b.jpg": "zebra", "c.jpg": "lion", "d.jpg": "empty",
                                           "e.jpg": "empty", "f.jpg": "dikdik", "g.jpg": "empty"}
    m = result["metrics"]
    assert m["images"] == 7 and m["accuracy"] == pytest.approx(2 / 7)
    assert m["coverage"] == pytest.approx(4 / 7) and m["not_in_md_file"] == 1
    assert m["predicted_outside_labels"] == ["empty", "lion"]
    # zebra: tp 1 (a), predicted 2 (a, b), support 3 -> f1 = 2/5; dikdik: tp 1, predicted 1, support 4 -> 2/5
    per = pd.read_csv(tmp_path / "out" / "per_class.csv").set_index("species")
    assert per.loc["zebra", "f1"] == pytest.approx(0.4) and per.loc["dikdik", "f1"] == pytest.approx(0.4)
    assert m["macro_f1"] == pytest.approx(0.4)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["accuracy"] == pytest.approx(2 / 7)
    assert (tmp_path / "out" / "config.yaml").is_file() is False  # library call without a config


def test_cli_score_detections_and_a_file_without_classifications(tmp_path):
    md, labels = _files(tmp_path)
    result = invoke_cli(["score-detections", md, "--labels", labels, "-o", tmp_path / "cli",
                         "--set", "data.crops.threshold=0.01"])
    assert result.exit_code == 0, result.output
    assert "on 7 labelled images" in result.output and (tmp_path / "cli" / "config.yaml").is_file()
    rows = pd.read_csv(tmp_path / "cli" / "predictions.csv", keep_default_na=False).set_index("path")
    assert rows.loc["d.jpg", "predicted"] == "dikdik"  # the threshold from --set
    plain = tmp_path / "plain.json"
    detections.write_md_file(plain, [{"file": "a.jpg", "detections": [_det(0.9)]}])
    bad = invoke_cli(["score-detections", plain, "--labels", labels, "-o", tmp_path / "bad"])
    assert bad.exit_code == 2 and "holds no classifications" in bad.output


def test_real_ena24_classifications_score_against_its_labels(shared_data, tmp_path):
    folder = shared_data / "other_formats" / "ena24_small"
    if not (folder / "md_annotations.json").is_file():
        pytest.skip("ena24_small/md_annotations.json absent")
    result = md_scores.score_md_classifications(folder / "md_annotations.json", folder / "labels.csv", tmp_path / "o")
    raw = json.loads((folder / "md_annotations.json").read_text())
    labels = pd.read_csv(folder / "labels.csv")
    # Expected straight from the file: each image's single box's top classification vs its label.
    names = raw["classification_categories"]
    top = {i["file"]: names[i["detections"][0]["classifications"][0][0]] for i in raw["images"]}
    expected = sum(top[p] == label.lower().replace(" ", "_") for p, label in zip(labels["filepath"], labels["label"]))
    assert result["metrics"]["images"] == len(labels)
    assert result["metrics"]["accuracy"] == pytest.approx(expected / len(labels))
