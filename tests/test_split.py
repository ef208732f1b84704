"""Split: grouped by capture or site, stratified per species, deterministic, the few-captures rule."""

from __future__ import annotations

import pandas as pd
import pytest

from serengeti_tf.config import DataConfig
from serengeti_tf.data.filters import apply_filters
from serengeti_tf.data.sources import MANIFEST_COLUMNS, read_source
from serengeti_tf.data.split import assign_splits, split_counts, split_table
from serengeti_tf.errors import UserError

# species -> number of captures; each capture has 1-3 frames, sites cycle over 6.
CAPTURES = {"wildebeest": 200, "zebra": 90, "impala": 30, "aardvark": 3, "civet": 2, "rodents": 1}


def synthetic_manifest(captures=CAPTURES, sites=6) -> pd.DataFrame:
    rows = []
    for species, n in captures.items():
        for c in range(n):
            capture = f"{species}-{c:04d}"
            for frame in range(1, c % 3 + 2):
                rows.append(dict(path=f"{capture}-{frame}.jpg", species=species, capture_id=capture,
                                 site=f"S{(c + len(species)) % sites:02d}", datetime="", season="S9",
                                 frame=frame, source="test", drop_reason="", split=""))
    rows.append(dict(rows[0], path="dropped.jpg", capture_id="dropped", species="empty", drop_reason="empty"))
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def splits_per_group(manifest: pd.DataFrame, key: str) -> pd.Series:
    kept = manifest[manifest["drop_reason"] == ""]
    return kept.groupby(key)["split"].nunique()


def test_every_kept_row_gets_a_split_and_dropped_rows_none():
    out, _ = assign_splits(synthetic_manifest(), DataConfig())
    kept = out["drop_reason"] == ""
    assert set(out.loc[kept, "split"]) == {"train", "val", "test"}
    assert (out.loc[~kept, "split"] == "").all()


def test_no_capture_is_split_across_train_val_test():
    out, _ = assign_splits(synthetic_manifest(), DataConfig())
    assert (splits_per_group(out, "capture_id") == 1).all()


def test_fractions_are_respected_per_species():
    out, _ = assign_splits(synthetic_manifest(), DataConfig(split_fractions=[0.8, 0.1, 0.1]))
    table = split_table(out)
    per_species = table.groupby(["species", "split"]).size().unstack(fill_value=0)
    assert per_species.loc["wildebeest"].to_dict() == {"test": 20, "train": 160, "val": 20}
    assert per_species.loc["zebra"].to_dict() == {"test": 9, "train": 72, "val": 9}
    assert per_species.loc["impala"].to_dict() == {"test": 3, "train": 24, "val": 3}


def test_same_seed_same_split_regardless_of_row_order():
    manifest = synthetic_manifest()
    a, warnings_a = assign_splits(manifest, DataConfig(seed=7))
    shuffled = manifest.sample(frac=1, random_state=3).reset_index(drop=True)
    b, warnings_b = assign_splits(shuffled, DataConfig(seed=7))
    assert dict(zip(a["path"], a["split"])) == dict(zip(b["path"], b["split"]))
    assert warnings_a == warnings_b
    pd.testing.assert_frame_equal(split_table(a), split_table(b))


def test_another_seed_gives_another_split():
    manifest = synthetic_manifest()
    a, _ = assign_splits(manifest, DataConfig(seed=0))
    b, _ = assign_splits(manifest, DataConfig(seed=1))
    assert list(a["split"]) != list(b["split"])


def test_few_captures_rule_and_warnings():
    out, warnings = assign_splits(synthetic_manifest(), DataConfig())
    table = split_table(out).set_index("capture_id")
    assert table.loc["rodents-0000", "split"] == "train"
    assert sorted(table.loc[table["species"] == "civet", "split"]) == ["test", "train"]
    assert sorted(table.loc[table["species"] == "aardvark", "split"]) == ["test", "train", "val"]
    assert len(warnings) == 2
    assert any("'rodents' has only 1 capture" in w for w in warnings)
    assert any("'civet' has only 2 capture" in w for w in warnings)


