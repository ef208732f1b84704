"""`predict --detections MD.json --md-out OUT.json`: the MD file with classifications added, checked
with MegaDetector's own validator (megadetector-utils, installed by .ci/run) and against the format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import invoke_cli, raises_as_cli, tree_hashes
from PIL import Image

from serengeti_tf.data import detections
from serengeti_tf.evaluate import crop_predict
from serengeti_tf.testing import write_tiny_run

CLASSES = ["elephant", "gazellethomsons", "zebra"]
BOX = [0.1, 0.1, 0.5, 0.6]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("md_out") / "run", CLASSES)


def _inputs(root: Path) -> tuple[Path, Path, dict]:
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c", "d"):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
    content = {
        "info": {"format_version": "1.5", "detector": "md_v5a.0.0.pt", "detection_completion_time": "2024-01-01",
                 "detector_metadata": {"typical_detection_threshold": 0.2}},
        "detection_categories": {"1": "animal", "2": "person"},
        # A converted SpeciesNet file: its classifications are replaced (other categories).
        "classification_categories": {"7": "lion"},
        "images": [
            {"file": "a.jpg", "detections": [
                {"category": "1", "conf": 0.9, "bbox": BOX, "classifications": [["7", 0.8]]},
                {"category": "2", "conf": 0.95, "bbox": [0.0, 0.0, 0.2, 0.3]},          # person: not classified
                {"category": "1", "conf": 0.5, "bbox": [0.5, 0.4, 0.4, 0.5]}]},
            {"file": "b.jpg", "detections": [{"category": "1", "conf": 0.05, "bbox": BOX}]},  # below threshold
            {"file": "c.jpg", "detections": []},
            {"file": "d.jpg", "failure": "Failure image access", "detections": None},
            {"file": "not_here.jpg", "detections": [{"category": "1", "conf": 1, "bbox": BOX}]}]}
    md = root / "md.json"
    md.write_text(json.dumps(content, indent=1))
    return images, md, content


def _validate(path: Path) -> dict:
    from PIL import ImageFile

    # MegaDetector's visualization module (imported by the validator) sets this process-wide; serengeti-tf
    # refuses to prepare or predict with it set, so later tests in this process would fail.
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        validator = pytest.importorskip("megadetector.postprocessing.validate_batch_results")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    options = validator.ValidateBatchResultsOptions()
    options.raise_errors = False
    return validator.validate_batch_results(str(path), options)["validation_results"]


def test_md_out_keeps_every_detection_adds_top_k_classifications_and_validates(tiny_run, tmp_path):
    images, md, content = _inputs(tmp_path)
    before = tree_hashes(images) | {"md": md.read_bytes()}
    out = tmp_path / "out" / "md_classified.json"
    result = crop_predict.predict_detections(tiny_run, images, md, tmp_path / "out" / "pred.csv", top_k=2,
                                             batch_size=2, md_out=out,
                                             describe={"zebra": "Equus quagga"}.get)
    assert tree_hashes(images) | {"md": md.read_bytes()} == before  # inputs untouched
    written = json.loads(out.read_text())
    assert written["info"]["format_version"] == "1.6" and written["info"]["detector"] == "md_v5a.0.0.pt"
    assert written["info"]["classifier"].startswith("serengeti-tf ")
    assert written["info"]["classification_completion_time"]
    assert written["classification_categories"] == {"0": "elephant", "1": "gazellethomsons", "2": "zebra"}
    assert written["classification_category_descriptions"] == {"0": "elephant", "1": "gazellethomsons",
                                                                "2": "Equus quagga"}
    # Every image and detection kept, in order, with the same boxes and confidences.
    assert [i["file"] for i in written["images"]] == [i["file"] for i in content["images"]]
    for old, new in zip(content["images"], written["images"]):
        assert [(d["category"], d["conf"], d["bbox"]) for d in old["detections"] or []] == \
            [(d["category"], d["conf"], d["bbox"]) for d in new["detections"] or []]
        assert new.get("failure") == old.get("failure")
    by_file = {i["file"]: i for i in written["images"]}
    a = by_file["a.jpg"]["detections"]
    assert "classifications" not in a[1]  # the person
    assert "classifications" not in by_file["b.jpg"]["detections"][0]  # below the threshold
    assert "classifications" not in by_file["not_here.jpg"]["detections"][0]  # not an input image
    crops = pd.read_csv(tmp_path / "out" / "pred.crops.csv")
    for detection, (_, crop) in zip([a[0], a[2]], crops.iterrows()):  # crops are in confidence order
        pairs = detection["classifications"]
        assert len(pairs) == 2 and all(isinstance(i, str) for i, _ in pairs)
        assert [p for _, p in pairs] == sorted((p for _, p in pairs), reverse=True)
        assert [written["classification_categories"][i] for i, _ in pairs] == [crop["top1_species"],
                                                                               crop["top2_species"]]
        assert [p for _, p in pairs] == pytest.approx([crop["top1_prob"], crop["top2_prob"]], abs=1e-6)
    assert result["md_out"] == {"images": 5, "detections": 5, "classified_detections": 2}
    checked = _validate(out)
    assert checked["errors"] == [], checked
    assert checked["classification_category_id_to_count"]  # the validator saw our classifications


def test_md_out_is_written_on_a_rerun_that_finds_predictions_done_and_by_the_cli(tiny_run, tmp_path):
    images, md, _ = _inputs(tmp_path)
    pred = tmp_path / "pred.csv"
    crop_predict.predict_detections(tiny_run, images, md, pred)
    out = tmp_path / "later.json"
    again = crop_predict.predict_detections(tiny_run, images, md, pred, md_out=out)
    assert again["already_done"] and again["md_out"]["classified_detections"] == 2
    assert _validate(out)["errors"] == []
    cli_out = tmp_path / "cli.json"
    result = invoke_cli(["predict", tiny_run, images, "-o", tmp_path / "cli.csv", "--detections", md,
                         "--md-out", cli_out])
    assert result.exit_code == 0, result.output
    assert "MegaDetector file: 2 of 5 detections on 5 images classified" in result.output
    assert json.loads(cli_out.read_text())["info"]["format_version"] == "1.6"


@pytest.mark.parametrize("args, message", [
    (["--md-out", "x.txt"], "--md-out must be a .json file"),
    (["--md-out", "{md}"], "--md-out"),
])
def test_md_out_bad_names_are_one_line_errors(tiny_run, tmp_path, args, message):
    images, md, _ = _inputs(tmp_path)
    args = [a.replace("{md}", str(md)) for a in args]
    result = invoke_cli(["predict", tiny_run, images, "-o", tmp_path / "p.csv", "--detections", md, *args])
    assert result.exit_code == 2 and message in result.output and result.output.strip().count("\n") == 0
    without = invoke_cli(["predict", tiny_run, images, "-o", tmp_path / "p.csv", "--md-out", tmp_path / "o.json"])
    assert without.exit_code == 2 and "need --detections" in without.output


def test_write_md_file_round_trip_of_the_output_reads_its_classifications(tiny_run, tmp_path):
    """The written file is also valid input: our reader keeps its classifications (a comparison model)."""
    images, md, _ = _inputs(tmp_path)
    out = tmp_path / "md_out.json"
    crop_predict.predict_detections(tiny_run, images, md, tmp_path / "pred.csv", md_out=out)
    found = detections.read_detections(out, images)
    assert found.format_version == "1.6" and set(found.classification_categories.values()) == set(CLASSES)
    assert found.classifications["box"].nunique() == 2


def test_md_out_writes_paths_relative_to_input_when_the_file_has_windows_paths(tiny_run, tmp_path):
    """Timelapse needs paths relative to the image set's root: rebased ones are written that way."""
    images, md, content = _inputs(tmp_path)
    for image in content["images"]:
        image["file"] = "C:\\Users\\ranger\\cams\\" + image["file"]
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps(content))
    out = tmp_path / "relative.json"
    result = crop_predict.predict_detections(tiny_run, images, windows, tmp_path / "pred.csv", md_out=out)
    written = json.loads(out.read_text())
    # The prefix found from the files present applies to every path under it (not_here.jpg too).
    assert [i["file"] for i in written["images"]] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "not_here.jpg"]
    assert result["md_out"]["classified_detections"] == 2
    assert _validate(out)["errors"] == []


