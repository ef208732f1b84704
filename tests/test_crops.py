"""Detector crops: the MD reader, box selection and geometry, cutting crops, `prepare --detections`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import InterruptAfter, shard_bytes, tree_hashes
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.data import crops, detections
from serengeti_tf.errors import UserError

COLOURS = {"zebra": (230, 30, 30), "lionfemale": (30, 200, 40), "dikdik": (40, 60, 230)}


def _md(path: Path, images: list, version="1.4", categories=None) -> Path:
    detections.write_md_file(path, images, categories=categories, format_version=version)
    return path


# ---- reader ------------------------------------------------------------------------------------

def test_reads_the_ena24_md_fixture(shared_data):
    path = shared_data / "other_formats" / "ena24_small" / "md_annotations.json"
    if not path.is_file():
        pytest.skip("ena24_small/md_annotations.json absent")
    found = detections.read_detections(path)
    raw = json.loads(path.read_text())
    assert found.format_version == raw["info"]["format_version"]
    assert found.categories == raw["detection_categories"]
    assert found.images["file"].tolist() == [i["file"] for i in raw["images"]]
    assert len(found.boxes) == sum(len(i.get("detections") or []) for i in raw["images"])
    first = raw["images"][0]["detections"][0]
    row = found.boxes.iloc[0]
    assert row["category"] == raw["detection_categories"][first["category"]]
    assert row["conf"] == pytest.approx(first["conf"])
    assert [row["x"], row["y"], row["w"], row["h"]] == pytest.approx(first["bbox"], abs=1e-6)


def test_prepare_crops_on_the_real_ena24_sample(shared_data, tmp_path):
    from serengeti_tf.data.prepare import prepare_dataset

    folder = shared_data / "other_formats" / "ena24_small"
    if not (folder / "md_annotations.json").is_file():
        pytest.skip("ena24_small/md_annotations.json absent")
    before = tree_hashes(folder)
    config = cfg.resolve(updates=[{"data": {"metadata": [str(folder / "labels.csv")], "image_root": str(folder),
                                            "detections": str(folder / "md_annotations.json"), "image_size": 48,
                                            "workers": 1}}])
    summary = prepare_dataset(config, tmp_path / "ena24_crops", progress=False)
    raw = json.loads((folder / "md_annotations.json").read_text())
    # No threshold configured: the file's own typical_detection_threshold (0.8 in this MDv5 file).
    threshold = raw["info"].get("detector_metadata", {}).get("typical_detection_threshold", 0.2)
    expected = sum(1 for i in raw["images"] for d in i.get("detections") or []
                   if d["conf"] >= threshold and raw["detection_categories"][d["category"]] == "animal")
    assert summary["crops_kept"] == expected and summary["num_classes"] == 7
    assert summary["detections"]["format_version"] == raw["info"]["format_version"]
    assert summary["detections"]["settings"]["threshold"] == threshold
    classified = sum(1 for i in raw["images"] for d in i.get("detections") or [] if d.get("classifications"))
    assert summary["detections"]["md_classifications"] == classified
    assert tree_hashes(folder) == before


def test_bad_boxes_get_a_problem_and_partial_boxes_are_clipped(tmp_path):
    path = tmp_path / "md.json"
    dets = [{"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]},      # fine
            {"category": "1", "conf": 0.9, "bbox": [0.9, 0.5, 0.3, 0.2]},      # partly outside -> clipped
            {"category": "1", "conf": 0.9, "bbox": [1.2, 0.5, 0.3, 0.2]},      # wholly outside
            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.0, 0.2]},      # zero width
            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, -0.1]},     # negative height
            {"category": "7", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]},      # unknown category
            {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1]},                # malformed
            {"category": "1", "conf": 12345.0, "bbox": [0.1, 0.1, 0.2, 0.2]}]  # NaN, written below
    _md(path, [{"file": "a.jpg", "detections": dets}, {"file": "b.jpg", "failure": "Failure image access"}])
    path.write_text(path.read_text().replace("12345.0", "NaN"))  # bare NaN, as LILA's files have
    found = detections.read_detections(path)
    assert found.boxes["problem"].astype(str).tolist() == [
        "", "", "box_outside_image", "box_empty", "box_empty", "unknown_category", "box_malformed", "conf_nan"]
    clipped = found.boxes.iloc[1]
    assert bool(clipped["clipped"]) and clipped["x"] == pytest.approx(0.9) and clipped["w"] == pytest.approx(0.1)
    assert found.images["failure"].tolist() == ["", "Failure image access"]
    assert found.problem_counts()["box_empty"] == 2


@pytest.mark.parametrize("info, message", [
    ({"format_version": "2.7"}, "format_version '2.7' is not one this reader knows"),
    ({"format_version": "v1.x"}, "format_version 'v1.x' is not a version number"),
])
def test_unknown_major_or_unparsable_format_version_is_a_one_line_error(tmp_path, info, message):
    path = tmp_path / "md.json"
    path.write_text(json.dumps({"info": info, "detection_categories": {"1": "animal"}, "images": []}))
    with pytest.raises(UserError, match=message) as err:
        detections.read_detections(path)
    assert "\n" not in str(err.value)


def test_not_json_and_no_categories_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"info": {"format_version": "1.3"}, "detection_categories": {"1": "animal"}, "images": [{"fi')
    with pytest.raises(UserError, match="not valid JSON"):
        detections.read_detections(broken)
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"info": {"format_version": "1.3"}, "images": [{"file": "a.jpg"}]}))
    with pytest.raises(UserError, match="no detection_categories"):
        detections.read_detections(bare)


# ---- selection and geometry --------------------------------------------------------------------

def _boxes(rows):
    return pd.DataFrame(rows, columns=["image", "category", "conf", "x", "y", "w", "h", "clipped", "problem"])


def test_select_boxes_threshold_category_and_top1():
    boxes = _boxes([(0, "animal", 0.5, 0, 0, .1, .1, False, ""), (0, "animal", 0.9, 0, 0, .1, .1, False, ""),
                    (0, "person", 0.99, 0, 0, .1, .1, False, ""), (1, "animal", 0.1, 0, 0, .1, .1, False, ""),
                    (2, "animal", 0.95, 0, 0, .1, .1, False, "box_empty")])
    chosen = crops.select_boxes(boxes, "animal", 0.2, "all")
    assert chosen["conf"].tolist() == [0.9, 0.5] and chosen["crop"].tolist() == [0, 1]
    assert crops.select_boxes(boxes, "animal", 0.2, "top1")["conf"].tolist() == [0.9]
    assert crops.select_boxes(boxes, "person", 0.2, "all")["conf"].tolist() == [0.99]
    reasons = crops.box_reason_counts(boxes, crops.select_boxes(boxes, "animal", 0.2, "top1").index, "animal", 0.2)
    assert reasons == {"selected": 1, "not_selected": 1, "other_category": 1, "below_threshold": 1,
                       "box_empty": 1, "clipped_to_image": 0}


def test_crop_rectangle_padding_square_shift_and_clip():
    # 100x50 px box at (100, 100) in a 1000x500 image.
    assert crops.crop_rectangle((0.1, 0.2, 0.1, 0.1), 1000, 500, 0.0, False) == pytest.approx((100, 100, 200, 150))
    assert crops.crop_rectangle((0.1, 0.2, 0.1, 0.1), 1000, 500, 0.1, False) == pytest.approx((90, 95, 210, 155))
    assert crops.crop_rectangle((0.1, 0.2, 0.1, 0.1), 1000, 500, 0.0, True) == pytest.approx((100, 75, 200, 175))
    # A square at the left edge is shifted inside the image rather than cut.
    assert crops.crop_rectangle((0.0, 0.4, 0.02, 0.2), 1000, 500, 0.0, True) == pytest.approx((0, 200, 100, 300))
    # Larger than the image: clipped.
    assert crops.crop_rectangle((0.0, 0.0, 1.0, 1.0), 1000, 500, 0.0, True) == pytest.approx((0, 0, 1000, 500))


def test_join_detections_reasons_repeated_listings_and_md_only_images(tmp_path):
    md = _md(tmp_path / "md.json", [
        {"file": "a.jpg", "detections": [{"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]},
                                         {"category": "1", "conf": 0.4, "bbox": [0.5, 0.5, 0.2, 0.2]}]},
        {"file": "a.jpg", "detections": []},                     # listed twice: the first listing counts
        {"file": "b.jpg", "detections": [{"category": "1", "conf": 0.1, "bbox": [0.1, 0.1, 0.2, 0.2]}]},
        {"file": "c.jpg", "failure": "Failure image access"},
        {"file": "only_in_md.jpg", "detections": []}])
    manifest = pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"], "species": ["zebra"] * 4 + [""],
                             "capture_id": ["k1", "k1", "k2", "k3", "k4"], "drop_reason": [""] * 4 + ["empty"],
                             "split": ["train"] * 4 + [""]})
    config = cfg.CropConfig(select="top1")
    joined, table, report = crops.join_detections(manifest, detections.read_detections(md), config)
    assert joined["drop_reason"].tolist() == ["", "no_detection", "detector_failure", "not_in_detections", "empty"]
    assert joined["split"].tolist() == ["train", "", "", "", ""]
    assert table["path"].tolist() == ["a.jpg"] and table["detection_conf"].tolist() == [0.9]
    assert report["md_images_listed_twice"] == 1 and report["md_images_not_in_metadata"] == 1
    assert report["md_images_not_in_metadata_examples"] == ["only_in_md.jpg"]
    assert report["boxes"]["selected"] == 1 and report["boxes"]["not_selected"] == 1
    with pytest.raises(UserError, match="data.crops.category 'animals' is not a category"):
        crops.join_detections(manifest, detections.read_detections(md), cfg.CropConfig(category="animals"))


def _scene(path: Path, size=(2048, 1536), square=(1000, 700, 1060, 760), colour=(230, 30, 30), orientation=None):
    """A noisy grey frame with one coloured square (the "animal") at `square` (l, t, r, b) upright."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(90, 140, (size[1], size[0], 3), dtype=np.uint8)
    left, top, right, bottom = square
    pixels[top:bottom, left:right] = colour
    image = Image.fromarray(pixels)
    kwargs = {}
    if orientation == 6:  # stored rotated: the viewer turns it 90 degrees clockwise back upright
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        kwargs["exif"] = exif.tobytes()
    image.save(path, quality=95, **kwargs)
    return path


