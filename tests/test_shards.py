"""shards.py: plan layout, parallel writing, resume after interruption, corrupt images, TFDS metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import InterruptAfter, shard_bytes
from PIL import Image

from serengeti_tf.config import DataConfig
from serengeti_tf.data import shards

SPECIES = {"zebra": 9, "lion": 4, "aardvark": 1}


def make_source(root: Path, counts: dict[str, int] = SPECIES, corrupt: tuple[str, ...] = ()) -> pd.DataFrame:
    """Writes small JPEGs under `root` and returns a split manifest (every 5th image val, every 7th test)."""
    rng = np.random.default_rng(1)
    rows = []
    for name, count in counts.items():
        for i in range(count):
            path = f"{name}/{name}_{i:03d}.jpg"
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(root / path, quality=90)
            rows.append(dict(path=path, species=name, capture_id=f"{name}-{i // 2}", site="S1", datetime="",
                             season="S9", frame=i % 2 + 1, source="test", drop_reason=""))
    for path in corrupt:
        data = (root / path).read_bytes()
        (root / path).write_bytes(data[: len(data) // 3])
    frame = pd.DataFrame(rows)
    frame["split"] = ["val" if i % 5 == 4 else "test" if i % 7 == 6 else "train" for i in range(len(frame))]
    return frame


@pytest.fixture()
def source(tmp_path):
    root = tmp_path / "src"
    return root, make_source(root)


def _data(root: Path, **kwargs) -> DataConfig:
    settings = {"image_root": str(root), "image_size": 24, "shard_size": 3, "workers": 1, **kwargs}
    return DataConfig(**settings)


def test_plan_train_shards_hold_one_class_and_respect_shard_size(source):
    root, manifest = source
    names = sorted(SPECIES)
    plans = shards.plan_shards(manifest, names, shard_size=3, seed=0)
    train = [p for p in plans if p.split == "train"]
    for plan in train:
        assert {manifest.loc[r, "species"] for r in plan.rows} == {plan.class_name}
        assert 1 <= len(plan.rows) <= 3
    # Every kept row lands in exactly one shard of its own split.
    placed = [r for p in plans for r in p.rows]
    assert sorted(placed) == sorted(manifest.index)
    assert all(manifest.loc[r, "split"] == p.split for p in plans for r in p.rows)
    assert [p.file for p in train][0] == f"camera_traps-train.tfrecord-00000-of-{len(train):05d}"


def test_plan_is_independent_of_input_row_order_and_seeded(source):
    _, manifest = source
    names = sorted(SPECIES)
    shuffled = manifest.sample(frac=1, random_state=3)

    def paths(frame, seed):
        return [[frame.loc[r, "path"] for r in p.rows] for p in shards.plan_shards(frame, names, 3, seed)]

    assert paths(manifest, 0) == paths(shuffled, 0)
    assert paths(manifest, 0) != paths(manifest, 1)


def test_plan_rejects_species_outside_the_class_map(source):
    _, manifest = source
    with pytest.raises(ValueError, match="class map"):
        shards.plan_shards(manifest, ["zebra"], 3, 0)


def test_written_shards_load_with_tfds_and_parse_with_records(tmp_path, source):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from serengeti_tf.data.records import parse_example

    root, manifest = source
    names = sorted(SPECIES)
    out = tmp_path / "out"
    plans = shards.plan_shards(manifest, names, 3, 0)
    records = shards.write_shards(manifest, plans, names, _data(root), out, progress=False)
    shards.write_tfds_metadata(out, shards.shard_index(plans, records), names)
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["label"].names == names
    for split in ("train", "val", "test"):
        expected = manifest[manifest["split"] == split]
        assert builder.info.splits[split].num_examples == len(expected)
        examples = list(builder.as_dataset(split=split).as_numpy_iterator())
        assert sorted(e["path"].decode() for e in examples) == sorted(expected["path"])
        for example in examples:
            assert min(example["image"].shape[:2]) == 24 and example["image"].shape[2] == 3
            species = manifest.set_index("path").loc[example["path"].decode(), "species"]
            assert names[example["label"]] == species
    # The plain tf.data reader sees the same records.
    first = next(iter(tf.data.TFRecordDataset(str(out / plans[0].file)).map(parse_example)))
    assert tf.io.decode_jpeg(first["image"]).shape[-1] == 3
    index = shards.shard_index(plans, records)
    assert all(set(e) == {"file", "class", "num_examples", "num_bytes"} for e in index["train"])
    assert all(e["num_bytes"] == (out / e["file"]).stat().st_size for s in index.values() for e in s)
    assert sum(e["num_examples"] for s in index.values() for e in s) == len(manifest)


def test_tfds_metadata_declares_an_empty_split_and_is_recorded_as_ours(tmp_path):
    """A split whose only shard is empty (its file exists) is declared with 0 examples, the other
    splits load, and the metadata files TFDS writes are listed as serengeti-tf's in a claimed folder."""
    import tensorflow_datasets as tfds

    from serengeti_tf import io_utils
    from serengeti_tf.testing import write_tiny_dataset

    out = tmp_path / "out"
    io_utils.claim_output_dir(out, {"test": 1})
    write_tiny_dataset(out, {"lion": 3, "zebra": 2}, val_per_class=0)
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.splits["train"].num_examples == 5 and builder.info.splits["test"].num_examples == 4
    assert builder.info.splits["val"].num_examples == 0
    assert len(list(builder.as_dataset(split="test"))) == 4
    assert {"dataset_info.json", "features.json", "label.labels.txt"} <= io_utils.owned_entries(out)


