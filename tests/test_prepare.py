"""prepare.py and `serengeti-tf prepare`: outputs, reruns, interruption, refusals, bad input, real sample."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    CSV_CAPTURES,
    TRUNCATED,
    InterruptAfter,
    invoke_cli,
    make_csv_source,
    prepare_config,
    raises_as_cli,
    shard_bytes,
    tree_hashes,
)
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.data import dataset
from serengeti_tf.data.prepare import format_summary, prepare_dataset
from serengeti_tf.errors import UserError


def make_class_folders(root: Path, species: tuple[str, ...], per_class: int) -> Path:
    """A folder-per-class source: `root/<species>/<i>.jpg`, small random JPEGs."""
    rng = np.random.default_rng(2)
    for name in species:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(root / name / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def prepared(csv_source, tmp_path_factory):
    root, metadata = csv_source
    before = tree_hashes(root)
    out = tmp_path_factory.mktemp("prepared") / "ds"
    summary = prepare_dataset(prepare_config(root, metadata, workers=2, shard_size=2), out, progress=False)
    return out, summary, before


def test_prepare_writes_every_documented_output(prepared):
    out, summary, _ = prepared
    for name in ("config.yaml", "class_map.json", "counts.csv", "manifest.csv", "splits.csv", "shards.json",
                 "dataset_info.json", "features.json", "class_distribution.png", "summary.json"):
        assert (out / name).is_file(), name
    assert dataset.class_names(out) == ["aardvark", "wildebeest", "zebra"]
    assert Image.open(out / "class_distribution.png").format == "PNG"
    assert cfg.load_saved(out / "config.yaml").data.image_size == 24
    assert summary["up_to_date"] is False and summary["num_classes"] == 3


def test_manifest_keeps_every_row_with_its_drop_reason(prepared, csv_source):
    out, summary, _ = prepared
    manifest = dataset.manifest(out)
    assert len(manifest) == 2 * sum(CSV_CAPTURES.values()) + 2
    reasons = manifest.set_index("path")["drop_reason"]
    assert reasons[TRUNCATED] == "corrupt_image"
    assert reasons["other/human.jpg"] == "human" and reasons["other/blank.jpg"] == "empty"
    assert manifest.loc[manifest["drop_reason"] != "", "split"].eq("").all()
    assert summary["drops"]["corrupt_image"] == 1
    # No capture is split across train/val/test.
    kept = manifest[manifest["drop_reason"] == ""]
    assert kept.groupby("capture_id")["split"].nunique().max() == 1


def test_counts_match_shards_and_manifest(prepared):
    out, summary, _ = prepared
    counts = dataset.counts(out)
    index = dataset.shard_index(out)
    for split in dataset.SPLITS:
        assert counts[split].sum() == sum(s["num_examples"] for s in index[split]) == summary["splits"][split]["images"]
    kept = dataset.manifest(out).query("drop_reason == ''")
    assert counts.set_index("species")["total"].to_dict() == kept["species"].value_counts().to_dict()
    assert (counts["total"] == counts[["train", "val", "test"]].sum(axis=1)).all()


def test_train_shards_hold_one_class_each(prepared):
    import tensorflow as tf

    from serengeti_tf.data.records import parse_example

    out, _, _ = prepared
    names = dataset.class_names(out)
    for name, files in dataset.train_class_files(out).items():
        assert files, name
        labels = {int(e["label"]) for e in tf.data.TFRecordDataset(files).map(parse_example)}
        assert labels == {names.index(name)}


def test_tfds_loads_every_split(prepared):
    import tensorflow_datasets as tfds

    out, summary, _ = prepared
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["label"].names == dataset.class_names(out)
    for split in dataset.SPLITS:
        if summary["splits"][split]["images"]:
            examples = list(builder.as_dataset(split=split).as_numpy_iterator())
            assert len(examples) == summary["splits"][split]["images"]
            assert all(min(e["image"].shape[:2]) == 24 and e["image"].shape[2] == 3 for e in examples)


def test_source_images_are_never_modified(prepared, csv_source):
    root, _ = csv_source
    _, _, before = prepared
    assert tree_hashes(root) == before


def test_rerun_of_a_finished_prepare_is_a_no_op(prepared, csv_source):
    root, metadata = csv_source
    out, _, _ = prepared
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    summary = prepare_dataset(prepare_config(root, metadata, workers=1, shard_size=2), out, progress=False)
    assert summary["up_to_date"] is True
    assert "up to date" in format_summary(summary)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == stamps


def test_interrupted_prepare_resumes_to_byte_identical_shards(prepared, csv_source, tmp_path):
    root, metadata = csv_source
    clean, _, _ = prepared
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(prepare_config(root, metadata, shard_size=2), out, progress=False,
                        after_shard=InterruptAfter(2))
    assert not (out / "summary.json").exists()
    summary = prepare_dataset(prepare_config(root, metadata, shard_size=2), out, progress=False)
    assert summary["resumed"] is True
    assert shard_bytes(out) == shard_bytes(clean)
    assert dataset.manifest(out).equals(dataset.manifest(clean))
    # A shard deleted after the fact is noticed and rewritten, not reported as up to date.
    victim = sorted(out.glob("camera_traps-val.*"))[0]
    victim.unlink()
    assert prepare_dataset(prepare_config(root, metadata, shard_size=2), out, progress=False)["up_to_date"] is False
    assert shard_bytes(out) == shard_bytes(clean)


def test_killed_cli_prepare_resumes_to_byte_identical_shards(prepared, csv_source, tmp_path):
    """SIGKILL a real `serengeti-tf prepare` mid-way, rerun it, compare with the clean run."""
    root, metadata = csv_source
    clean, _, _ = prepared
    out = tmp_path / "ds"
    command = [sys.executable, "-c", "from serengeti_tf_cli.main import main; main()", "prepare", str(out),
               "--metadata", str(metadata), "--image-root", str(root), "--image-size", "24", "--workers", "1",
               "--set", "data.shard_size=2"]
    # shard_size=2 gives ~17 shards, so the kill lands between the first and the last one.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".prepare_state"
    deadline = time.time() + 90
    while time.time() < deadline and len(list(state.glob("*.json"))) < 3 and process.poll() is None:
        time.sleep(0.02)
    if process.poll() is not None:  # poll() reaped it: a kill now would name a process that is gone
        pytest.fail(f"prepare ended on its own (exit {process.returncode}) before it could be killed")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "summary.json").exists(), "prepare finished before it could be killed"
    prepare_dataset(prepare_config(root, metadata, shard_size=2), out, progress=False)
    # The clean run used 2 worker processes, the killed one 1: neither changes a byte.
    assert shard_bytes(out) == shard_bytes(clean) and len(shard_bytes(out)) > 3


def test_folder_holding_a_different_dataset_is_refused_unless_overwrite(prepared, csv_source, tmp_path):
    root, metadata = csv_source
    out = tmp_path / "ds"
    prepare_dataset(prepare_config(root, metadata), out, progress=False)
    with raises_as_cli(match="different output.*image_size.*--overwrite"):
        prepare_dataset(prepare_config(root, metadata, image_size=20), out, progress=False)
    summary = prepare_dataset(prepare_config(root, metadata, image_size=20), out, overwrite=True, progress=False)
    assert summary["up_to_date"] is False and cfg.load_saved(out / "config.yaml").data.image_size == 20


def test_unrelated_non_empty_folder_is_refused(csv_source, tmp_path):
    root, metadata = csv_source
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        prepare_dataset(prepare_config(root, metadata), out, progress=False)
    assert (out / "notes.txt").read_text() == "mine"


def test_class_map_disagreeing_with_existing_shards_is_refused(csv_source, tmp_path):
    root, metadata = csv_source
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(prepare_config(root, metadata), out, progress=False,
                        after_shard=InterruptAfter(1))
    class_map = json.loads((out / "class_map.json").read_text())
    class_map["classes"][0]["name"] = "lionfemale"
    (out / "class_map.json").write_text(json.dumps(class_map))
    with pytest.raises(UserError, match="class map disagrees"):
        prepare_dataset(prepare_config(root, metadata), out, progress=False)


@pytest.mark.parametrize("change, message", [
    ({"image_root": "/nonexistent/images"}, "image root not found"),
    ({"metadata": ["/nonexistent/labels.csv"]}, "metadata file not found"),
    ({"seasons": [12]}, "unknown season"),
])
def test_bad_input_is_a_one_line_user_error_and_writes_nothing(csv_source, tmp_path, change, message):
    root, metadata = csv_source
    out = tmp_path / "ds"
    with pytest.raises(UserError, match=message) as info:
        prepare_dataset(prepare_config(root, metadata, **change), out, progress=False)
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_no_image_left_after_filtering_is_a_user_error(tmp_path):
    root = tmp_path / "src"
    (root / "x").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(root / "x" / "a.jpg")
    metadata = root / "labels.csv"
    pd.DataFrame([{"path": "x/a.jpg", "label": "human"}]).to_csv(metadata, index=False)
    with pytest.raises(UserError, match="no image left after filtering"):
        prepare_dataset(prepare_config(root, metadata), tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_cli_prepare_prints_a_summary_and_errors_in_one_line(csv_source, tmp_path, capsys):
    from serengeti_tf_cli.main import main

    root, metadata = csv_source
    out = tmp_path / "ds"
    args = ["prepare", str(out), "--metadata", str(metadata), "--image-root", str(root), "--image-size", "24",
            "--workers", "1", "--seed", "3", "--group-by", "capture"]
    main(args)
    printed = capsys.readouterr().out
    assert f"Prepared {out}" in printed and "corrupt_image 1" in printed
    assert cfg.load_saved(out / "config.yaml").data.seed == 3
    main(args)
    assert "up to date" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(tmp_path / "other"), "--image-root", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: image root not found") and error.count("\n") == 1


def test_cli_seasons_accepts_repeats_and_comma_lists():
    from serengeti_tf_cli.prepare import _seasons

    assert _seasons(None, None, ("9", "10,11", "S12")) == (9, 10, 11, 12)


# ---------------------------------------------------------------- the real Snapshot Serengeti sample
def _special_sources(folder: Path) -> dict[str, Path]:
    """Finds the sample's CMYK, greyscale, EXIF-rotated and truncated files by looking at them."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("S9/*/*/*.JPG")):
        with Image.open(path) as image:
            if image.mode == "CMYK":
                found.setdefault("cmyk", path)
            elif image.mode == "L":
                found.setdefault("grey", path)
            elif image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                found.setdefault("rotated", path)
            try:
                image.load()
            except OSError:
                found.setdefault("truncated", path)
    return found