def test_cut_crops_keeps_a_small_box_sharp_and_decodes_a_big_one_small(tmp_path, monkeypatch):
    from serengeti_tf.data import images

    path = _scene(tmp_path / "frame.jpg")
    asked = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda p, side: asked.append(side) or real(p, side))
    small = (1000 / 2048, 700 / 1536, 60 / 2048, 60 / 1536)
    [crop] = crops.cut_crops(str(path), [small], 64, 0.0, True, 8)
    assert crop.size == (64, 64) and asked[-1] == 1536  # 60 px box -> full-resolution decode
    pixels = np.asarray(crop, dtype=float)
    assert np.abs(pixels[8:-8, 8:-8] - (230, 30, 30)).mean() < 12  # the square fills the crop
    [big] = crops.cut_crops(str(path), [(0.0, 0.0, 1.0, 1.0)], 64, 0.0, True, 8)
    assert asked[-1] <= 1536 // 8 + 64 and min(big.size) == 64  # frame-sized box -> DCT-draft decode
    assert crops.cut_crops(str(path), [(0.5, 0.5, 2 / 2048, 2 / 1536)], 64, 0.0, True, 8)[0].startswith(
        "box_too_small")


def test_cut_crops_follows_exif_orientation(tmp_path):
    path = _scene(tmp_path / "rotated.jpg", size=(400, 300), square=(300, 50, 360, 110), orientation=6)
    [crop] = crops.cut_crops(str(path), [(300 / 400, 50 / 300, 60 / 400, 60 / 300)], 32, 0.0, True, 8)
    assert np.abs(np.asarray(crop, dtype=float)[6:-6, 6:-6] - (230, 30, 30)).mean() < 15


