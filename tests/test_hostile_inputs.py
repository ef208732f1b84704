"""Hostile inputs below the CLI (issue 19): what the bad-input table cannot show in one error line.

Reads outside the image root end to end (prepare drops them, counts them, never opens them), the
documented non-errors (unusable frame ranks, an unreadable feature cache), predict replacing only
its own files.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fuzz_readers import hostile_tree, opens_recorded
from helpers import Printed

from serengeti_tf import config as cfg
from serengeti_tf.data import sources
from serengeti_tf.data.sources.root import OUTSIDE_ROOT, is_inside, outside_root
from serengeti_tf.errors import UserError


def test_prepare_reads_nothing_outside_the_image_root(tmp_path):
    """Metadata naming a file outside the root (absolute, `..`, a symlink in a class folder): those
    rows are dropped as outside_root and counted, the file is never opened, and nothing of it
    reaches the shards; --allow-outside-root reads it."""
    from PIL import Image

    from serengeti_tf.data.prepare import prepare_dataset

    tree = hostile_tree(tmp_path / "tree")
    root = tree["root"]
    rng = np.random.default_rng(0)
    for relative in ("zebra/z1.jpg", "zebra/z2.jpg", "zebra/z3.jpg", "impala/i1.jpg", "impala/i2.jpg", "impala/i3.jpg"):
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), np.uint8)).save(root / relative)
    Image.fromarray(rng.integers(0, 255, (20, 28, 3), np.uint8)).save(tree["secret"])
    rows = [(p, p.split("/")[0]) for p in ("zebra/z1.jpg", "zebra/z2.jpg", "zebra/z3.jpg",
                                           "impala/i1.jpg", "impala/i2.jpg", "impala/i3.jpg")]
    rows += [(str(tree["secret"]), "zebra"), ("../outside/secret.jpg", "impala"), ("zebra/link.jpg", "zebra"),
             ("linked/secret.jpg", "impala")]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(labels, index=False)
    config = cfg.Config()
    config.data.metadata, config.data.image_root = [str(labels)], str(root)
    config.data.image_size, config.data.workers = 24, 1

    with opens_recorded() as seen:
        summary = prepare_dataset(config, tmp_path / "prepared", progress=False)
    assert not [p for p in seen if is_inside(p, tree["outside"])]
    assert summary["drops"][OUTSIDE_ROOT] == 4 and summary["images_kept"] == 6
    manifest = pd.read_csv(tmp_path / "prepared" / "manifest.csv", keep_default_na=False)
    assert set(manifest.loc[manifest["drop_reason"] == OUTSIDE_ROOT, "path"]) == {r[0] for r in rows[6:]}

    config.data.allow_outside_root = True
    allowed = prepare_dataset(config, tmp_path / "allowed", progress=False)
    assert OUTSIDE_ROOT not in allowed["drops"] and allowed["images_kept"] == 10


def test_containment_check_cases(tmp_path):
    tree = hostile_tree(tmp_path)
    paths = pd.Series(["zebra/z1.jpg", "zebra/../impala/i1.jpg", "missing/x.jpg", "zebra/link.jpg",
                       "linked/secret.jpg", "/etc/passwd", "../outside/secret.jpg", "zebra/../../outside/secret.jpg",
                       "C:/images/a.jpg", "//server/share/a.jpg", ".."])
    assert outside_root(paths, tree["root"]).tolist() == [False, False, False] + [True] * 8


@pytest.mark.parametrize("rank", ["inf", "-inf", "NaN", "1e30", "-3", "two"])
def test_unusable_frame_ranks_are_unknown_not_a_traceback(tmp_path, rank):
    (tmp_path / "images.csv").write_text(f"capture_id,image_rank_in_capture,image_path_rel\nc1,{rank},a.jpg\n"
                                         "c1,2,b.jpg\n")
    (tmp_path / "annotations.csv").write_text("capture_id,question__species\nc1,zebra\n")
    data = cfg.DataConfig(metadata=[str(tmp_path / "images.csv"), str(tmp_path / "annotations.csv")],
                          image_root=str(tmp_path))
    assert sources.read_source(data)["frame"].tolist() == [0, 2]


def test_a_complete_csv_without_a_final_newline_is_not_truncated(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label\na.jpg,zebra")
    data = cfg.DataConfig(metadata=[str(tmp_path / "labels.csv")], image_root=str(tmp_path))
    assert sources.read_source(data)["species"].tolist() == ["zebra"]


@pytest.mark.parametrize("content", ["pickled", "damaged"])
def test_unreadable_feature_cache_is_computed_again(tmp_path, content):
    from serengeti_tf.train.features import cached_features

    path = tmp_path / "features.npz"
    if content == "pickled":  # object arrays need pickle to load: never loaded
        np.savez(path, features=np.array([{"x": 1}], dtype=object), labels=np.zeros(1), source_sha256=np.asarray("a"))
    else:
        path.write_bytes(b"PK\x03\x04 not a zip")
    lines = Printed()
    features, labels, _ = cached_features(path, lambda: (np.ones((2, 3)), np.array([0, 1])), lines, source="a")
    assert features.shape == (2, 3) and "computing it again" in lines[0]
    again, _, seconds = cached_features(path, lambda: pytest.fail("recomputed"), lines, source="a")
    assert seconds == 0.0 and np.array_equal(again, features)


def test_predict_replaces_its_own_output_but_no_other_file(tmp_path):
    from serengeti_tf.evaluate.predict import output_paths, refuse_foreign_outputs

    paths = output_paths(tmp_path / "p.csv")
    refuse_foreign_outputs(paths)  # nothing there yet
    paths["predictions"].write_text("path\n")
    with pytest.raises(UserError, match="p.csv exists and was not written by serengeti-tf predict"):
        refuse_foreign_outputs(paths)
    paths["meta"].write_text(json.dumps({"fingerprint": {"kind": "serengeti-tf predict"}}))
    refuse_foreign_outputs(paths)
    paths["meta"].write_text(json.dumps({"fingerprint": {"kind": "serengeti-tf export"}}))
    with pytest.raises(UserError):
        refuse_foreign_outputs(paths)
    paths["meta"].unlink()
    paths["partial_meta"].write_text(json.dumps({"kind": "serengeti-tf predict --detections"}))  # killed run
    refuse_foreign_outputs(paths)