def test_real_sample_drops_corrupt_and_keeps_odd_images_rgb_and_upright(shared_data, tmp_path):
    import tensorflow as tf

    from serengeti_tf.data.records import parse_example

    sample = shared_data / "serengeti_s9_sample"
    special = _special_sources(sample)
    assert set(special) == {"cmyk", "grey", "rotated", "truncated"}
    config = cfg.resolve(updates=[{"data": {
        "metadata": [str(sample / "SnapshotSerengeti_v2_1_images.csv"),
                     str(sample / "SnapshotSerengeti_v2_1_annotations.csv")],
        "image_root": str(sample), "image_size": 48, "workers": 2}}])
    out = tmp_path / "s9"
    prepare_dataset(config, out, progress=False)
    manifest = dataset.manifest(out).set_index("path")
    relative = {k: p.relative_to(sample).as_posix() for k, p in special.items()}
    assert manifest.loc[relative["truncated"], "drop_reason"] == "corrupt_image"
    stored = {}
    for example in tf.data.TFRecordDataset(sorted(map(str, out.glob("camera_traps-*")))).map(parse_example):
        stored[example["path"].numpy().decode()] = tf.io.decode_jpeg(example["image"]).numpy()
    for kind in ("cmyk", "grey", "rotated"):
        assert manifest.loc[relative[kind], "drop_reason"] == "", kind
        image = stored[relative[kind]]
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) == 48, kind
    # Upright: the rotated file's raw grid is portrait, the displayed photo (and the stored one) landscape.
    with Image.open(special["rotated"]) as raw:
        assert raw.size[0] < raw.size[1]
        upright = np.asarray(Image.open(special["rotated"]).convert("RGB").transpose(Image.Transpose.ROTATE_270)
                             if raw.getexif().get(0x0112) == 6 else raw.convert("RGB"))
    rotated = stored[relative["rotated"]]
    assert rotated.shape[1] > rotated.shape[0]
    reference = np.asarray(Image.fromarray(upright).resize((rotated.shape[1], rotated.shape[0])))
    assert np.abs(reference.astype(int) - rotated.astype(int)).mean() < 20
    # The greyscale source is stored as RGB with equal channels.
    grey = stored[relative["grey"]].astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 8