# ---- prepare --detections ----------------------------------------------------------------------

def _crop_source(root: Path) -> tuple[Path, Path, list]:
    """Images with coloured squares (real geometry), their metadata and an MD file with the boxes."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    rows, md = [], []
    n = 0
    for species, colour in COLOURS.items():
        for capture in range(6):
            for frame in range(2):
                name = f"{species}_{capture}_{frame}.jpg"
                left, top = 20 + 10 * frame + 30 * (capture % 3), 30 + 5 * capture
                _scene(images_dir / name, size=(256, 192), square=(left, top, left + 40, top + 40), colour=colour)
                rows.append({"path": name, "label": species, "capture": f"{species}-{capture}"})
                box = [left / 256, top / 192, 40 / 256, 40 / 192]
                dets = [{"category": "1", "conf": 0.9, "bbox": box}]
                if capture == 5 and frame == 1:
                    dets = [{"category": "1", "conf": 0.1, "bbox": box}]  # the detector missed it
                if capture == 4 and frame == 0:
                    dets.append({"category": "1", "conf": 0.5, "bbox": [0.9, 0.9, 0.02, 0.02]})  # 5 px: too small
                md.append({"file": name, "detections": dets})
                n += 1
    md.append({"file": "not_in_metadata.jpg", "detections": []})
    md = [m for m in md if m["file"] != "dikdik_0_0.jpg"]  # listed in the metadata, not in the MD file
    md.append({"file": "zebra_3_1.jpg", "failure": "Failure image access"})
    md = [m for m in md if not (m["file"] == "zebra_3_1.jpg" and "failure" not in m)]
    metadata = root / "labels.csv"
    pd.DataFrame(rows).to_csv(metadata, index=False)
    return images_dir, metadata, _md(root / "md.json", md)


@pytest.fixture(scope="module")
def crop_dataset(tmp_path_factory):
    from serengeti_tf.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("cropsrc")
    images_dir, metadata, md = _crop_source(root)
    before = tree_hashes(images_dir)
    config = cfg.resolve(updates=[{"data": {"metadata": [str(metadata)], "image_root": str(images_dir),
                                            "detections": str(md), "image_size": 32, "workers": 1,
                                            "crops": {"min_size": 8}}}])
    out = root / "prepared"
    summary = prepare_dataset(config, out, progress=False)
    return out, summary, images_dir, before, config


def test_prepare_crops_drop_reasons_and_summary(crop_dataset):
    out, summary, images_dir, before, _ = crop_dataset
    assert tree_hashes(images_dir) == before  # sources never modified
    assert not [p for p in images_dir.iterdir() if not p.name.endswith(".jpg")]
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    reason = dict(zip(manifest["path"], manifest["drop_reason"]))
    assert reason["dikdik_0_0.jpg"] == "not_in_detections"
    assert reason["zebra_3_1.jpg"] == "detector_failure"
    assert all(reason[f"{s}_5_1.jpg"] == "no_detection" for s in COLOURS)
    assert summary["no_detection_per_species"] == {s: 1 for s in COLOURS}
    assert summary["detections"]["md_images_not_in_metadata"] == 1
    assert summary["crops_dropped"] == {"box_too_small": 3}
    assert summary["unit"] == "crops"
    crops_table = pd.read_csv(out / "crops.csv", keep_default_na=False)
    kept = crops_table[crops_table["drop_reason"] == ""]
    assert len(kept) == summary["crops_kept"] == 36 - 3 - 2 == 31
    counts = pd.read_csv(out / "counts.csv")
    assert counts["total"].sum() == 31 and set(counts["unit"]) == {"crops"}
    # Crops of one capture never straddle splits.
    assert kept.groupby("capture_id")["split"].nunique().max() == 1


def test_prepared_crops_hold_the_boxed_animal_and_carry_box_and_conf(crop_dataset):
    import tensorflow as tf

    from serengeti_tf.data import dataset as ds
    from serengeti_tf.data.pipeline import split_metadata
    from serengeti_tf.data.records import parse_example

    out, _, _, _, _ = crop_dataset
    names = ds.class_names(out)
    seen = 0
    for split in ("train", "val", "test"):
        for raw in tf.data.TFRecordDataset(ds.split_files(out, split)):
            record = parse_example(raw)
            image = tf.io.decode_jpeg(record["image"]).numpy().astype(float)
            assert image.shape[:2] == (32, 32)
            colour = COLOURS[names[int(record["label"])]]
            assert np.abs(image[6:-6, 6:-6] - colour).mean() < 25
            assert float(record["detection_conf"]) == pytest.approx(0.9) and int(record["crop"]) == 0
            assert float(record["box_w"]) == pytest.approx(40 / 256, abs=1e-5)
            seen += 1
        meta = split_metadata(out, split)
        assert {"crop", "detection_conf"} <= set(meta.columns)
    assert seen == 31


def test_crop_dataset_loads_with_tfds(crop_dataset):
    tfds = pytest.importorskip("tensorflow_datasets")

    out = crop_dataset[0]
    builder = tfds.builder_from_directory(str(out))
    example = next(iter(builder.as_dataset(split="train").take(1)))
    assert float(example["detection_conf"]) == pytest.approx(0.9) and int(example["crop"]) == 0
    assert builder.info.splits["train"].num_examples + builder.info.splits["val"].num_examples + \
        builder.info.splits["test"].num_examples == 31


def test_prepare_crops_rerun_is_up_to_date_and_other_settings_refused(crop_dataset):
    from serengeti_tf.data.prepare import prepare_dataset

    out, _, _, _, config = crop_dataset
    assert prepare_dataset(config, out, progress=False)["up_to_date"]
    config.data.crops.threshold = 0.05
    with pytest.raises(UserError, match="crops"):
        prepare_dataset(config, out, progress=False)
    config.data.crops.threshold = 0.2


def test_interrupted_crop_prepare_resumes_to_byte_identical_shards(crop_dataset, tmp_path):
    from serengeti_tf.data.prepare import prepare_dataset

    clean, _, _, _, config = crop_dataset
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(config, out, progress=False, after_shard=InterruptAfter(3))
    assert not (out / "summary.json").exists()
    assert prepare_dataset(config, out, progress=False)["resumed"] is True
    assert shard_bytes(out) == shard_bytes(clean) and len(shard_bytes(out)) > 3
    assert (out / "crops.csv").read_text() == (clean / "crops.csv").read_text()


def test_crop_config_is_validated():
    with pytest.raises(UserError, match="data.crops.select must be one of all, top1, got 'best'"):
        cfg.resolve(overrides=["data.crops.select=best"])
    with pytest.raises(UserError, match="data.crops.threshold"):
        cfg.resolve(overrides=["data.crops.threshold=1.5"])


def _cli_error(args: list, capsys) -> str:
    from serengeti_tf_cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.split("\r")[-1]  # after any progress bar
    assert error.startswith("Error: ") and error.count("\n") == 1
    return error


def test_cli_bad_detections_file_is_one_line_exit_2(tmp_path, capsys):
    images_dir, metadata, _ = _crop_source(tmp_path)
    md = tmp_path / "future.json"
    md.write_text(json.dumps({"info": {"format_version": "9.0"}, "detection_categories": {"1": "animal"},
                              "images": [{"file": "zebra_0_0.jpg", "detections": []}]}))
    base = ["prepare", str(tmp_path / "out"), "--metadata", str(metadata), "--image-root", str(images_dir)]
    assert "format_version '9.0'" in _cli_error(base + ["--detections", str(md)], capsys)
    assert "detections file not found" in _cli_error(base + ["--detections", str(tmp_path / "no.json")], capsys)
    nothing = _md(tmp_path / "empty.json", [{"file": "zebra_0_0.jpg", "detections": []}])
    assert "no crop left" in _cli_error(base + ["--detections", str(nothing)], capsys)
    typo = _cli_error(base + ["--detections", str(nothing), "--set", "data.crops.category=animals"], capsys)
    assert "data.crops.category 'animals' is not a category" in typo
    assert not (tmp_path / "out" / "summary.json").exists()