@pytest.mark.parametrize("n, fractions, counts, scarce", [
    (1, [0.8, 0.1, 0.1], [1, 0, 0], True),
    (2, [0.8, 0.1, 0.1], [1, 0, 1], True),
    (2, [0.8, 0.2, 0.0], [1, 1, 0], False),
    (3, [0.8, 0.1, 0.1], [1, 1, 1], False),
    (10, [0.8, 0.1, 0.1], [8, 1, 1], False),
    (15, [0.8, 0.1, 0.1], [12, 1, 2], False),
    (7, [1.0, 0.0, 0.0], [7, 0, 0], False),
    (1000, [0.7, 0.2, 0.1], [700, 200, 100], False),
])
def test_split_counts(n, fractions, counts, scarce):
    assert split_counts(n, fractions) == (counts, scarce)
    assert sum(split_counts(n, fractions)[0]) == n


def test_group_by_site_keeps_whole_sites_together():
    manifest = synthetic_manifest()
    out, _ = assign_splits(manifest, DataConfig(group_by="site", seed=3))
    assert (splits_per_group(out, "site") == 1).all()
    assert (splits_per_group(out, "capture_id") == 1).all()
    assert set(out.loc[out["drop_reason"] == "", "split"]) == {"train", "val", "test"}
    again, _ = assign_splits(manifest.iloc[::-1], DataConfig(group_by="site", seed=3))
    assert dict(zip(out["path"], out["split"])) == dict(zip(again["path"], again["split"]))


def test_group_by_site_with_too_few_sites_warns():
    out, warnings = assign_splits(synthetic_manifest(sites=2), DataConfig(group_by="site"))
    assert set(out.loc[out["drop_reason"] == "", "split"]) == {"train", "test"}
    assert any("only 2 site(s)" in w and "val left empty" in w for w in warnings)


def test_group_by_site_needs_sites():
    manifest = synthetic_manifest()
    manifest.loc[3, "site"] = ""
    with pytest.raises(UserError, match="1 kept images have none"):
        assign_splits(manifest, DataConfig(group_by="site"))


def test_no_kept_rows_gives_a_warning_not_a_crash():
    manifest = synthetic_manifest().assign(drop_reason="empty")
    out, warnings = assign_splits(manifest, DataConfig())
    assert (out["split"] == "").all() and warnings == ["no kept images to split"]
    assert split_table(out).empty


def test_split_table_has_one_row_per_capture():
    out, _ = assign_splits(synthetic_manifest(), DataConfig())
    table = split_table(out)
    assert list(table.columns) == ["capture_id", "species", "site", "split"]
    assert table["capture_id"].is_unique and len(table) == sum(CAPTURES.values())
    assert list(table["capture_id"]) == sorted(table["capture_id"])


def test_s9_sample_split_is_grouped_and_deterministic(shared_data):
    sample = shared_data / "serengeti_s9_sample"
    config = DataConfig(metadata=[str(sample / "SnapshotSerengeti_S9_sample.json")], image_root=str(sample))
    manifest = apply_filters(read_source(config), config)
    first, warnings = assign_splits(manifest, config)
    second, _ = assign_splits(manifest.sample(frac=1, random_state=0), config)
    assert (splits_per_group(first, "capture_id") == 1).all()
    assert dict(zip(first.index, first["split"])) == dict(zip(second.index, second["split"]))
    # Most species have one capture in the sample: it goes to train, with a warning each.
    table = split_table(first)
    captures = table.groupby("species").size()
    singles = table[table["species"].map(captures) == 1]
    assert len(singles) > 40 and set(singles["split"]) == {"train"}
    assert len(warnings) == int((captures < 3).sum())


def test_capture_with_mixed_image_labels_stays_together_under_its_majority_species():
    rows = [("c1-1.jpg", "zebra", "c1"), ("c1-2.jpg", "zebra", "c1"), ("c1-3.jpg", "lionfemale", "c1")]
    rows += [(f"z{i}.jpg", "zebra", f"z{i}") for i in range(20)]
    manifest = pd.DataFrame([dict(path=p, species=s, capture_id=c, site="A", datetime="", season="", frame=1,
                                  source="test", drop_reason="", split="") for p, s, c in rows],
                            columns=list(MANIFEST_COLUMNS))
    out, warnings = assign_splits(manifest, DataConfig())
    assert out.loc[out["capture_id"] == "c1", "split"].nunique() == 1
    table = split_table(out).set_index("capture_id")
    assert table.loc["c1", "species"] == "zebra"
    assert warnings == []  # lionfemale is no stratum of its own