def test_folder_source_fingerprint_follows_the_file_listing(tmp_path):
    root = make_class_folders(tmp_path / "folders", ("zebra", "lionfemale"), 4)
    config = cfg.resolve(updates=[{"data": {"image_root": str(root), "image_size": 16, "workers": 1}}])
    out = tmp_path / "ds"
    assert prepare_dataset(config, out, progress=False)["num_classes"] == 2
    assert prepare_dataset(config, out, progress=False)["up_to_date"] is True
    Image.new("RGB", (40, 30), "white").save(root / "zebra" / "new.jpg")
    with pytest.raises(UserError, match="image_listing_sha256"):
        prepare_dataset(config, out, progress=False)


# ---------------------------------------------------------------- issue 10: reliability
def test_output_that_is_contains_or_lies_inside_the_source_is_refused_even_with_overwrite(tmp_path):
    """The issue's `victim/` case on generated data: nothing of the source may be deleted."""
    victim = tmp_path / "victim"
    victim.mkdir()
    metadata = make_csv_source(victim, {"zebra": 2, "impala": 1})
    before = tree_hashes(victim)
    for out, relation in ((victim, "is"), (tmp_path, "contains"), (victim / "prepared", "lies inside")):
        result = invoke_cli(["prepare", out, "--metadata", metadata, "--image-root", victim, "--overwrite"])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert f"{relation} the input --image-root" in result.stderr
    assert tree_hashes(victim) == before
    assert not (victim / "prepared").exists()


