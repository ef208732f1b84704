"""predict.py: folders, lists and CSVs of images, unreadable files skipped with reasons, captures, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import raises_as_cli

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import predict as pr
from serengeti_tf.io_utils import write_json
from serengeti_tf.testing import class_image, jpeg_bytes, write_tiny_run

pytest.importorskip("serengeti_tf.data.images")
pytest.importorskip("serengeti_tf.data.pipeline")

CLASSES = ["elephant", "empty", "zebra"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder with a tiny random 3-class model (input 32) and a stored image size of 40."""
    return write_tiny_run(tmp_path_factory.mktemp("predict") / "run", CLASSES)


def test_edge_cases_truncated_skipped_others_classified(tiny_run, shared_data, tmp_path):
    folder = shared_data / "other_formats" / "edge_cases"
    images = sorted(p.name for p in folder.glob("*.jpg"))
    out = tmp_path / "predictions.csv"
    result = pr.predict_images(tiny_run, folder, out, top_k=2, batch_size=4)
    predictions = pd.read_csv(out)
    skipped = pd.read_csv(tmp_path / "predictions.skipped.csv")
    assert skipped["path"].tolist() == ["african_elephants_truncated_file.jpg"]
    assert "truncated" in skipped["error"].iloc[0]
    # CMYK, greyscale, EXIF-rotated, blanks, human, vehicle: all classified, in input order.
    assert predictions["path"].tolist() == [n for n in images if "truncated" not in n]
    assert list(predictions.columns) == ["path", "predicted", "confidence", "top1_species", "top1_prob",
                                         "top2_species", "top2_prob"]
    assert set(predictions["predicted"]) <= set(CLASSES)
    assert (predictions["top1_prob"] >= predictions["top2_prob"]).all()
    assert (predictions["predicted"] == predictions["top1_species"]).all()
    assert result["classified"] == len(images) - 1 and result["skipped"] == 1
    meta = pd.read_json(tmp_path / "predictions.meta.json", typ="series")
    assert meta["stored_image_size"] == 40 and meta["input_size"] == 32  # from the run folder
    assert not list(tmp_path.glob(".*partial*"))  # work files removed
    assert "african_elephants_truncated_file.jpg" in pr.summary_text(result)


def _write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.write_bytes(jpeg_bytes(class_image(i % 3, 3, 48, rng)))
        paths.append(path)
    return paths


def test_same_probabilities_as_the_model_on_the_eval_view(tiny_run, tmp_path):
    from serengeti_tf.data import images, pipeline
    from serengeti_tf.evaluate.evaluation import softmax
    from serengeti_tf.models.resnet import load_model

    paths = _write_images(tmp_path / "imgs", ["a.jpg", "b.jpg", "c.jpg"])
    pr.predict_images(tiny_run, [str(p) for p in paths], tmp_path / "p.csv", top_k=3, batch_size=2)
    got = pd.read_csv(tmp_path / "p.csv")
    model = load_model(tiny_run / "model.keras")
    batch = np.stack([np.asarray(pipeline.eval_transform(images.load_image(p, 40), 32)) for p in paths])
    probs = softmax(np.asarray(model(batch)))
    np.testing.assert_allclose(got["top1_prob"], probs.max(axis=1), atol=1e-5)
    assert got["predicted"].tolist() == [CLASSES[i] for i in probs.argmax(axis=1)]


def test_capture_csv_input_averages_per_capture(tiny_run, tmp_path):
    _write_images(tmp_path / "imgs", ["x1.jpg", "x2.jpg", "y1.jpg"])
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": ["imgs/x1.jpg", "imgs/x2.jpg", "imgs/y1.jpg", "imgs/broken.jpg", "imgs/gone.jpg"],
                  "capture_id": ["X", "X", "Y", "Y", "Z"]}).to_csv(listing, index=False)
    result = pr.predict_images(tiny_run, listing, tmp_path / "out.csv", top_k=3, batch_size=8)
    predictions = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    captures = pd.read_csv(tmp_path / "out.captures.csv", keep_default_na=False).set_index("capture_id")
    skipped = pd.read_csv(tmp_path / "out.skipped.csv").set_index("path")
    assert skipped.loc["imgs/gone.jpg", "error"] == "file not found"
    assert skipped.loc["imgs/broken.jpg", "error"].startswith("unreadable image")
    assert predictions["capture_id"].tolist() == ["X", "X", "Y"]
    assert captures.loc["X", "num_images"] == 2 and captures.loc["Y", "num_images"] == 1
    assert list(captures.index) == ["X", "Y"] and result["captures"] == 2  # Z had no readable image
    # X's probabilities are the mean of its two frames (top-3 = all classes here).
    frames = predictions[predictions["capture_id"] == "X"]
    for species in CLASSES:
        per_frame = [r[f"top{j}_prob"] for _, r in frames.iterrows() for j in (1, 2, 3)
                     if r[f"top{j}_species"] == species]
        x = captures.loc["X"]
        mean = [x[f"top{j}_prob"] for j in (1, 2, 3) if x[f"top{j}_species"] == species][0]
        assert mean == pytest.approx(np.mean(per_frame), abs=1e-5)
    assert captures.loc["Y", "predicted"] == predictions.loc[2, "predicted"]


