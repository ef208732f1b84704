"""`predict --group-by-time SECONDS`: captures from EXIF DateTimeOriginal per folder (camera)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import invoke_cli, raises_as_cli
from PIL import Image

from serengeti_tf.evaluate import exif_captures
from serengeti_tf.testing import write_tiny_run

START = datetime(2024, 3, 1, 6, 30, 0)


def _jpeg(path: Path, taken: datetime | None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(exif_captures.EXIF_IFD)[exif_captures.DATETIME_ORIGINAL] = taken.strftime("%Y:%m:%d %H:%M:%S")
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    return path


def test_exif_time_reads_datetime_original_and_none_when_absent_or_malformed(tmp_path):
    assert exif_captures.exif_time(_jpeg(tmp_path / "a.jpg", START)) == START
    assert exif_captures.exif_time(_jpeg(tmp_path / "b.jpg", None)) is None
    Image.new("RGB", (8, 8)).save(tmp_path / "c.png")
    assert exif_captures.exif_time(tmp_path / "c.png") is None
    bad = Image.Exif()
    bad.get_ifd(exif_captures.EXIF_IFD)[exif_captures.DATETIME_ORIGINAL] = "0000:00:00 00:00:00"
    Image.new("RGB", (8, 8)).save(tmp_path / "d.jpg", exif=bad.tobytes())
    assert exif_captures.exif_time(tmp_path / "d.jpg") is None
    assert exif_captures.exif_time(tmp_path / "missing.jpg") is None


def test_grouping_is_per_folder_and_chains_consecutive_gaps():
    t = [START + timedelta(seconds=s) for s in (0, 4, 8, 30, 31)]
    paths = pd.Series(["cam1/1.jpg", "cam1/2.jpg", "cam1/3.jpg", "cam1/4.jpg", "cam2/5.jpg", "cam1/x.jpg", "top.jpg"])
    times = pd.Series([t[0], t[1], t[2], t[3], t[0], None, t[4]], dtype="datetime64[ns]")
    ids = exif_captures.group_by_time(paths, times, 5).tolist()
    # 0, 4, 8 chain (each within 5 s of the previous one) although 8 - 0 > 5; 30 starts a new capture;
    # the same time in another folder is another camera; no time: the image is its own capture.
    assert ids == ["cam1#1", "cam1#1", "cam1#1", "cam1#2", "cam2#1", "cam1/x.jpg", ".#1"]
    assert exif_captures.group_by_time(paths, times, 0).nunique() == 7
    # Input order does not matter: captures follow time.
    shuffled = exif_captures.group_by_time(paths[::-1].reset_index(drop=True), times[::-1].reset_index(drop=True), 5)
    assert shuffled.tolist() == ids[::-1]
    with raises_as_cli(match="--group-by-time must be a number of seconds"):
        exif_captures.group_by_time(paths, times, -1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exif") / "images"
    for seconds, name in ((0, "camA/1.jpg"), (2, "camA/2.jpg"), (3, "camA/3.jpg"), (120, "camA/4.jpg"),
                          (1, "camB/1.jpg"), (2, "camB/2.jpg")):
        _jpeg(root / name, START + timedelta(seconds=seconds), seed=seconds)
    _jpeg(root / "camB" / "no_time.jpg", None)
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("exif_run") / "run", ["elephant", "zebra"])


def test_predict_group_by_time_writes_captures_and_counts_images_without_time(folder, tiny_run, tmp_path):
    result = invoke_cli(["predict", tiny_run, folder, "-o", tmp_path / "pred.csv", "--group-by-time", "10"])
    assert result.exit_code == 0, result.output
    assert "4 captures" in result.output and "1 images without an EXIF time" in result.output
    per_image = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False).set_index("path")
    assert per_image.loc[["camA/1.jpg", "camA/2.jpg", "camA/3.jpg"], "capture_id"].nunique() == 1
    assert per_image.loc["camA/4.jpg", "capture_id"] != per_image.loc["camA/1.jpg", "capture_id"]
    assert per_image.loc["camB/no_time.jpg", "capture_id"] == "camB/no_time.jpg"
    captures = pd.read_csv(tmp_path / "pred.captures.csv").set_index("capture_id")
    assert captures.loc[per_image.loc["camA/1.jpg", "capture_id"], "num_images"] == 3
    assert len(captures) == 4


def test_predict_detections_group_by_time(folder, tiny_run, tmp_path):
    from serengeti_tf.data import detections
    from serengeti_tf.evaluate import crop_predict

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    detections.write_md_file(tmp_path / "md.json", [
        {"file": f, "detections": [{"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.5, 0.5]}]} for f in files])
    result = crop_predict.predict_detections(tiny_run, folder, tmp_path / "md.json", tmp_path / "pred.csv",
                                             group_by_time=10)
    assert result["captures"] == 4 and result["exif_captures"]["images_without_exif_time"] == 1
    assert "1 images without an EXIF time" in crop_predict.summary_text(result)


def test_group_by_time_with_captures_is_a_one_line_error(folder, tiny_run, tmp_path):
    captures = tmp_path / "captures.csv"
    pd.DataFrame({"path": ["camA/1.jpg"], "capture_id": ["k"]}).to_csv(captures, index=False)
    result = invoke_cli(["predict", tiny_run, folder, "-o", tmp_path / "p.csv", "--group-by-time", "5",
                         "--captures", captures])
    assert result.exit_code == 2 and "--captures and --group-by-time both give capture ids" in result.output
    assert result.output.strip().count("\n") == 0
    negative = invoke_cli(["predict", tiny_run, folder, "-o", tmp_path / "p.csv", "--group-by-time", "-3"])
    assert negative.exit_code == 2 and "--group-by-time must be a number of seconds" in negative.output