def test_issue_victim_case_on_a_copy_of_the_real_sample(shared_data, tmp_path):
    """`prepare victim --metadata victim/... --image-root victim --overwrite` used to rmtree the images."""
    victim = shutil.copytree(shared_data / "serengeti_s9_sample", tmp_path / "victim")
    before = tree_hashes(victim)
    result = invoke_cli(["prepare", victim, "--metadata", victim / "SnapshotSerengeti_v2_1_images.csv",
                         "--metadata", victim / "SnapshotSerengeti_v2_1_annotations.csv", "--image-root", victim,
                         "--overwrite"])
    assert result.exit_code == 2 and "is the input --image-root" in result.stderr, result.output
    assert tree_hashes(victim) == before


def test_dangling_symlink_in_a_class_folder_is_a_missing_file_drop(tmp_path):
    root = make_class_folders(tmp_path / "classes", ("zebra", "impala"), 3)
    # Dangling, pointing inside the root (a link leading out of it is an outside_root drop instead).
    (root / "zebra" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    config = cfg.resolve(updates=[{"data": {"image_root": str(root), "image_size": 16, "workers": 1}}])
    summary = prepare_dataset(config, tmp_path / "ds", progress=False)
    assert summary["drops"]["missing_file"] == 1 and summary["images_kept"] == 6
    manifest = dataset.manifest(tmp_path / "ds")
    assert manifest.set_index("path").loc["zebra/gone.jpg", "drop_reason"] == "missing_file"


def test_all_images_corrupt_is_the_no_image_left_error(tmp_path):
    root = tmp_path / "src"
    (root / "x").mkdir(parents=True)
    rows = []
    for i in range(3):
        (root / "x" / f"{i}.jpg").write_bytes(b"not a jpeg at all")
        rows.append({"path": f"x/{i}.jpg", "label": "zebra", "capture": f"c{i}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    with pytest.raises(UserError, match=r"no image left after decoding the images: 3 rows .*corrupt_image 3"):
        prepare_dataset(prepare_config(root, root / "labels.csv"), tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds" / "summary.json").exists()


def test_truncated_finished_shard_is_noticed_and_rewritten(prepared, csv_source, tmp_path):
    root, metadata = csv_source
    clean, _, _ = prepared
    out = shutil.copytree(clean, tmp_path / "ds")
    shard = sorted(out.glob("camera_traps-train.*"))[0]
    shard.write_bytes(shard.read_bytes()[:10])
    assert dataset.damaged_shards(out) == [shard.name]
    summary = prepare_dataset(prepare_config(root, metadata, shard_size=2), out, progress=False)
    assert summary["up_to_date"] is False and summary["resumed"] is True
    assert shard_bytes(out) == shard_bytes(clean) and dataset.damaged_shards(out) == []


def test_disk_full_is_one_line_and_a_rerun_continues(prepared, csv_source, tmp_path, monkeypatch):
    from serengeti_tf import io_utils

    root, metadata = csv_source
    clean, _, _ = prepared
    out = tmp_path / "ds"
    real_write_csv = io_utils.write_csv

    def full_disk(path, frame):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io_utils, "write_csv", full_disk)
    args = ["prepare", out, "--metadata", metadata, "--image-root", root, "--image-size", "24", "--workers", "1",
            "--set", "data.shard_size=2"]
    result = invoke_cli(args)
    assert result.exit_code == 2, result.output
    error = result.stderr.splitlines()[-1]  # after the progress bar
    assert result.stderr.count("Error:") == 1 and error.startswith("Error: the disk is full (writing")
    assert error.endswith("rerun the same command: it continues where it stopped")
    assert not (out / "summary.json").exists() and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(io_utils, "write_csv", real_write_csv)
    assert invoke_cli(args).exit_code == 0
    assert shard_bytes(out) == shard_bytes(clean)


def test_tensorflow_disk_full_while_writing_a_shard_is_one_line(csv_source, tmp_path, monkeypatch):
    import tensorflow as tf

    root, metadata = csv_source

    class FullDiskWriter:
        def __init__(self, path):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None, "/out/shard; No space left on device")

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDiskWriter)
    result = invoke_cli(["prepare", tmp_path / "ds", "--metadata", metadata, "--image-root", root, "--image-size", "24",
                         "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith("Error: the disk is full") and "Traceback" not in result.output


def test_coco_category_ids_missing_from_categories_are_counted(tmp_path, caplog):
    root = tmp_path / "src"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(2)
    images, annotations = [], []
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), np.uint8)).save(root / "img" / f"{i}.jpg")
        images.append({"id": f"i{i}", "file_name": f"img/{i}.jpg", "seq_id": f"s{i}", "location": "A"})
        annotations.append({"id": f"a{i}", "image_id": f"i{i}", "category_id": 1 if i < 4 else 99})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "zebra"}]}
    (root / "coco.json").write_text(json.dumps(coco))
    config = prepare_config(root, root / "coco.json")
    with caplog.at_level("WARNING"):
        summary = prepare_dataset(config, tmp_path / "ds", progress=False)
    assert summary["drops"]["unlabelled"] == 2
    assert "2 annotations use category ids missing from 'categories' (99)" in caplog.text
    for annotation in coco["annotations"]:
        annotation["category_id"] = 99
    (root / "coco.json").write_text(json.dumps(coco))
    with pytest.raises(UserError, match="no image left after filtering.*unlabelled 6"):
        prepare_dataset(config, tmp_path / "ds2", progress=False)


