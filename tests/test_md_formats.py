"""Today's MegaDetector files in: format versions 1.0-1.6 (newer and missing read with a warning),
Windows / UNC / foreign POSIX paths rebased onto the image root, --strip-prefix, the file's
typical_detection_threshold, an empty images list and classifications already in the file; end to
end through `prepare --detections` and `predict --detections`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import invoke_cli
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.data import detections
from serengeti_tf.errors import UserError
from serengeti_tf.testing import write_tiny_run

COLOURS = {"zebra": (230, 30, 30), "lionfemale": (30, 200, 40), "dikdik": (40, 60, 230)}
BOX = [0.25, 0.25, 0.4, 0.5]


def _md(path: Path, files: list[str], version="1.6", info=None, confs=None, **extra) -> Path:
    confs = confs or [0.9] * len(files)
    detections.write_md_file(path, [{"file": f, "detections": [{"category": "1", "conf": c, "bbox": BOX}]}
                                    for f, c in zip(files, confs)], format_version=version, info=info, **extra)
    return path


# ---- versions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.0", "1.3", "1.4", "1.5", "1.6", 1.6, 1, "1.60"])
def test_versions_up_to_1_6_read_without_warning(tmp_path, caplog, version):
    path = _md(tmp_path / "md.json", ["a.jpg"], version=version)
    with caplog.at_level(logging.WARNING):
        found = detections.read_detections(path)
    assert not caplog.records and not found.notes
    assert found.format_version == {1: "1.0"}.get(version, str(version))
    assert len(found.boxes) == 1


def test_newer_minor_version_and_missing_version_read_with_one_warning_line(tmp_path, caplog):
    newer = _md(tmp_path / "newer.json", ["a.jpg"], version="1.9", info={"future_field": {"x": 1}},
                extra_top_level={"ignored": True})
    with caplog.at_level(logging.WARNING):
        found = detections.read_detections(newer)
    assert len(caplog.records) == 1 and "newer than this reader knows" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage() and found.notes == [caplog.records[0].getMessage()]
    assert len(found.boxes) == 1 and found.format_version == "1.9"
    caplog.clear()
    unversioned = _md(tmp_path / "none.json", ["a.jpg"], version=None)
    assert "format_version" not in json.loads(unversioned.read_text())["info"]
    with caplog.at_level(logging.WARNING):
        found = detections.read_detections(unversioned)
    assert len(caplog.records) == 1 and "no info.format_version" in caplog.records[0].getMessage()
    assert found.format_version == "none" and len(found.boxes) == 1


def test_version_is_compared_as_a_number_like_megadetectors_validator():
    assert detections.check_format_version("f", {"format_version": "1.60"}) == ("1.60", None)
    assert detections.check_format_version("f", {"format_version": 1.2}) == ("1.2", None)
    assert detections.check_format_version("f", {"format_version": "1.7"})[1] is not None
    for refused in ("0.9", "2.0", "1.6b", True):
        with pytest.raises(UserError, match="format_version"):
            detections.check_format_version("f", {"format_version": refused})


# ---- paths ----------------------------------------------------------------------------------------

def _tree(root: Path, names=("cam1/a.jpg", "cam1/b.jpg", "cam2/c.jpg")) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (120, 120, 120)).save(root / name)
    return root


@pytest.mark.parametrize("written", [
    ["C:\\cams\\site\\cam1\\a.jpg", "C:\\cams\\site\\cam1\\b.jpg", "C:\\cams\\site\\cam2\\c.jpg"],  # Windows drive
    ["\\\\nas\\share\\cam1\\a.jpg", "\\\\nas\\share\\cam1\\b.jpg", "\\\\nas\\share\\cam2\\c.jpg"],  # UNC
    ["d:/cams/cam1/a.jpg", "d:/cams/cam1/b.jpg", "d:/cams/cam2/c.jpg"],                              # forward slashes
    ["/home/alice/cams/cam1/a.jpg", "/home/alice/cams/cam1/b.jpg", "/home/alice/cams/cam2/c.jpg"],  # other machine
])
def test_absolute_paths_from_another_machine_are_rebased_onto_the_image_root(tmp_path, written):
    root = _tree(tmp_path / "images")
    found = detections.read_detections(_md(tmp_path / "md.json", written), root)
    assert found.images["file"].tolist() == ["cam1/a.jpg", "cam1/b.jpg", "cam2/c.jpg"]
    assert any("rebased onto the image root" in note for note in found.notes)


def test_absolute_paths_under_the_root_and_relative_backslash_paths(tmp_path):
    root = _tree(tmp_path / "images")
    found = detections.read_detections(_md(tmp_path / "md.json", [str(root / "cam1" / "a.jpg"), "cam1\\b.jpg",
                                                                    "./cam2/c.jpg"]), root)
    assert found.images["file"].tolist() == ["cam1/a.jpg", "cam1/b.jpg", "cam2/c.jpg"]
    assert not found.notes


def test_strip_prefix_case_insensitive_for_windows_and_unmatched_paths_reported(tmp_path):
    root = _tree(tmp_path / "images")
    md = _md(tmp_path / "md.json", ["C:\\Cams\\cam1\\a.jpg", "c:\\cams\\cam1\\b.jpg", "E:\\elsewhere\\zz.jpg"])
    found = detections.read_detections(md, root, strip_prefix="C:\\cams")
    assert found.images["file"].tolist()[:2] == ["cam1/a.jpg", "cam1/b.jpg"]
    assert found.images["file"].iloc[2] == "E:/elsewhere/zz.jpg"  # no file under the root: left, reported
    assert any("removed from 2 of 3" in n for n in found.notes)
    assert any("1 absolute MD paths match no file" in n and "--strip-prefix" in n for n in found.notes)


# ---- threshold, empty files, classifications ------------------------------------------------------

def test_typical_detection_threshold_is_the_default_and_a_configured_one_wins(tmp_path):
    md = _md(tmp_path / "md.json", ["a.jpg", "b.jpg"], confs=[0.9, 0.5],
             info={"detector_metadata": {"typical_detection_threshold": 0.8}})
    found = detections.read_detections(md)
    assert found.threshold(None) == (0.8, "info.detector_metadata.typical_detection_threshold of the MD file")
    assert found.threshold(0.3) == (0.3, "data.crops.threshold")
    plain = detections.read_detections(_md(tmp_path / "plain.json", ["a.jpg"]))
    assert plain.threshold(None) == (detections.DEFAULT_THRESHOLD, "default")
    bad = _md(tmp_path / "bad.json", ["a.jpg"], info={"detector_metadata": {"typical_detection_threshold": 8}})
    with pytest.raises(UserError, match="typical_detection_threshold must be a number in"):
        detections.read_detections(bad)


def test_empty_images_list_reads_as_no_images_and_a_missing_list_is_refused(tmp_path):
    found = detections.read_detections(_md(tmp_path / "empty.json", []))
    assert found.images.empty and found.boxes.empty
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"info": {"format_version": "1.6"}, "detection_categories": {"1": "animal"}}))
    with pytest.raises(UserError, match="no 'images' list"):
        detections.read_detections(missing)


def test_classifications_in_the_file_are_kept(tmp_path):
    """SpeciesNet results converted to MD format carry classifications and their categories."""
    images = [{"file": "a.jpg", "detections": [
        {"category": "1", "conf": 0.9, "bbox": BOX, "classifications": [["3", 0.7], ["4", 0.2]]},
        {"category": "1", "conf": 0.4, "bbox": BOX}]},
        {"file": "b.jpg", "detections": [
            {"category": "1", "conf": 0.8, "bbox": BOX, "classifications": [["4", 0.95], ["99", 0.01], "junk"]}]}]
    path = tmp_path / "speciesnet.json"
    detections.write_md_file(path, images, format_version="1.5",
                             classification_categories={"3": "zebra", "4": "dikdik"})
    found = detections.read_detections(path)
    assert found.classification_categories == {"3": "zebra", "4": "dikdik"}
    table = found.classifications
    assert table[["box", "rank", "category"]].values.tolist() == [[0, 0, "zebra"], [0, 1, "dikdik"], [2, 0, "dikdik"]]
    assert table["conf"].tolist() == pytest.approx([0.7, 0.2, 0.95])


# ---- end to end: prepare --detections and predict --detections ------------------------------------

def _scene(path: Path, colour) -> None:
    pixels = np.random.default_rng(0).integers(90, 140, (96, 128, 3), dtype=np.uint8)
    pixels[24:72, 32:83] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """4 captures x 2 frames of each of 3 species under images/<camera>/, and labels.csv."""
    root = tmp_path_factory.mktemp("mdsrc")
    rows, names = [], []
    for species, colour in COLOURS.items():
        for capture in range(4):
            for frame in range(2):
                name = f"cam{capture % 2}/{species}_{capture}_{frame}.jpg"
                _scene(root / "images" / name, colour)
                rows.append({"path": name, "label": species, "capture": f"{species}-{capture}"})
                names.append(name)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "images", root / "labels.csv", names


VARIANTS = {
    "md_1_6": lambda names: ({"format_version": "1.6"}, names),
    "no_version": lambda names: ({}, names),
    "windows_paths": lambda names: ({"format_version": "1.6"}, ["C:\\Users\\ranger\\cams\\" + n.replace("/", "\\")
                                                                for n in names]),
}


def _variant_md(path: Path, variant: str, names: list[str]) -> Path:
    info, written = VARIANTS[variant](names)
    confs = [0.9 if not n.endswith("_3_1.jpg") else 0.5 for n in names]  # frame 1 of capture 3: below 0.8
    _md(path, written, version=info.get("format_version"), confs=confs,
        info={"detector_metadata": {"typical_detection_threshold": 0.8}})
    return path


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prepare_detections_end_to_end(source, tmp_path, variant):
    from serengeti_tf.data.prepare import format_summary, prepare_dataset

    images, labels, names = source
    md = _variant_md(tmp_path / "md.json", variant, names)
    config = cfg.resolve(updates=[{"data": {"metadata": [str(labels)], "image_root": str(images),
                                            "detections": str(md), "image_size": 32, "workers": 1}}])
    summary = prepare_dataset(config, tmp_path / "prepared", progress=False)
    # Threshold 0.8 from the file: the 0.5 boxes (one per species) are not selected.
    assert summary["crops_kept"] == len(names) - len(COLOURS)
    report = summary["detections"]
    assert report["settings"]["threshold"] == 0.8 and "typical_detection_threshold" in report["threshold_source"]
    assert report["md_images_not_in_metadata"] == 0
    text = format_summary(summary)
    assert "detection threshold 0.8 (from info.detector_metadata.typical_detection_threshold" in text
    if variant == "no_version":
        assert "no info.format_version" in text
    if variant == "windows_paths":
        assert "'C:/Users/ranger/cams/'" in text and "rebased onto the image root" in text


def test_prepare_strip_prefix_flag_and_empty_md_file_message(source, tmp_path):
    images, labels, names = source
    md = _md(tmp_path / "md.json", ["X:\\nowhere\\" + n.replace("/", "\\") for n in names])
    base = ["prepare", str(tmp_path / "out"), "--metadata", str(labels), "--image-root", str(images),
            "--set", "data.image_size=32", "--set", "data.workers=1"]
    result = invoke_cli(base + ["--detections", str(md), "--strip-prefix", "x:\\NOWHERE"])
    assert result.exit_code == 0, result.output
    assert f"crops kept {len(names)}" in result.output and "removed from 24 of 24 MD paths" in result.output
    empty = _md(tmp_path / "empty.json", [])
    result = invoke_cli(base[:1] + [str(tmp_path / "out2")] + base[2:] + ["--detections", str(empty)])
    assert result.exit_code == 2 and "lists no images (an empty 'images' list" in result.output
    assert result.output.strip().count("\n") == 0


def test_score_detections_on_a_prepared_datasets_split(source, tmp_path):
    """The file's own classifications scored on the images `evaluate` scores (a prepared split)."""
    from serengeti_tf.data.prepare import prepare_dataset
    from serengeti_tf.evaluate import md_scores

    images, labels, names = source
    md = tmp_path / "classified.json"
    ids = {"zebra": "0", "lionfemale": "1", "dikdik": "2"}
    # The "classifier" calls every dikdik a zebra and gets the rest right.
    detections.write_md_file(md, [{"file": n, "detections": [{"category": "1", "conf": 0.9, "bbox": BOX,
                                                             "classifications": [[ids["zebra" if "dikdik" in n else
                                                                                      n.split("/")[1].split("_")[0]],
                                                                                  0.9]]}]} for n in names],
                             format_version="1.6", classification_categories={v: k for k, v in ids.items()})
    config = cfg.resolve(updates=[{"data": {"metadata": [str(labels)], "image_root": str(images),
                                            "detections": str(md), "image_size": 32, "workers": 1}}])
    prepare_dataset(config, tmp_path / "prepared", progress=False)
    manifest = pd.read_csv(tmp_path / "prepared" / "manifest.csv", keep_default_na=False)
    kept = manifest[(manifest["drop_reason"] == "") & (manifest["split"] == "train")]
    result = md_scores.score_md_classifications(md, tmp_path / "prepared", tmp_path / "scores", split="train")
    assert result["metrics"]["images"] == len(kept)
    right = (~kept["species"].str.contains("dikdik")).sum()
    assert result["metrics"]["accuracy"] == pytest.approx(right / len(kept))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("mdrun") / "run", list(COLOURS))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_predict_detections_end_to_end(source, tiny_run, tmp_path, variant):
    from serengeti_tf.evaluate import crop_predict

    images, _, names = source
    md = _variant_md(tmp_path / "md.json", variant, names)
    result = crop_predict.predict_detections(tiny_run, images, md, tmp_path / "pred.csv", top_k=2, batch_size=8)
    per_image = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False).set_index("path")
    assert sorted(per_image.index) == sorted(names)
    below = [n for n in names if n.endswith("_3_1.jpg")]
    assert (per_image.loc[below, "status"] == "empty").all()
    assert result["classified"] == len(names) - len(below) and result["skipped"] == 0
    assert result["threshold"] == 0.8
    text = crop_predict.summary_text(result)
    assert "detection threshold 0.8" in text
    if variant == "windows_paths":
        assert "rebased onto the image root" in text


