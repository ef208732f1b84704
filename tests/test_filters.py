"""Filters: drop reasons, their order and switches, and the counts report."""

from __future__ import annotations

import pandas as pd
import pytest

from serengeti_tf.config import DataConfig
from serengeti_tf.data.filters import apply_filters, drop_counts, missing_files
from serengeti_tf.data.sources import MANIFEST_COLUMNS


def manifest_of(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(path, species, existing drop_reason) -> a manifest in the reader layout."""
    return pd.DataFrame([dict(path=p, species=s, capture_id=p, site="", datetime="", season="", frame=1,
                              source="test", drop_reason=r, split="") for p, s, r in rows],
                        columns=list(MANIFEST_COLUMNS))


@pytest.fixture()
def root(tmp_path):
    for name in ["a/zebra.jpg", "a/empty.jpg", "a/human.jpg", "b/multi.jpg", "b/season.jpg", "top.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "b" / "folder.jpg").mkdir()  # a folder named like an image is not an image
    return tmp_path


ROWS = [("a/zebra.jpg", "zebra", ""), ("a/empty.jpg", "empty", ""), ("a/human.jpg", "human", ""),
        ("b/multi.jpg", "wildebeest+zebra", ""), ("b/season.jpg", "zebra", "season_excluded"),
        ("top.jpg", "lionfemale", ""), ("a/gone.jpg", "zebra", ""), ("c/gone.jpg", "empty", ""),
        ("b/folder.jpg", "zebra", "")]


def test_each_reason_is_set(root):
    out = apply_filters(manifest_of(ROWS), DataConfig(image_root=str(root)))
    reasons = dict(zip(out["path"], out["drop_reason"]))
    assert reasons == {"a/zebra.jpg": "", "a/empty.jpg": "empty", "a/human.jpg": "human",
                       "b/multi.jpg": "multi_species", "b/season.jpg": "season_excluded", "top.jpg": "",
                       "a/gone.jpg": "missing_file", "c/gone.jpg": "empty", "b/folder.jpg": "missing_file"}


def test_input_is_not_modified_and_rows_are_kept(root):
    manifest = manifest_of(ROWS)
    before = manifest.copy()
    out = apply_filters(manifest, DataConfig(image_root=str(root)))
    pd.testing.assert_frame_equal(manifest, before)
    assert len(out) == len(manifest) and list(out.columns) == list(MANIFEST_COLUMNS)


def test_switches_turn_reasons_off(root):
    config = DataConfig(image_root=str(root), drop_empty=False, drop_human=False, drop_multi_species=False)
    out = apply_filters(manifest_of(ROWS), config)
    reasons = dict(zip(out["path"], out["drop_reason"]))
    assert reasons["a/empty.jpg"] == "" and reasons["a/human.jpg"] == "" and reasons["b/multi.jpg"] == ""
    # A missing file is then the reason for a missing empty image.
    assert reasons["c/gone.jpg"] == "missing_file"


def test_existing_reason_is_never_overwritten(root):
    rows = [("a/empty.jpg", "empty", "unlabelled"), ("a/gone.jpg", "human", "multi_species")]
    out = apply_filters(manifest_of(rows), DataConfig(image_root=str(root)))
    assert list(out["drop_reason"]) == ["unlabelled", "multi_species"]


def test_missing_files_checks_each_folder(root):
    paths = pd.Series(["a/zebra.jpg", "a/nope.jpg", "top.jpg", "zzz/x.jpg"], index=[5, 6, 7, 8])
    assert list(missing_files(paths, root)) == [False, True, False, True]
    assert list(missing_files(paths, root).index) == [5, 6, 7, 8]


def test_drop_counts(root):
    out = apply_filters(manifest_of(ROWS), DataConfig(image_root=str(root)))
    counts = drop_counts(out)
    assert counts == {"kept": 2, "season_excluded": 1, "empty": 2, "human": 1, "multi_species": 1,
                      "missing_file": 2}
    assert list(counts)[0] == "kept" and sum(counts.values()) == len(ROWS)


def test_drop_counts_lists_unknown_reasons_last():
    counts = drop_counts(manifest_of([("a", "x", ""), ("b", "x", "zz_custom"), ("c", "x", "corrupt_image")]))
    assert list(counts.items()) == [("kept", 1), ("corrupt_image", 1), ("zz_custom", 1)]
