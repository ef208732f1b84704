"""Readers: generated fixtures for every format, plus the real samples in ../shared/data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import ijson
import pandas as pd
import pytest

from serengeti_tf.config import DataConfig
from serengeti_tf.data.filters import apply_filters
from serengeti_tf.data.sources import MANIFEST_COLUMNS, detect_format, normalise_season, read_source
from serengeti_tf.data.sources.coco_camera_traps import NonFiniteAsNull
from serengeti_tf.data.sources.folders import parse_camtrapr_name
from serengeti_tf.errors import UserError

# capture -> (season, site, species list, number of frames); one frame of S10#A02#1#2 is not listed
# in the annotations, S9#A01#1#4 has no annotation row at all.
CAPTURES = {
    "SER_S9#A01#1#1": ("SER_S9", "A01", ["gazelleThomsons"], 3),
    "SER_S9#A01#1#2": ("SER_S9", "A01", ["zebra", "wildebeest"], 2),
    "SER_S9#A01#1#3": ("SER_S9", "A01", ["blank"], 1),
    "SER_S9#A01#1#4": ("SER_S9", "A01", [], 1),
    "SER_S10#A02#1#1": ("SER_S10", "A02", ["vervetMonkey"], 2),
    "SER_S10#A02#1#2": ("SER_S10", "A02", ["human"], 1),
}
COCO_NAMES = {"gazelleThomsons": "gazellethomsons", "zebra": "zebra", "wildebeest": "wildebeest",
              "blank": "empty", "vervetMonkey": "monkeyvervet", "human": "human"}


def _frames():
    """(capture_id, season, site, species, frame, path) for every image of CAPTURES."""
    for capture, (season, site, species, frames) in CAPTURES.items():
        roll, number = capture.split("#")[2:]
        for frame in range(1, frames + 1):
            path = (f"{season[4:]}/{site}/{site}_R{roll}/"
                    f"{season[4:]}_{site}_R{roll}_IMAG{int(number):02d}{frame:02d}.JPG")
            yield capture, season, site, species, frame, path


def write_lila_csv(folder: Path) -> list[str]:
    images = [dict(capture_id=c, image_rank_in_capture=f, image_path_rel=p) for c, _, _, _, f, p in _frames()]
    annotations = []
    for capture, (season, site, species, _) in CAPTURES.items():
        for name in species:
            annotations.append(dict(capture_id=capture, season=season, site=site, roll="R1",
                                    capture=capture.split("#")[-1], capture_date_local="2015-01-02",
                                    capture_time_local="10:11:12", question__species=name))
    paths = [folder / "SnapshotSerengeti_v2_1_images.csv", folder / "SnapshotSerengeti_v2_1_annotations.csv"]
    pd.DataFrame(images).to_csv(paths[0])
    pd.DataFrame(annotations).to_csv(paths[1])
    return [str(p) for p in paths]


def coco_text(order=("images", "categories", "annotations"), with_seq=True) -> str:
    """The same data as write_lila_csv in COCO Camera Traps form, with a bare NaN like LILA's file."""
    names = sorted(set(COCO_NAMES.values()))
    ids = {n: i for i, n in enumerate(names)}
    images, annotations = [], []
    for capture, season, site, species, frame, path in _frames():
        image = dict(id=path[:-4], file_name=path, frame_num=frame, location=site,
                     datetime=f"2015-01-02 10:11:{11 + frame}")
        if with_seq:
            image["seq_id"] = capture
        images.append(image)
        for name in species:
            annotations.append(dict(id=f"{path}-{name}", image_id=path[:-4], category_id=ids[COCO_NAMES[name]],
                                    seq_id=capture, season=season, site=site, count="NAN_HERE"))
    parts = {"images": images, "annotations": annotations,
             "categories": [dict(id=i, name=n) for n, i in ids.items()]}
    text = json.dumps({k: parts[k] for k in order}, indent=1)
    return text.replace('"NAN_HERE"', "NaN")


def touch_images(root: Path) -> None:
    for *_, path in _frames():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"\xff\xd8fake")


