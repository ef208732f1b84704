"""Fuzzed metadata (issue 19): every reader gives a one-line UserError or a valid manifest, never a
traceback, and never reads outside the image root (helpers in fuzz_readers.py). Small and fast:
15 examples per reader, no deadline (the machine is shared)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from fuzz_readers import INSIDE, assert_kept_inside, hostile_paths, hostile_tree, reading_is_safe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serengeti_tf import config as cfg
from serengeti_tf.data import filters, sources
from serengeti_tf.data.sources.root import OUTSIDE_ROOT

FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LABELS = st.sampled_from(["zebra", "impala", "", "blank", "human", "zebra+impala", "Ünïcode", "NaN"])
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    return hostile_tree(tmp_path_factory.mktemp("fuzz"))


def read_manifest(tree: dict[str, Path], metadata: list[Path], **data):
    """read_source + apply_filters (the steps before any image is decoded) under `reading_is_safe`."""
    config = cfg.DataConfig(metadata=[str(m) for m in metadata], image_root=str(tree["root"]), **data)

    def read():
        return filters.apply_filters(sources.read_source(config), config)

    manifest = reading_is_safe(read, tree["forbidden"])
    if manifest is not None:
        assert list(manifest.columns) == list(sources.MANIFEST_COLUMNS)
        assert_kept_inside(manifest, tree["root"])
    return manifest


@FUZZ
@given(data=st.data())
def test_plain_csv(tree, tmp_path, data):
    rows = data.draw(st.lists(st.tuples(hostile_paths(tree), LABELS), min_size=1, max_size=8))
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(csv, index=False)
    read_manifest(tree, [csv])


@FUZZ
@given(data=st.data())
def test_lila_csv_pair(tree, tmp_path, data):
    ranks = st.one_of(st.integers(-5, 10), st.sampled_from([math.nan, math.inf, -math.inf, 1e30]), st.text(max_size=3))
    images = data.draw(st.lists(st.tuples(st.sampled_from(["SER_S1#A#1#1", "SER_S1#A#1#2", "x", ""]), ranks,
                                          hostile_paths(tree)), min_size=1, max_size=8))
    annotations = data.draw(st.lists(st.tuples(st.sampled_from(["SER_S1#A#1#1", "SER_S1#A#1#2", "y"]), LABELS),
                                     max_size=4))
    pd.DataFrame(images, columns=["capture_id", "image_rank_in_capture", "image_path_rel"]).to_csv(
        tmp_path / "images.csv", index=False)
    pd.DataFrame(annotations, columns=["capture_id", "question__species"]).to_csv(tmp_path / "annotations.csv",
                                                                                 index=False)
    read_manifest(tree, [tmp_path / "images.csv", tmp_path / "annotations.csv"])


@FUZZ
@given(data=st.data())
def test_coco_camera_traps(tree, tmp_path, data):
    file_names = st.one_of(hostile_paths(tree), JSON_VALUES)
    images = data.draw(st.lists(st.one_of(
        st.fixed_dictionaries({"id": st.sampled_from(["a", "b", 3]), "file_name": file_names},
                              optional={"seq_id": JSON_VALUES, "frame_num": JSON_VALUES, "location": JSON_VALUES}),
        JSON_VALUES), max_size=6))
    annotations = data.draw(st.lists(st.fixed_dictionaries(
        {"image_id": st.sampled_from(["a", "b", 3]), "category_id": st.sampled_from([1, 2, "1", None])}), max_size=6))
    categories = data.draw(st.one_of(st.just([{"id": 1, "name": "zebra"}, {"id": 2, "name": "empty"}]), JSON_VALUES))
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    read_manifest(tree, [path])


@FUZZ
@given(data=st.data())
def test_megadetector_join(tree, tmp_path, data):
    """MD batch output joined to a manifest (prepare --detections): crops only ever come from kept
    manifest rows, so an MD file naming files outside the root adds nothing from there."""
    from serengeti_tf.data import crops, detections

    boxes = st.lists(st.one_of(st.fixed_dictionaries({
        "category": st.sampled_from(["1", "2", 1]), "conf": st.one_of(st.floats(-1, 2), JSON_VALUES),
        "bbox": st.one_of(st.lists(st.floats(-1, 2) | st.just(math.nan), min_size=4, max_size=4), JSON_VALUES)}),
        JSON_VALUES), max_size=3)
    images = data.draw(st.lists(st.fixed_dictionaries({"file": st.one_of(hostile_paths(tree), JSON_VALUES)},
                                                      optional={"detections": boxes, "failure": JSON_VALUES}),
                                min_size=1, max_size=6))
    md = tmp_path / "md.json"
    md.write_text(json.dumps({"info": {"format_version": data.draw(st.sampled_from(["1.4", "1.0", "9"]))},
                              "detection_categories": {"1": "animal", "2": "person"}, "images": images}))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": INSIDE + [str(tree["secret"]), "zebra/link.jpg"], "label": "zebra"}).to_csv(labels,
                                                                                                     index=False)
    config = cfg.DataConfig(metadata=[str(labels)], image_root=str(tree["root"]))

    def read():
        manifest = filters.apply_filters(sources.read_source(config), config)
        manifest["split"] = manifest["drop_reason"].map(lambda r: "" if r else "train")
        return crops.join_detections(manifest, detections.read_detections(md, tree["root"]), config.crops)

    result = reading_is_safe(read, tree["forbidden"])
    if result is not None:
        _, crop_table, _ = result
        assert_kept_inside(crop_table, tree["root"])


@FUZZ
@given(content=st.one_of(st.binary(max_size=64), st.text(max_size=64).map(lambda t: t.encode("latin-1", "replace"))),
       name=st.sampled_from(["labels.csv", "coco.json", "md.json"]))
def test_garbage_bytes(tree, tmp_path, content, name):
    from serengeti_tf.data import detections

    path = tmp_path / name
    path.write_bytes(content)
    if name == "md.json":
        reading_is_safe(lambda: detections.read_detections(path, tree["root"]), tree["forbidden"])
    else:
        read_manifest(tree, [path])


@FUZZ
@given(names=st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                              min_size=1, max_size=8), max_size=4))
def test_folder_layout(tree, tmp_path, names):
    """Class folders with odd file names beside links leading out of the root."""
    manifest = read_manifest(tree, [])
    assert manifest is not None
    reasons = dict(zip(manifest["path"], manifest["drop_reason"]))
    assert reasons["zebra/link.jpg"] == OUTSIDE_ROOT and "linked/secret.jpg" not in reasons
    for name in names:
        try:
            (tree["root"] / "impala" / f"{name}.jpg").write_bytes(b"x")
        except OSError:  # a name this filesystem refuses
            continue
    read_manifest(tree, [])


def test_outside_rows_are_read_only_with_allow_outside_root(tree, tmp_path):
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"path": ["zebra/z1.jpg", str(tree["secret"]), "../outside/secret.jpg", "zebra/link.jpg"],
                  "label": "zebra"}).to_csv(csv, index=False)
    manifest = read_manifest(tree, [csv])
    assert filters.drop_counts(manifest) == {"kept": 1, OUTSIDE_ROOT: 3}
    config = cfg.DataConfig(metadata=[str(csv)], image_root=str(tree["root"]), allow_outside_root=True)
    allowed = filters.apply_filters(sources.read_source(config), config)
    assert filters.drop_counts(allowed)["kept"] == 4