def test_corrupt_images_are_skipped_and_remembered(tmp_path):
    root = tmp_path / "src"
    manifest = make_source(root, corrupt=("zebra/zebra_002.jpg",))
    names = sorted(SPECIES)
    plans = shards.plan_shards(manifest, names, 3, 0)
    out = tmp_path / "out"
    records = shards.write_shards(manifest, plans, names, _data(root), out, progress=False)
    assert list(shards.corrupt_paths(records)) == ["zebra/zebra_002.jpg"]
    assert sum(r["num_examples"] for r in records.values()) == len(manifest) - 1
    # A rerun reads the drop from the done records without rewriting anything.
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("camera_traps-*")}
    again = shards.write_shards(manifest, plans, names, _data(root), out, progress=False)
    assert list(shards.corrupt_paths(again)) == ["zebra/zebra_002.jpg"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("camera_traps-*")} == before


def test_interrupted_run_resumes_to_byte_identical_shards(tmp_path, source):
    root, manifest = source
    names = sorted(SPECIES)
    plans = shards.plan_shards(manifest, names, 3, 0)
    clean = tmp_path / "clean"
    shards.write_shards(manifest, plans, names, _data(root), clean, progress=False)

    broken = tmp_path / "broken"
    stop_after_two = InterruptAfter(2)
    with pytest.raises(KeyboardInterrupt):
        shards.write_shards(manifest, plans, names, _data(root), broken, progress=False, after_shard=stop_after_two)
    assert len(shard_bytes(broken)) == 2
    (broken / ".camera_traps-train.tfrecord-00003-of-00006.abc.tmp").write_bytes(b"half")  # killed mid-write
    rewritten = []
    shards.write_shards(manifest, plans, names, _data(root, workers=2), broken, progress=False,
                        after_shard=lambda spec: rewritten.append(spec.file))
    assert set(rewritten) == {p.file for p in plans} - set(stop_after_two.done)  # finished shards were skipped
    assert shard_bytes(broken) == shard_bytes(clean)
    assert not list(broken.glob(".*.tmp"))


def test_done_record_is_ignored_when_the_plan_changes(tmp_path, source):
    root, manifest = source
    names = sorted(SPECIES)
    out = tmp_path / "out"
    plans = shards.plan_shards(manifest, names, 3, 0)
    shards.write_shards(manifest, plans, names, _data(root), out, progress=False)
    bigger = _data(root, image_size=32)
    rewritten = []
    shards.write_shards(manifest, plans, names, bigger, out, progress=False,
                        after_shard=lambda spec: rewritten.append(spec.file))
    assert len(rewritten) == len(plans)


def test_workers_zero_means_every_core():
    assert shards.resolve_workers(0) >= 1
    assert shards.resolve_workers(3) == 3