def test_an_existing_md_out_is_replaced_only_by_the_same_predictions_or_overwrite(tiny_run, tmp_path):
    images, md, _ = _inputs(tmp_path)
    out = tmp_path / "theirs.json"
    out.write_text('{"info": {}}')
    before = out.read_text()
    with raises_as_cli(match="already exists .*--md-out"):
        crop_predict.predict_detections(tiny_run, images, md, tmp_path / "pred.csv", md_out=out)
    assert out.read_text() == before and not (tmp_path / "pred.csv").exists()
    crop_predict.predict_detections(tiny_run, images, md, tmp_path / "pred.csv", md_out=out, overwrite=True)
    again = crop_predict.predict_detections(tiny_run, images, md, tmp_path / "pred.csv", md_out=out)
    assert again["already_done"] and again["md_out"]["classified_detections"] == 2  # ours: replaced
    with pytest.raises(crop_predict.UserError, match="already exists"):  # other settings: refused
        crop_predict.predict_detections(tiny_run, images, md, tmp_path / "pred.csv", md_out=out, top_k=2)


def test_md_out_on_the_real_ena24_md_file_validates(shared_data, tiny_run, tmp_path):
    """A real MDv5 file that already carries another classifier's results (replaced by ours)."""
    folder = shared_data / "other_formats" / "ena24_small"
    if not (folder / "md_annotations.json").is_file():
        pytest.skip("ena24_small/md_annotations.json absent")
    out = tmp_path / "ena24_classified.json"
    result = crop_predict.predict_detections(tiny_run, folder, folder / "md_annotations.json", tmp_path / "p.csv",
                                             md_out=out, top_k=3)
    raw = json.loads((folder / "md_annotations.json").read_text())
    written = json.loads(out.read_text())
    assert result["md_out"]["classified_detections"] == result["crops"] > 0
    assert written["info"]["detector"] == raw["info"]["detector"]
    assert set(written["classification_categories"].values()) == set(CLASSES)
    assert _validate(out)["errors"] == []


def test_md_out_descriptions_default_to_scientific_names(tiny_run, tmp_path):
    from serengeti_tf import species

    images, md, _ = _inputs(tmp_path)
    out = tmp_path / "out" / "md_classified.json"
    crop_predict.predict_detections(tiny_run, images, md, tmp_path / "out" / "pred.csv", top_k=2, batch_size=2,
                                    md_out=out)
    written = json.loads(out.read_text())
    names = species.scientific_names(["elephant", "gazellethomsons", "zebra"])
    assert names["zebra"] == "Equus quagga" and names["gazellethomsons"] == "Eudorcas thomsonii"
    assert written["classification_category_descriptions"] == {
        "0": names["elephant"], "1": names["gazellethomsons"], "2": names["zebra"]}