@pytest.fixture()
def lila(tmp_path) -> dict:
    root = tmp_path / "lila"
    root.mkdir()
    touch_images(root)
    coco = root / "coco.json"
    coco.write_text(coco_text())
    return {"root": str(root), "csv": write_lila_csv(root), "coco": str(coco)}


def read(metadata, root, **kwargs) -> pd.DataFrame:
    return read_source(DataConfig(metadata=[str(m) for m in metadata], image_root=str(root), **kwargs))


# ---- manifest layout and the LILA formats -------------------------------------------------------

def test_lila_csv_pair_gives_the_manifest_layout(lila):
    manifest = read(lila["csv"], lila["root"])
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == sum(c[3] for c in CAPTURES.values())
    assert manifest["frame"].dtype == "int64"
    first = manifest[manifest["capture_id"] == "SER_S9#A01#1#1"].iloc[0]
    assert first["species"] == "gazellethomsons" and first["site"] == "A01" and first["season"] == "S9"
    assert first["datetime"] == "2015-01-02 10:11:12" and first["source"] == "lila_csv"
    assert first["split"] == "" and first["drop_reason"] == ""


def test_lila_csv_pair_in_either_order_is_the_same(lila):
    a = read(lila["csv"], lila["root"])
    b = read(lila["csv"][::-1], lila["root"])
    pd.testing.assert_frame_equal(a, b)


def test_lila_reader_marks_multi_species_and_unlabelled(lila):
    manifest = read(lila["csv"], lila["root"]).set_index("capture_id")
    assert set(manifest.loc["SER_S9#A01#1#2", "species"]) == {"wildebeest+zebra"}
    assert set(manifest.loc["SER_S9#A01#1#2", "drop_reason"]) == {"multi_species"}
    assert manifest.loc["SER_S9#A01#1#4", "drop_reason"] == "unlabelled"
    assert manifest.loc["SER_S9#A01#1#4", "site"] == "A01"  # parsed from the capture id
    assert manifest.loc["SER_S9#A01#1#3", "species"] == "empty"
    assert set(manifest.loc["SER_S10#A02#1#1", "species"]) == {"monkeyvervet"}


@pytest.mark.parametrize("order", [("images", "categories", "annotations"),
                                   ("annotations", "categories", "images"),
                                   ("categories", "annotations", "images")])
def test_coco_matches_the_csv_pair_whatever_the_key_order(lila, tmp_path, order):
    coco = tmp_path / "ordered.json"
    coco.write_text(coco_text(order))
    columns = ["path", "species", "capture_id", "site", "season", "frame", "drop_reason"]
    from_csv = read(lila["csv"], lila["root"])[columns].sort_values("path").reset_index(drop=True)
    from_coco = read([coco], lila["root"])[columns].sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(from_csv, from_coco)


def test_coco_without_seq_id_uses_the_image_id_as_capture(lila, tmp_path):
    coco = tmp_path / "noseq.json"
    coco.write_text(coco_text(with_seq=False))
    manifest = read([coco], lila["root"])
    assert (manifest["capture_id"] == manifest["path"].str[:-4]).all()