# A prepare that holds its output folder (and its worker processes) until the test kills it.
HOLD_PREPARE = """
import sys, time
from serengeti_tf import config as cfg
from serengeti_tf.data.prepare import prepare_dataset

def hold(spec):
    print("holding", flush=True)
    time.sleep(300)

if __name__ == "__main__":
    root, metadata, out = sys.argv[1:4]
    config = cfg.resolve(updates=[{"data": {"metadata": [metadata], "image_root": root, "image_size": 24,
                                            "shard_size": 2, "workers": 2}}])
    prepare_dataset(config, out, progress=False, after_shard=hold)
"""


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.update(int(c) for c in text)
    return children


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_second_prepare_is_refused_and_workers_die_with_a_killed_prepare(prepared, csv_source, tmp_path):
    root, metadata = csv_source
    clean, _, _ = prepared
    out = tmp_path / "ds"
    script = tmp_path / "hold.py"
    script.write_text(HOLD_PREPARE)
    first = subprocess.Popen([sys.executable, str(script), str(root), str(metadata), str(out)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "holding"
        workers = _children(first.pid)
        assert len(workers) >= 1, "prepare started no worker process"
        # A second prepare into the same folder, here in the test's process: refused at once.
        result = invoke_cli(["prepare", out, "--metadata", metadata, "--image-root", root, "--image-size", "24",
                             "--set", "data.shard_size=2"])
        assert result.exit_code == 2 and result.stderr == f"Error: {out} is in use by process {first.pid} " \
            f"(one serengeti-tf command per output folder); wait for it to finish or choose another folder\n"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "worker processes outlived the killed prepare"
    finally:
        if first.poll() is None:
            first.kill()
    # The kernel dropped the dead process's lock: a rerun takes the folder and finishes it.
    prepare_dataset(prepare_config(root, metadata, shard_size=2), out, progress=False)
    assert shard_bytes(out) == shard_bytes(clean)