def test_rerun_skips_finished_work_and_refuses_other_output(tiny_run, tmp_path):
    _write_images(tmp_path / "imgs", ["a.jpg", "b.jpg"])
    out = tmp_path / "p.csv"
    first = pr.predict_images(tiny_run, tmp_path / "imgs", out)
    again = pr.predict_images(tiny_run, tmp_path / "imgs", out)
    assert again["already_done"] and again["classified"] == first["classified"] == 2
    _write_images(tmp_path / "imgs", ["a.jpg", "b.jpg", "c.jpg"])
    with pytest.raises(UserError, match="already exists"):
        pr.predict_images(tiny_run, tmp_path / "imgs", out)
    assert pr.predict_images(tiny_run, tmp_path / "imgs", out, overwrite=True)["classified"] == 3


def test_interrupted_run_resumes_from_its_work_file(tiny_run, tmp_path, monkeypatch):
    _write_images(tmp_path / "imgs", [f"{i}.jpg" for i in range(5)])
    out = tmp_path / "p.csv"
    calls = {"n": 0}
    real = pr._read_or_reason

    def flaky(file, stored, size):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # interrupted while reading the second batch
        return real(file, stored, size)

    monkeypatch.setattr(pr, "_read_or_reason", flaky)
    monkeypatch.setattr(pr, "DECODE_THREADS", 1)
    with pytest.raises(KeyboardInterrupt):
        pr.predict_images(tiny_run, tmp_path / "imgs", out, batch_size=3)
    assert not out.exists() and (tmp_path / ".p.csv.partial").is_file()
    monkeypatch.setattr(pr, "_read_or_reason", lambda *a: (calls.__setitem__("n", calls["n"] + 1), real(*a))[1])
    calls["n"] = 0
    result = pr.predict_images(tiny_run, tmp_path / "imgs", out, batch_size=3)
    assert result["resumed"] and calls["n"] == 2  # only the unfinished batch was read again
    assert pd.read_csv(out)["path"].tolist() == [f"{i}.jpg" for i in range(5)]


def test_bare_keras_file_needs_classes(tiny_run, tmp_path):
    _write_images(tmp_path / "imgs", ["a.jpg"])
    model = tiny_run / "model.keras"
    with raises_as_cli(match="pass --classes class_map.json"):
        pr.predict_images(model, tmp_path / "imgs", tmp_path / "p.csv")
    result = pr.predict_images(model, tmp_path / "imgs", tmp_path / "p.csv", classes=tiny_run / "class_map.json")
    assert result["classified"] == 1
    wrong = tmp_path / "wrong.json"
    write_json(wrong, {"classes": [{"index": 0, "name": "a"}, {"index": 1, "name": "b"}]})
    with pytest.raises(UserError, match="lists 2 classes but the model outputs 3"):
        pr.predict_images(model, tmp_path / "imgs", tmp_path / "q.csv", classes=wrong)


@pytest.mark.parametrize("inputs, message", [
    ("missing_folder", "input not found"),
    ("empty", "no images found"),
])
def test_bad_inputs(tiny_run, tmp_path, inputs, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=message):
        pr.predict_images(tiny_run, tmp_path / inputs, tmp_path / "p.csv")
    with pytest.raises(UserError, match="must be a .csv"):
        pr.predict_images(tiny_run, tmp_path / "empty", tmp_path / "p.txt")


def test_predict_cli(tiny_run, tmp_path, capsys):
    from serengeti_tf_cli.main import main

    _write_images(tmp_path / "imgs", ["a.jpg", "b.jpg"])
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"\xff\xd8\xff broken")
    out = tmp_path / "p.csv"
    main(["predict", str(tiny_run), str(tmp_path / "imgs"), "-o", str(out), "--top-k", "1", "--batch-size", "2"])
    printed = capsys.readouterr().out
    assert "2 of 3 images classified, 1 skipped" in printed and "skipped bad.jpg" in printed
    assert list(pd.read_csv(out).columns) == ["path", "predicted", "confidence", "top1_species", "top1_prob"]
    assert cfg.load_saved(tmp_path / "p.config.yaml").eval.top_k == 1