def test_coco_multi_species_is_per_image(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                       {"id": 3, "file_name": "c.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 2},
                            {"id": 3, "image_id": 2, "category_id": 2}, {"id": 4, "image_id": 2, "category_id": 2}],
            "categories": [{"id": 1, "name": "Grey Fox"}, {"id": 2, "name": "American Crow"}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    manifest = read([tmp_path / "c.json"], tmp_path).set_index("path")
    assert manifest.loc["a.jpg", "species"] == "american_crow+grey_fox"
    assert manifest.loc["a.jpg", "drop_reason"] == "multi_species"
    assert manifest.loc["b.jpg", "species"] == "american_crow"  # two boxes of one species
    assert manifest.loc["b.jpg", "drop_reason"] == ""
    assert manifest.loc["c.jpg", "drop_reason"] == "unlabelled"
    assert list(manifest["capture_id"]) == ["1", "2", "3"] and list(manifest["frame"]) == [0, 0, 0]


def test_coco_rejects_files_that_are_not_coco_camera_traps(tmp_path):
    (tmp_path / "md.json").write_text(json.dumps({"images": [{"file": "a.jpg", "detections": []}]}))
    with pytest.raises(UserError, match="1 of 1 images have no 'file_name'"):
        read([tmp_path / "md.json"], tmp_path)
    (tmp_path / "other.json").write_text(json.dumps({"rows": [1, 2]}))
    with pytest.raises(UserError, match="no 'images' list"):
        read([tmp_path / "other.json"], tmp_path)
    (tmp_path / "nocat.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}]}))
    with pytest.raises(UserError, match="no 'categories' list"):
        read([tmp_path / "nocat.json"], tmp_path)
    (tmp_path / "broken.json").write_text('{"images": [{"id": 1, "file_name": ')
    with pytest.raises(UserError, match="not valid JSON"):
        read([tmp_path / "broken.json"], tmp_path)


# ---- the NaN filter -----------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_non_finite_values_become_null_across_chunk_boundaries(chunk_bytes):
    text = (b'{"a": NaN, "b": [NaN, 1, -Infinity,Infinity], "name": "NaNa NaN", "c": {"d":NaN}, '
            b'"file": "x_NaN.jpg", "e":  NaN }')
    stream = NonFiniteAsNull(io.BytesIO(text), chunk_bytes=chunk_bytes)
    parsed = next(ijson.items(stream, "", use_float=True))
    assert parsed == {"a": None, "b": [None, 1, None, None], "name": "NaNa NaN", "c": {"d": None},
                      "file": "x_NaN.jpg", "e": None}


def test_non_finite_filter_reads_in_small_pieces():
    stream = NonFiniteAsNull(io.BytesIO(b'[1, NaN, 3]'), chunk_bytes=4)
    assert stream.read(0) == b""
    out = b""
    while piece := stream.read(2):
        assert len(piece) <= 2
        out += piece
    assert out == b"[1, null, 3]"


# ---- folders ------------------------------------------------------------------------------------

def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_species_folders(tmp_path):
    for name in ["zebra/1.jpg", "zebra/2.JPG", "gazelleThomsons/a.jpeg", "zebra/notes.txt", ".hidden/x.jpg"]:
        _touch(tmp_path / name)
    manifest = read([], tmp_path)
    assert detect_format([], str(tmp_path)) == "folders"
    assert sorted(manifest["path"]) == ["gazelleThomsons/a.jpeg", "zebra/1.jpg", "zebra/2.JPG"]
    assert dict(zip(manifest["path"], manifest["species"]))["gazelleThomsons/a.jpeg"] == "gazellethomsons"
    assert manifest["capture_id"].nunique() == 3 and (manifest["site"] == "").all()


def test_camtrapr_station_species_folders(tmp_path):
    names = ["StationA/PBE/StationA__2009-04-21__00-40-00(1).JPG",
             "StationA/PBE/StationA__2009-04-21__00-40-00(2).JPG",
             "StationA/PBE/clip.mp4",
             "StationB/VTA/StationB__2009-05-01__10-00-00(1).JPG",
             # camtrapR files a photo with two species under both species folders.
             "StationB/VTA/StationB__2009-05-02__11-00-00(1).JPG",
             "StationB/MNE/StationB__2009-05-02__11-00-00(1).JPG"]
    for name in names:
        _touch(tmp_path / name)
    manifest = read([], tmp_path).set_index("path")
    assert len(manifest) == 5
    pbe = manifest.loc["StationA/PBE/StationA__2009-04-21__00-40-00(2).JPG"]
    assert pbe["capture_id"] == "StationA__2009-04-21__00-40-00" and pbe["frame"] == 2
    assert pbe["site"] == "StationA" and pbe["datetime"] == "2009-04-21 00:40:00" and pbe["species"] == "pbe"
    assert manifest["capture_id"].nunique() == 3
    both = manifest[manifest["capture_id"] == "StationB__2009-05-02__11-00-00"]
    assert set(both["species"]) == {"mne+vta"} and set(both["drop_reason"]) == {"multi_species"}


def test_parse_camtrapr_name():
    assert parse_camtrapr_name("St_1__2010-01-02__03-04-05") == {
        "station": "St_1", "capture_id": "St_1__2010-01-02__03-04-05", "datetime": "2010-01-02 03:04:05", "frame": 0}
    assert parse_camtrapr_name("IMG_0001") is None


def test_folders_errors(tmp_path):
    with pytest.raises(UserError, match="no images"):
        read([], tmp_path)
    _touch(tmp_path / "zebra" / "1.jpg")
    _touch(tmp_path / "StationA" / "PBE" / "2.jpg")
    with pytest.raises(UserError, match="mixes images"):
        read([], tmp_path)


# ---- plain CSV ----------------------------------------------------------------------------------

def test_plain_csv_with_optional_columns(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "Image,Species,seq_id,Location\n"
        f"{tmp_path / 'cams' / 'a.jpg'},Grey Fox,s1,cam1\n"
        "cams/b.jpg,Grey Fox,s1,cam1\n"
        "cams/c.jpg,Chicken,,cam2\n"
        "cams/c.jpg,Grey Fox,,cam2\n"
        "cams/d.jpg,,s3,cam2\n")
    manifest = read([tmp_path / "labels.csv"], tmp_path).set_index("path")
    assert detect_format([str(tmp_path / "labels.csv")], str(tmp_path)) == "csv"
    assert list(manifest.index) == ["cams/a.jpg", "cams/b.jpg", "cams/c.jpg", "cams/d.jpg"]
    assert manifest.loc["cams/a.jpg", "capture_id"] == "s1" and manifest.loc["cams/a.jpg", "site"] == "cam1"
    assert manifest.loc["cams/c.jpg", "species"] == "chicken+grey_fox"
    assert manifest.loc["cams/c.jpg", "capture_id"] == "cams/c.jpg"
    assert manifest.loc["cams/d.jpg", "drop_reason"] == "unlabelled"


def test_plain_csv_unknown_schema(tmp_path):
    (tmp_path / "x.csv").write_text("name,value\na,1\n")
    with pytest.raises(UserError,
                       match=r"unknown CSV schema, no path or label column.*columns are \['name', 'value'\]"):
        read([tmp_path / "x.csv"], tmp_path)


# ---- shared checks: formats, bad input, seasons, duplicates ------------------------------------

def test_detect_format(lila):
    assert detect_format(lila["csv"], lila["root"]) == "lila_csv"
    assert detect_format([lila["coco"]], lila["root"]) == "coco"
    with pytest.raises(UserError, match="one half of the LILA CSV pair"):
        detect_format(lila["csv"][:1], lila["root"])


@pytest.mark.parametrize("case, message", [
    ("missing_metadata", "metadata file not found"),
    ("missing_root", "image root not found"),
    ("unset_root", "data.image_root is not set"),
    ("wrong_pair", "is neither a LILA images CSV"),
    ("folders_with_metadata", "takes no metadata files"),
])
def test_bad_input_is_one_line_user_error(lila, tmp_path, case, message):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    config = {
        "missing_metadata": dict(metadata=[str(tmp_path / "nope.json")], image_root=lila["root"]),
        "missing_root": dict(metadata=[lila["coco"]], image_root=str(tmp_path / "nope")),
        "unset_root": dict(metadata=[lila["coco"]], image_root=""),
        "wrong_pair": dict(metadata=[lila["csv"][0], str(other)], image_root=lila["root"]),
        "folders_with_metadata": dict(metadata=[lila["coco"]], image_root=lila["root"], source_format="folders"),
    }[case]
    with pytest.raises(UserError, match=message) as info:
        read_source(DataConfig(**config))
    assert "\n" not in str(info.value)


def test_seasons_selection(lila):
    manifest = read([lila["coco"]], lila["root"], seasons=[10])
    excluded = manifest[manifest["season"] == "S9"]
    assert (excluded["drop_reason"] == "season_excluded").all()
    kept = manifest[manifest["drop_reason"] == ""]
    assert set(kept["season"]) == {"S10"} and set(kept["species"]) == {"monkeyvervet", "human"}


def test_unknown_season_names_the_seasons_present(lila):
    with pytest.raises(UserError, match=r"unknown season 3 .*seasons S9, S10"):
        read(lila["csv"], lila["root"], seasons=[9, 3])


def test_unknown_season_without_season_information(tmp_path):
    _touch(tmp_path / "zebra" / "1.jpg")
    with pytest.raises(UserError, match="no season information"):
        read([], tmp_path, seasons=[9])


def test_multi_species_kept_as_a_combined_label_when_not_dropped(lila):
    manifest = read(lila["csv"], lila["root"], drop_multi_species=False)
    rows = manifest[manifest["species"] == "wildebeest+zebra"]
    assert len(rows) == 2 and (rows["drop_reason"] == "").all()


def test_an_image_listed_in_two_captures_is_kept_once(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label,capture\na.jpg,zebra,c1\nb.jpg,zebra,c1\n")
    pd.DataFrame({"capture_id": ["c1", "c1", "c2"], "image_rank_in_capture": [1, 2, 1],
                  "image_path_rel": ["a.jpg", "b.jpg", "b.jpg"]}).to_csv(tmp_path / "i.csv")
    pd.DataFrame({"capture_id": ["c1", "c2"], "question__species": ["zebra", "lionFemale"]}).to_csv(tmp_path / "a.csv")
    manifest = read([tmp_path / "i.csv", tmp_path / "a.csv"], tmp_path)
    assert list(manifest["drop_reason"]) == ["", "multi_species", "duplicate"]
    assert list(manifest["species"]) == ["zebra", "lionfemale+zebra", "lionfemale+zebra"]


@pytest.mark.parametrize("value, season", [("SER_S9", "S9"), ("S10", "S10"), ("s09", "S9"), (9, "S9"),
                                           (None, ""), ("", ""), ("winter", "winter")])
def test_normalise_season(value, season):
    assert normalise_season(value) == season


# ---- the real samples (skip without ../shared/data) ---------------------------------------------

def _s9(shared_data) -> tuple[list[str], str, str]:
    sample = shared_data / "serengeti_s9_sample"
    csvs = [str(sample / "SnapshotSerengeti_v2_1_images.csv"), str(sample / "SnapshotSerengeti_v2_1_annotations.csv")]
    return csvs, str(sample / "SnapshotSerengeti_S9_sample.json"), str(sample)


def _filtered(metadata, root) -> pd.DataFrame:
    config = DataConfig(metadata=list(metadata), image_root=root)
    return apply_filters(read_source(config), config)


def test_s9_sample_csv_pair_and_json_keep_the_same_images_and_labels(shared_data):
    csvs, coco, root = _s9(shared_data)
    from_csv, from_coco = _filtered(csvs, root), _filtered([coco], root)
    assert len(from_csv) == len(from_coco) == 177
    kept_csv = from_csv[from_csv["drop_reason"] == ""].set_index("path")
    kept_coco = from_coco[from_coco["drop_reason"] == ""].set_index("path")
    assert len(kept_csv) > 150
    assert kept_csv["species"].sort_index().equals(kept_coco["species"].sort_index())
    assert kept_csv["capture_id"].sort_index().equals(kept_coco["capture_id"].sort_index())
    assert set(kept_csv["season"]) == {"S9"}


def test_s9_sample_faults_are_dropped_with_the_right_reasons(shared_data):
    csvs, coco, root = _s9(shared_data)
    for manifest in (_filtered(csvs, root), _filtered([coco], root)):
        by_species = manifest.groupby("species")["drop_reason"].agg(set)
        assert by_species["wildebeest+zebra"] == {"multi_species"}
        assert by_species["empty"] == {"empty"}
        assert by_species["human"] == {"human"}
        missing = manifest[manifest["drop_reason"] == "missing_file"]
        assert len(missing) == 1
        assert missing.iloc[0]["capture_id"].startswith("SER_S9#F11#1#") and missing.iloc[0]["frame"] == 2
        # No kept image is listed twice.
        assert not manifest.loc[manifest["drop_reason"] == "", "path"].duplicated().any()


def test_s9_sample_season_selection(shared_data):
    csvs, _, root = _s9(shared_data)
    assert (read_source(DataConfig(metadata=csvs, image_root=root, seasons=[9]))["drop_reason"]
            != "season_excluded").all()
    with pytest.raises(UserError, match=r"unknown season 10 .*seasons S9$"):
        read_source(DataConfig(metadata=csvs, image_root=root, seasons=[10]))


def test_ena24_labels_csv_and_coco_agree(shared_data):
    root = shared_data / "other_formats" / "ena24_small"
    from_csv = _filtered([str(root / "labels.csv")], str(root))
    from_coco = _filtered([str(root / "coco_annotations.json")], str(root))
    assert len(from_csv) == len(from_coco) == 21
    assert (from_csv["drop_reason"] == "").all() and (from_coco["drop_reason"] == "").all()
    assert from_csv.set_index("path")["species"].sort_index().equals(
        from_coco.set_index("path")["species"].sort_index())
    assert from_csv["species"].value_counts().to_dict() == {n: 3 for n in set(from_csv["species"])}
    assert "virginia_opossum" in set(from_csv["species"]) and from_csv["species"].nunique() == 7


def test_ena24_megadetector_output_is_an_unknown_schema(shared_data):
    root = shared_data / "other_formats" / "ena24_small"
    with pytest.raises(UserError, match="not a COCO Camera Traps file"):
        read_source(DataConfig(metadata=[str(root / "md_annotations.json")], image_root=str(root)))


def test_camtrapr_sample_folders(shared_data):
    root = str(shared_data / "other_formats" / "camtrapr_station_species_dirs")
    manifest = _filtered([], root)
    assert (manifest["drop_reason"] == "").all()
    assert not manifest["path"].str.endswith(".mp4").any()
    assert sorted(manifest["species"].value_counts().tolist(), reverse=True) == [26, 17, 10, 9, 5, 1]
    assert set(manifest["site"]) == {"StationA", "StationB", "StationC"}
    frames = manifest[manifest["capture_id"] == "StationB__2009-04-28__17-48-00"]
    assert sorted(frames["frame"]) == [1, 2, 3]


def test_coco_unknown_category_and_orphan_annotation(tmp_path):
    data = {"images": [{"id": "x", "file_name": "x.jpg", "seq_id": "s", "frame_num": "2"}],
            "annotations": [{"image_id": "x", "category_id": 99}, {"image_id": "gone", "category_id": 1}],
            "categories": [{"id": 1, "name": "zebra"}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    manifest = read([tmp_path / "c.json"], tmp_path)
    assert len(manifest) == 1
    assert manifest.loc[0, "drop_reason"] == "unlabelled" and manifest.loc[0, "frame"] == 2


def test_coco_without_annotations_is_all_unlabelled(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": []}
    (tmp_path / "c.json").write_text(json.dumps(data))
    assert list(read([tmp_path / "c.json"], tmp_path)["drop_reason"]) == ["unlabelled"]


def test_coco_frame_numbers_beyond_int32_or_infinite_are_unknown(tmp_path):
    # Found by the fuzz test: a frame_num of 2**31 overflowed the int32 column (a traceback).
    images = [{"id": str(i), "file_name": f"{i}.jpg", "seq_id": "s", "frame_num": value}
              for i, value in enumerate([2 ** 31, 2 ** 62, -3, 1.5e300, "7"])]
    data = {"images": images, "annotations": [{"image_id": str(i), "category_id": 1} for i in range(5)],
            "categories": [{"id": 1, "name": "zebra"}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    manifest = read([tmp_path / "c.json"], tmp_path).sort_values("path")
    assert list(manifest["frame"]) == [0, 0, 0, 0, 7]