def test_predict_with_an_empty_md_file_is_an_empty_result_with_a_note(source, tiny_run, tmp_path):
    from serengeti_tf.evaluate import crop_predict

    images, _, names = source
    result = crop_predict.predict_detections(tiny_run, images, _md(tmp_path / "empty.json", []),
                                             tmp_path / "pred.csv")
    assert result["classified"] == 0 and result["skipped"] == len(names)
    assert "lists no images (an empty 'images' list)" in crop_predict.summary_text(result)


def test_real_ena24_md_file_still_reads_with_its_paths(shared_data):
    folder = shared_data / "other_formats" / "ena24_small"
    if not (folder / "md_annotations.json").is_file():
        pytest.skip("ena24_small/md_annotations.json absent")
    found = detections.read_detections(folder / "md_annotations.json", folder)
    assert set(found.images["file"]) <= {p.name for p in folder.glob("*.jpg")}
    assert not found.boxes.empty and found.format_version


def test_rebase_skips_folders_missing_locally_and_handles_several_prefixes(tmp_path):
    root = _tree(tmp_path / "images")
    missing = [f"D:/old/gone{i}/x.jpg" for i in range(300)]  # folders not downloaded: tried once each at most
    written = pd.Series(missing + ["E:/a/cam1/a.jpg", "F:/b/cam2/c.jpg", "E:/a/cam1/b.jpg"])
    rebased, prefixes = detections.rebase_foreign(written, root.resolve(), max_folders=400)
    assert rebased.tolist()[-3:] == ["cam1/a.jpg", "cam2/c.jpg", "cam1/b.jpg"]
    assert prefixes == {"E:/a/": 2, "F:/b/": 1}
    assert rebased.tolist()[:300] == missing
